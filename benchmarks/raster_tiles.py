"""Embedding rasters: tiles/s per process, and peak memory as the raster grows.

    python benchmarks/raster_tiles.py [--space geobind-demo/space]
        [--raster geobind-demo/world/mosaic.tif] [--side 4096]

1. tiles/s: ``index build --raster`` over a raster at the anchor's input size (stride = tile),
   in one process and under ``torchrun --nproc_per_node 2``; each build runs as a fresh
   process, and the rate counts the build itself (planning, reading, embedding, writing, the
   commit), not Python's start-up or loading the space.
2. peak memory: the same build over synthetic tiled GeoTIFFs of N x N and 2N x 2N pixels
   (4x the pixels), each in a fresh process; the peak resident memory of the process is
   printed beside the raster's size. Reading is windowed, so it should not grow with it.

Run ``make demo`` first (the demo's anchor: a tiny ViT, 64 px input), or pass any space.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from geobind.space import load_space
from geobind.search.raster_index import build_raster_index
space = load_space(sys.argv[1])
space.encoder(space.anchor)  # loaded before the clock starts
base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
report = build_raster_index(space, [sys.argv[2]], name=sys.argv[3],
                            tile_size=int(sys.argv[4]) or None)
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": report.rows, "seconds": seconds, "peak_mb": peak_mb,
                  "base_mb": base_mb}))
"""


def child(space: str, raster: str, name: str, tile: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, space, raster, name, str(tile)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def two_processes(space: str, raster: str, name: str) -> float:
    """Seconds of a two-rank build, as the index records it (rank 0's build time)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "geobind.cli", "index",
         "build", space, "--raster", raster, "--name", name],
        check=True, capture_output=True,
    )  # fmt: skip
    meta = json.loads((Path(space) / "index" / f"{name}.json").read_text())
    return meta["rows"] / meta["build_seconds"]


def synthetic_raster(path: Path, side: int) -> Path:
    """A tiled, DEFLATE-compressed 8-bit RGB GeoTIFF of ``side`` x ``side`` pixels, written
    in strips (a smooth pattern with noise, so it compresses like imagery)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500_000, 5_000_000, 10, 10), tiled=True, compress="deflate",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, side, 512):
            rows = min(512, side - top)
            y, x = np.mgrid[top : top + rows, 0:side]
            base = 127 + 60 * np.sin(x / 97.0)[None] * np.cos(y / 131.0)[None]
            noise = rng.integers(-30, 30, (3, rows, side))
            block = np.clip(base + noise, 0, 255).astype(np.uint8)
            dst.write(block, window=Window(0, top, side, rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="geobind-demo/space")
    parser.add_argument("--raster", default="geobind-demo/world/mosaic.tif")
    parser.add_argument("--side", type=int, default=4096, help="N of the memory runs")
    parser.add_argument("--memory-tile", type=int, default=256, help="tile px of those runs")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not Path(args.space, "manifest.json").is_file():
        sys.exit(f"no space at {args.space}: run 'make demo' first, or pass --space")

    one = child(args.space, args.raster, "bench-tiles-1", 0)
    print(f"raster {args.raster}: {one['rows']} tiles at the anchor's input size")
    print(f"  1 process : {one['rows'] / one['seconds']:7.1f} tiles/s")
    rate = two_processes(args.space, args.raster, "bench-tiles-2")
    print(f"  2 processes: {rate:7.1f} tiles/s in all, {rate / 2:7.1f} per process")

    with tempfile.TemporaryDirectory() as tmp:
        print(f"peak memory, tiles of {args.memory_tile} px (resized to the anchor's input):")
        for side in (args.side, 2 * args.side):
            raster = synthetic_raster(Path(tmp) / f"r{side}.tif", side)
            run = child(args.space, str(raster), f"bench-mem-{side}", args.memory_tile)
            raw_mb = side * side * 3 / 2**20
            print(
                f"  {side:6d} x {side:<6d} px ({raw_mb:6.0f} MB of pixels): {run['rows']:6d} "
                f"tiles, peak {run['peak_mb']:6.0f} MB ({run['base_mb']:.0f} MB with the space "
                f"loaded), {run['rows'] / run['seconds']:6.1f} tiles/s"
            )
    for name in ("bench-tiles-1", "bench-tiles-2", f"bench-mem-{args.side}",
                 f"bench-mem-{2 * args.side}"):  # fmt: skip
        for suffix in (".lance", ".json"):
            target = Path(args.space) / "index" / f"{name}{suffix}"
            if target.is_dir():
                import shutil

                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
