"""Where a text query's hits over the world's COG fall, read on the world's land-cover map.

    python benchmarks/raster_shores.py [--space geobind-demo/space] [--world geobind-demo/world]
        [--index mosaic] [--text "waves on a sandy beach"] [--top 10]

Reads the GeoJSON that ``geobind search SPACE --index mosaic --text ... --geojson`` writes
(written here the same way), maps each hit's footprint back onto the world's land-cover
labels, and counts the hits holding both sand and water (a shore), against the share of all
windows of the index that do: the chance rate of a query that knows nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def covers(world, bbox) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Land-cover fractions inside a WGS84 bbox of the world."""
    west, south, east, north = bbox
    x0, y0 = (int(round(v)) for v in world.latlon_to_pixel(north, west))
    x1, y1 = (int(round(v)) for v in world.latlon_to_pixel(south, east))
    labels = world.terrain.labels[y0:y1, x0:x1].ravel()
    return np.bincount(labels, minlength=8) / max(1, labels.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="geobind-demo/space")
    parser.add_argument("--world", default="geobind-demo/world")
    parser.add_argument("--index", default="mosaic")
    parser.add_argument("--text", default="waves on a sandy beach")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from geobind.search.index import open_index
    from geobind.space import load_space
    from geobind.world import LAND_COVERS, World, WorldConfig

    settings = json.loads(Path(args.world, "world.json").read_text())
    world = World(WorldConfig(seed=settings["seed"], places=settings["places"]))
    sand, water = LAND_COVERS.index("sand"), LAND_COVERS.index("water")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hits.geojson"
        subprocess.run(
            [sys.executable, "-m", "geobind.cli", "search", args.space, "--index", args.index,
             "--text", args.text, "--top", str(args.top), "--geojson", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        hits = json.loads(out.read_text())["features"]
    on_shore = [bool((f := covers(world, h["bbox"]))[sand] > 0 and f[water] > 0) for h in hits]
    index = open_index(load_space(args.space), args.index)
    boxes = index.ds.to_table(columns=["bbox"]).column("bbox").to_pylist()
    every = [covers(world, [b[k] for k in ("xmin", "ymin", "xmax", "ymax")]) for b in boxes]
    base = np.mean([f[sand] > 0 and f[water] > 0 for f in every])
    print(f'"{args.text}": {sum(on_shore)} of the top {len(hits)} hits hold sand and water')
    print(f"  (of all {len(every)} windows of the index: {base:.0%})")
    for h, shore in zip(hits, on_shore):
        f = covers(world, h["bbox"])
        top = ", ".join(f"{LAND_COVERS[i]} {f[i]:.0%}" for i in np.argsort(-f)[:3] if f[i] > 0)
        lon, lat = h["geometry"]["coordinates"]
        mark = "shore" if shore else ""
        print(f"  #{h['properties']['rank']:<2} {lat:9.5f} {lon:10.5f}  {mark:5s}  {top}")


if __name__ == "__main__":
    main()
