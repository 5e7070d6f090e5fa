"""What a place's surroundings say of its tile through the frozen anchor, beside what was learned.

    python benchmarks/location_ceiling.py [--space geobind-demo/space] [--world geobind-demo/world]

The location stage learns to map a place's coordinates onto the frozen anchor's embedding of
its tile. On held-out places a lat/lon can only say what its surroundings say: whatever the
anchor reads from a tile that its neighbours' tiles do not share is out of any location
encoder's reach. This fits readers from the location stage's training pairs (the audio stage's
dataset, as the demo trains it) onto the anchor's unit embeddings and prints R@10 on the
held-out places, against the anchor's embeddings of their tiles:

- the nearest training places: each held-out place given the mean anchor embedding of its
  ``k`` nearest training places (``k`` chosen on the validation rows): what the map around a
  place says of its tile, with no model in between;
- the place's true land-cover fractions, through the ridge map ``audio_ceiling.py`` fits
  (random Fourier features, their scale and ridge chosen on the validation rows): an oracle
  that knew the land cover at the point exactly; how much of the anchor's embedding the land
  cover carries;
- the space's learned location encoder (no map: its own embeddings), for comparison.

Run it on two spaces to see what a change of anchor does to what locations can reach.
"""

from __future__ import annotations

import numpy as np
from readers import SPLITS, open_places, recall, ridge_reader


def unit_vectors(latlon: np.ndarray) -> np.ndarray:
    """``[n, 2]`` degrees -> ``[n, 3]`` points on the unit sphere."""
    lat, lon = np.radians(latlon).T
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)


def neighbours_reader(
    points: dict[str, np.ndarray],
    anchor: dict[str, np.ndarray],
    score,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
) -> tuple[np.ndarray, str]:
    """The mean anchor embedding of each row's ``k`` nearest training places (chord distance on
    the sphere, which orders as the great-circle one), ``k`` chosen by ``score`` on ``val``."""

    def nearest(q: np.ndarray) -> np.ndarray:
        # on the unit sphere the largest dot product is the shortest chord: no [n, m, 3] array
        return np.argsort(-(q @ points["train"].T), axis=1)[:, : max(ks)]

    order = {k: nearest(points[k]) for k in ("val", "held")}
    best: tuple[float, np.ndarray, str] | None = None
    for k in ks:
        got = score(anchor["train"][order["val"][:, :k]].mean(1), anchor["val"])
        if best is None or got > best[0]:
            best = (got, anchor["train"][order["held"][:, :k]].mean(1), f"k {k}")
    assert best is not None
    return best[1], best[2]


def main() -> None:
    places = open_places("location_ceiling", __doc__)
    space = places.space
    anchor = places.anchor()
    latlon = {k: np.stack([places.column(k, "lat"), places.column(k, "lon")], 1) for k in SPLITS}
    cover = {k: places.column(k, "landcover") for k in SPLITS}

    def score(q: np.ndarray, g: np.ndarray) -> float:
        return sum(recall(q, g))

    def show(name: str, q: np.ndarray, chosen: str = "") -> None:
        there, back = recall(q, anchor["held"])
        print(f"{name:58s} {there:9.1f}% {back:9.1f}%  {chosen}")

    held = places.rows["held"]
    print(f"R@10 on {len(held)} held-out places (chance {1000 / len(held):.1f}%)")
    print(f"{'location side, onto the anchor':58s} {'loc->sat':>10s} {'sat->loc':>10s}  chosen")
    points = {k: unit_vectors(v) for k, v in latlon.items()}
    show(
        "the nearest training places' mean anchor embedding",
        *neighbours_reader(points, anchor, score),
    )
    show("the land-cover fractions at the point (an oracle)", *ridge_reader(cover, anchor, score))
    if "location" in space.modalities:
        values = [tuple(p) for p in latlon["held"]]
        show(
            "the space's learned location encoder (no map)",
            places.unit(space.embed("location", values, 256)),
        )
    else:
        print("(the space holds no location encoder: the learned row is left out)")


if __name__ == "__main__":
    main()
