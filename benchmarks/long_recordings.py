"""A field recording longer than the audio encoder's clip: its middle clip, or all of it.

    python benchmarks/long_recordings.py [--space geobind-demo/space] [--world geobind-demo/world]

The world renders each of the 1,000 held-out places' sounds again as recordings of 5, 15, 30
and 60 s (the same place, hour and weather; a longer visit hears more events), and the space's
audio encoder embeds them two ways: its middle clip only (``clip_windows: 1``), and the mean of
up to 12 clips spread over the whole recording (the default, ``geobind.Views``). Both are read
against the anchor's embeddings of the places' tiles (R@10), beside the floor: band energies of
the same recordings (all of each), colour histograms of the tiles, linear CCA fitted on the audio
stage's 3,000-pair sample of 5 s training clips, as ``geobind eval`` fits it. No model is
trained; the world on disk is not touched.
"""

from __future__ import annotations

import time

from readers import open_places, world_index
from sound_bounds import what_if

SECONDS = (5.0, 15.0, 30.0, 60.0)


def main() -> None:
    places = open_places("long_recordings", __doc__)  # first: it keeps the hub offline
    from geobind.data.synthetic import open_world
    from geobind.errors import GeobindError
    from geobind.eval.floor import fit_space_floor
    from geobind.eval.retrieval import ranks, recall_metrics

    try:
        world = open_world(places.world)
    except GeobindError as exc:
        raise SystemExit(f"long_recordings: {exc}") from exc
    space = places.space
    rows = places.rows["held"]
    ids = places.sets["held"].take(rows, columns=["id"]).column("id").to_pylist()
    held = world_index("long_recordings", world, places.world, ids)
    tiles = places.read("held", "satellite")
    anchor = space.embed("satellite", tiles, 256)
    floor = fit_space_floor("audio", "satellite", str(places.world / "audio.lance"))
    if isinstance(floor, str):
        raise SystemExit(f"long_recordings: no floor: {floor}")
    floor_tiles = floor.embed("satellite", tiles)
    encoder = space.encoder("audio")
    windows = encoder.config.clip_windows

    def r10(q, g) -> tuple[float, float]:
        return tuple(100 * recall_metrics(ranks(a, b), (10,))["R@10"] for a, b in ((q, g), (g, q)))

    print(f"R@10 on {len(rows)} held-out places: satellite -> audio / audio -> satellite")
    print(
        f"{'recording':>9s} {'middle clip':>15s} {f'{windows} clips, mean':>16s} "
        f"{'floor':>13s} {'x floor':>8s} {'embed s/rec':>12s}"
    )
    for seconds in SECONDS:
        with what_if(world, {"clip_seconds": seconds}):
            clips = [world.place(i, modalities=("audio",)).audio for i in held]
        encoder.config.clip_windows = 1
        middle = encoder.embed(clips, 64)
        encoder.config.clip_windows = windows
        start = time.perf_counter()
        whole = encoder.embed(clips, 64)
        took = (time.perf_counter() - start) / len(clips)
        f_sa, f_as = r10(floor_tiles, floor.embed("audio", clips))
        m_sa, m_as = r10(anchor, middle)
        w_sa, w_as = r10(anchor, whole)
        print(
            f"{seconds:7.0f} s {m_sa:6.1f} / {m_as:4.1f}% {w_sa:7.1f} / {w_as:4.1f}% "
            f"{f_sa:5.1f} / {f_as:4.1f}% {w_sa / f_sa:7.1f}x {took:11.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
