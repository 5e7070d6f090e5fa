"""How much of a place the world's sounds carry: an oracle and the floor, for what-if worlds.

    python benchmarks/sound_bounds.py [--space geobind-demo/space] [--world geobind-demo/world]

No model is trained. For the audio stage's places (its training and validation rows, the 1,000
held-out places) the world renders each place's sound again, as it is and
under what-if settings of its sound, and two things are measured on the held-out places
against the space's anchor (R@10):

- an oracle: ``audio_ceiling.py``'s ridge map from what went into each clip, source by source
  (``SoundBank.render``'s trace), onto the anchor's embeddings of the tiles: as much as any
  sound encoder can learn of the place from these sounds;
- the floor, as ``geobind eval`` fits it (band energies of the clips, colour histograms of the
  tiles, linear CCA, on the same seeded sample of 3,000 training pairs), and the same floor with a
  satellite side that also reads the tile's centre (the middle half and the middle quarter),
  since a recording hears its surroundings most.

The oracle over the floor is what the learned satellite -> audio can reach over its floor at
best. The settings (this process only; the world on disk is not touched):

- ``as the world is``;
- ``heard alike from the whole tile``: the land cover each clip follows is the tile's fractions,
  as before sounds fell off with distance (``World.heard_cover``);
- ``no loudness spread``: every source as loud every time (``audio.LOUDNESS_SPREAD`` 0);
- ``recorded at midday in clear weather``: no hour or weather that the satellite cannot see;
- ``30 s clips``: six times the events and steady sound to hear (the world's clips are 5 s);
- ``all three``: none of the randomness that has nothing to do with the place.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
from readers import open_places, recall, ridge_reader, source_matrix, world_index


@contextlib.contextmanager
def what_if(world, setting: dict) -> Iterator[None]:
    """The world's sound under ``setting`` (keys: alike, loudness, fair, clip_seconds)."""
    import geobind.world.attributes as attributes
    import geobind.world.audio as audio
    import geobind.world.world as world_module

    knobs = [
        (world_module, "REACH_FAR_PX"),
        (world_module, "REACH_NEAR_PX"),
        (world_module, "NEAREST_PX"),
        (audio, "LOUDNESS_SPREAD"),
        (world, "_sound"),
    ]
    saved = [getattr(owner, name) for owner, name in knobs]
    capture = attributes.CAPTURES["any"]
    try:
        if setting.get("alike"):  # weights all alike: the tile's own fractions
            world_module.REACH_FAR_PX = world_module.REACH_NEAR_PX = 1e9
            world_module.NEAREST_PX = 1e9
        if "loudness" in setting:
            audio.LOUDNESS_SPREAD = setting["loudness"]
        if setting.get("fair"):  # the same draws, every one midday and clear
            attributes.CAPTURES["any"] = ((0, 0, 1.0, 0, 0, 0), (1.0, 0, 0, 0, 0))
        if "clip_seconds" in setting:
            c = world.config
            n = int(round(c.sample_rate * setting["clip_seconds"]))
            world._sound = audio.SoundBank(c.sample_rate, n, c.seed)
        yield
    finally:
        for (owner, name), value in zip(knobs, saved):
            setattr(owner, name, value)
        attributes.CAPTURES["any"] = capture


SETTINGS: dict[str, dict] = {
    "as the world is": {},
    "heard alike from the whole tile": {"alike": True},
    "no loudness spread": {"loudness": 0.0},
    "recorded at midday in clear weather": {"fair": True},
    "30 s clips": {"clip_seconds": 30.0},
    "all three": {"loudness": 0.0, "fair": True, "clip_seconds": 30.0},
}


def main() -> None:
    places = open_places("sound_bounds", __doc__)  # first: it keeps the hub offline
    from geobind.data.synthetic import open_world
    from geobind.encoders.features import ColourHistogram, decode_image
    from geobind.errors import GeobindError
    from geobind.eval.floor import fit_floor, fit_sample
    from geobind.eval.retrieval import ranks, recall_metrics
    from geobind.plugins import get_registry

    class CentreHistogram(ColourHistogram):
        """The floor's colour histograms of the whole tile, its middle half and middle quarter."""

        def _one(self, data: bytes) -> np.ndarray:
            px = np.asarray(decode_image(data), dtype=np.int32)
            h, w = px.shape[:2]
            parts = [px, px[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]]
            parts.append(px[3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8])
            return np.sqrt(np.concatenate([self._hist(p) for p in parts]))

    try:
        world = open_world(places.world)
    except GeobindError as exc:
        raise SystemExit(f"sound_bounds: {exc}") from exc
    rows = places.rows
    # the floor's own sample of the training rows (fit_space_floor's); the oracle reads every
    # training row, as audio_ceiling.py's does
    sample = fit_sample(range(len(rows["train"])))
    splits = ("train", "val", "held")
    index = {}
    for k in splits:
        ids = places.sets[k].take(rows[k], columns=["id"]).column("id").to_pylist()
        index[k] = world_index("sound_bounds", world, places.world, ids)
    keep: dict[str, set[int] | None] = {"train": set(sample), "val": set(), "held": None}
    anchor = places.anchor()
    tiles = {k: places.read(k, "satellite") for k in splits}
    registry = get_registry()
    sound_features = registry.modality("audio").features
    tile_features = registry.modality("satellite").features

    def score(q: np.ndarray, g: np.ndarray) -> float:
        return sum(recall(q, g))

    def floor(clips: dict, tile_side) -> tuple[float, float]:
        fitted = fit_floor(
            ("audio", "satellite"),
            (clips["train"], [tiles["train"][i] for i in sample]),
            (sound_features, tile_side),
        )
        a, s = fitted.embed("audio", clips["held"]), fitted.embed("satellite", tiles["held"])
        return tuple(100 * recall_metrics(ranks(q, g), (10,))["R@10"] for q, g in ((s, a), (a, s)))

    print(f"R@10 on {len(rows['held'])} held-out places; oracle / floor in brackets")
    head = f"{'the sound':38s} {'oracle s->a':>11s} {'a->s':>6s} {'floor s->a':>11s} {'a->s':>6s}"
    print(f"{head} {'centre floor s->a':>18s} {'a->s':>6s}")
    for name, setting in SETTINGS.items():
        start = time.perf_counter()
        # the oracle reads every row's trace; the floor hears only its sample and the held-out
        # rows, so only their clips are kept (all of them at 30 s would hold about 9 GB)
        traces: dict[str, list] = {k: [] for k in splits}
        clips: dict[str, list] = {k: [] for k in splits}
        with what_if(world, setting):
            for k in splits:
                heard = keep[k]
                for j, i in enumerate(index[k]):
                    made = world.place(i, modalities=("audio",))
                    traces[k].append(made.sources)
                    if heard is None or j in heard:
                        clips[k].append(made.audio)
        columns = sorted({c for t in traces["train"] for c in t})
        x = {k: source_matrix(v, columns) for k, v in traces.items()}
        oracle, _ = ridge_reader(x, anchor, score)
        o_as, o_sa = recall(oracle, anchor["held"])
        f_sa, f_as = floor(clips, tile_features)
        c_sa, c_as = floor(clips, CentreHistogram)
        print(
            f"{name:38s} {o_sa:10.1f}% {o_as:5.1f}% {f_sa:6.1f}% ({o_sa / f_sa:.1f}x) "
            f"{f_as:4.1f}% {c_sa:9.1f}% ({o_sa / c_sa:.1f}x) {c_as:5.1f}%"
            f"   [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
