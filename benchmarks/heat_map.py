"""The similarity map's heat panel: seconds to spread n tiles' scores over a w x w frame.

    python benchmarks/heat_map.py [--tiles 1000,20000,100000] [--width 512,1024]

Tiles lie at random over the frame, with random scores; the panel is what ``geobind map``
draws beside the mosaic (``geobind.search.maps._heat``: a Gaussian-weighted mean of nearby
tiles' scores, grey where none is near). Peak memory is this process's, so run one size at a
time when it matters.
"""

from __future__ import annotations

import argparse
import resource
import time
from types import SimpleNamespace

import numpy as np

from geobind.search.maps import Frame, _heat, _spacing_px


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="1000,20000,100000")
    parser.add_argument("--width", default="512,1024")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| tiles | frame | seconds |")
    print("|---|---|---|")
    for n in (int(v) for v in args.tiles.split(",")):
        tiles = SimpleNamespace(lat=rng.uniform(40, 41, n), lon=rng.uniform(-74.5, -73.5, n))
        tiles.ids = list(range(n))
        scores = rng.uniform(-0.5, 0.7, n)
        for width in (int(v) for v in args.width.split(",")):
            frame = Frame(40.0, 41.0, -74.5, -73.5, width, width)
            sigma = 0.6 * _spacing_px(tiles, frame)  # as similarity_map sets it
            start = time.perf_counter()
            _heat(tiles, scores, frame, float(scores.min()), float(scores.max()), sigma)
            print(f"| {n:,} | {width} x {width} | {time.perf_counter() - start:.2f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
