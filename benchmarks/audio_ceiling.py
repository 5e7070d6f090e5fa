"""What the frozen anchor lets a sound encoder reach, and what simple sound statistics reach.

    python benchmarks/audio_ceiling.py [--space geobind-demo/space] [--world geobind-demo/world]

The audio stage learns to map a sound onto the frozen anchor's embedding of the place's tile.
Two things bound it: what the anchor's embedding says about a place, and what the sound says.
This fits the same map, a ridge regression from random Fourier features onto the anchor's unit
embeddings (closed form; the feature scale and ridge chosen on the training set's validation
rows; ``readers.py``), from three inputs on the audio stage's training pairs, and prints R@10
of each on the held-out places, against the anchor's embeddings of their tiles:

- the place's true land-cover fractions: an oracle sound encoder that knew the tile's land
  cover exactly; how far the anchor lets any sound go (the world's sounds depend on the land
  cover around the recorder, the hour and the weather, the last two invisible from above);
- the land cover as heard at the place (``World.heard_cover``: each pixel weighted by how much
  of its sound reaches the recorder, far for loud sources and near for animals): an oracle
  that heard exactly what the world's sounds follow, before the hour, the weather and chance;
- what went into each clip, source by source (each continuous source's level, each species'
  number of calls, the cars and horns: ``SoundBank.render``'s trace, replayed from the world
  for the very clip stored): an oracle sound encoder that took every clip apart perfectly; how
  far the world's sounds let any sound encoder go (the clip is made from these and from
  randomness that has nothing to do with the place, so no encoder can know more of the place);
  besides the ridge map, a two-layer MLP trained with InfoNCE against the anchor, as the stages
  train, reads these sources (the bound is the better of the two);
- the floor's sound features (mean and spread of 32 band energies): what sound statistics
  carry through a non-linear map, beside the floor's linear CCA;
- the space's learned audio encoder (no map: its own embeddings), for comparison.

Then the same readers of the sources and the band energies are fitted onto the text tower's
embeddings of the captions of the same places (the CLIP stage's dataset, matched by id): how far
a sound encoder trained on the audio-text pair itself would go, beside the learned encoder's
audio -> text, which is never trained and emerges through the anchor.

Only the synthetic world knows each place's land cover and what went into each clip; with
real data the band-energy lines are the ones to measure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from readers import (
    SPLITS,
    infonce_reader,
    open_places,
    recall,
    ridge_reader,
    source_matrix,
    world_index,
)


def main() -> None:
    places = open_places("audio_ceiling", __doc__)  # first: it keeps the hub offline
    from geobind.eval.floor import transform_rows
    from geobind.plugins import get_registry

    space, ds, ho = places.space, places.sets["train"], places.sets["held"]
    if "audio" not in space.modalities:
        raise SystemExit(f"audio_ceiling: the space {space.path} holds no audio encoder yet")
    train, val, held = (places.rows[k] for k in SPLITS)

    world = _open_world(places.world)
    sources = _traced_sources(world, places.world)
    heard = _heard_cover(world)
    anchor = places.anchor()
    # each split's clips read once: for the band energies, the replay and the learned encoder
    clips = {k: places.read(k, "audio") for k in SPLITS}
    sounds = get_registry().modality("audio").features().fit(clips["train"][:3000])
    inputs = {
        "land-cover fractions (an oracle sound encoder)": {
            k: places.column(k, "landcover") for k in SPLITS
        },
        "land cover as heard at the place, far and near": {
            "train": heard(ds, train),
            "val": heard(ds, val),
            "held": heard(ho, held),
        },
        "each clip's sources (an oracle that took it apart)": {
            "train": sources(ds, train, clips["train"]),
            "val": sources(ds, val, clips["val"]),
            "held": sources(ho, held, clips["held"]),
        },
        "band energies (the floor's sound features)": {
            k: transform_rows(sounds, v) for k, v in clips.items()
        },
    }

    learned = places.unit(space.embed("audio", clips["held"], 256))
    print(f"R@10 on {len(held)} held-out places (chance {1000 / len(held):.1f}%)")
    print(f"{'sound side, onto the anchor':58s} {'audio->sat':>10s} {'sat->audio':>10s}  chosen")
    _readers(inputs, anchor, learned)

    # audio -> text is never trained: how far would a sound encoder trained on that pair go?
    text = _caption_embeddings(space, places.world / "captions.lance", ds, train, val, ho)
    if text is None:
        print("(no captions.lance of the same places: audio -> text not measured)")
        return
    del inputs["land-cover fractions (an oracle sound encoder)"]
    del inputs["land cover as heard at the place, far and near"]
    side = "sound side, onto the captions of its places"
    print(f"{side:58s} {'audio->text':>10s} {'text->audio':>10s}")
    _readers(inputs, text, learned)


def _readers(inputs: dict, target: dict, learned: np.ndarray) -> None:
    """Fit each sound side onto ``target`` (the sources also with an MLP) and print R@10."""

    def score(q: np.ndarray, g: np.ndarray) -> float:
        return sum(recall(q, g))

    def show(name: str, q: np.ndarray, chosen: str = "") -> None:
        there, back = recall(q, target["held"])
        print(f"{name:58s} {there:9.1f}% {back:9.1f}%  {chosen}")

    for name, x in inputs.items():
        show(name, *ridge_reader(x, target, score))
        if name.startswith("each clip's sources"):
            mlp = infonce_reader(x, target, score, epochs=60, dropout=0.0)
            show("  the same, an MLP trained with InfoNCE", *mlp)
    show("the space's learned audio encoder (no map)", learned)


def _caption_embeddings(space, captions: Path, ds, train: list, val: list, ho) -> dict | None:
    """The text tower's unit embeddings of the captions of the places of ``ds``'s ``train``
    and ``val`` rows (from the CLIP stage's dataset, matched by id) and of the held-out places;
    None if some place has no caption there."""
    import torch

    from geobind.data.pairs import open_pairs, read_values

    if not captions.is_dir() or "text" not in space.modalities:
        return None
    table = open_pairs(captions).to_table(columns=["id", "text"]).to_pylist()
    said = {r["id"]: r["text"] for r in table}

    def embed(texts: list[str]) -> np.ndarray:
        return torch.nn.functional.normalize(space.embed("text", texts, 256).float(), dim=1).numpy()

    out = {}
    for split, rows in (("train", train), ("val", val)):
        ids = ds.take(rows, columns=["id"]).column("id").to_pylist()
        if any(i not in said for i in ids):
            return None
        out[split] = embed([said[i] for i in ids])
    out["held"] = embed(read_values(ho, "text", range(ho.count_rows())))
    return out


def _open_world(world_dir: Path):
    """The world that generated ``world_dir``, built again from its record (once: it renders
    the whole map)."""
    from geobind.data.synthetic import open_world
    from geobind.errors import GeobindError

    try:
        return open_world(world_dir)
    except GeobindError as exc:
        raise SystemExit(f"audio_ceiling: {exc}") from exc


def _heard_cover(world):
    """A function of (dataset, rows) -> the land cover heard at each row's place, far and near
    side by side (``World.heard_cover``), from the world's map."""

    def matrix(d, rows: list[int]) -> np.ndarray:
        table = d.take(rows, columns=["lat", "lon"]).to_pydict()
        out = []
        for lat, lon in zip(table["lat"], table["lon"]):
            far, near, sea_share = world.heard_cover(lat, lon)
            out.append(np.concatenate([far, near, [sea_share]]))
        return np.array(out, np.float64)

    return matrix


def _traced_sources(world, world_dir: Path):
    """A function of (dataset, rows, the rows' stored clips) -> each clip as what went into it:
    one column per source of the world's sounds (``Place.sources``, ``SoundBank.render``'s
    trace), replayed from ``world`` (generated into ``world_dir``)."""

    def rows_of(d, rows: list[int], stored: list[bytes]) -> list[dict]:
        ids = d.take(rows, columns=["id"]).column("id").to_pylist()
        out = []
        for pid, index, blob in zip(
            ids, world_index("audio_ceiling", world, world_dir, ids), stored
        ):
            place = world.place(index, modalities=("audio",))
            # the replay must be the very clip the dataset holds, or the bound is about another
            if place.audio != blob:
                raise SystemExit(
                    f"audio_ceiling: the world replays another clip for {pid} than "
                    f"{world_dir} holds (made by another version of geobind/world?); "
                    "generate the world again to measure this bound"
                )
            out.append(place.sources)
        return out

    columns: list[str] = []

    def matrix(d, rows: list[int], stored: list[bytes]) -> np.ndarray:
        got = rows_of(d, rows, stored)
        if not columns:  # fixed by the first (training) rows; later unseen sources are dropped
            columns.extend(sorted({k for t in got for k in t}))
        return source_matrix(got, columns)

    return matrix


if __name__ == "__main__":
    main()
