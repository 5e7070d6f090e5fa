"""GeoParquet export and read-back of a 1M-row raster index (synthetic vectors).

    python benchmarks/geoparquet_export.py [--rows 1000000] [--dim 64]

A raster index of ``--rows`` tiles is written directly (a grid of 64 px tiles over a UTM
raster, footprints computed as ``index build --raster`` does; unit vectors drawn at random:
the export does not care where they came from). Then ``geobind export``'s function writes it
as GeoParquet 1.1, and the file is read back by pyarrow, GeoPandas, and DuckDB (a bbox
filter on the covering column, without the spatial extension). Times are wall seconds;
the export's peak memory is the process's, measured in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITE = """
import json, math, sys, time
import numpy as np, pyarrow as pa
from geobind.data.footprints import tile_footprints
from geobind.data.fragments import write_sharded
from geobind.search.raster_index import BBOX_TYPE, raster_index_schema
rows, dim, uri = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
side = math.ceil(math.sqrt(rows))
meta = {"format": 1, "kind": "raster", "column": "satellite", "anchor": "satellite",
        "anchor_sha256": "bench", "rows": rows, "dim": dim, "tile_size": 64, "stride": 64,
        "rasters": [{"key": "bench", "path": "/data/bench.tif"}]}
schema = raster_index_schema(dim, meta)
transform = (10.0, 0.0, 300_000.0, 0.0, -10.0, 6_000_000.0)
rng = np.random.default_rng(0)
def batches():
    for start in range(0, rows, 65536):
        n = min(65536, rows - start)
        i = np.arange(start, start + n)
        cols, rws = (i % side) * 64, (i // side) * 64
        fp = tile_footprints(transform, "EPSG:32633", cols, rws, 64)
        v = rng.standard_normal((n, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        bounds = [pa.array(getattr(fp, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        bbox = pa.StructArray.from_arrays(bounds, fields=list(BBOX_TYPE))
        yield pa.RecordBatch.from_arrays([
            pa.array([f"bench-{r:06d}-{c:06d}" for r, c in zip(rws, cols)]),
            pa.array(fp.lat), pa.array(fp.lon),
            pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim),
            pa.array(["bench"] * n), pa.array(cols, pa.int32()), pa.array(rws, pa.int32()),
            pa.array(fp.wkb(), pa.binary()), bbox], schema=schema)
write_sharded(uri, batches(), schema)  # batches made here: PROJ must stay in this thread
"""

EXPORT = """
import json, resource, sys, time, lance
from pathlib import Path
from geobind.search.index import METADATA_KEY, SearchIndex
from geobind.search.export import export_geoparquet
ds = lance.dataset(sys.argv[1])
index = SearchIndex(Path(sys.argv[1]), json.loads(ds.schema.metadata[METADATA_KEY]), ds)
base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
report = export_geoparquet(index, sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"rows": report.rows, "seconds": seconds, "base_mb": base_mb,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def timed(label: str, run) -> object:
    start = time.perf_counter()
    out = run()
    print(f"  {label:44s} {time.perf_counter() - start:7.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        index, out = Path(tmp) / "bench.lance", Path(tmp) / "bench.parquet"
        subprocess.run([sys.executable, "-c", WRITE, str(args.rows), str(args.dim), str(index)],
                       check=True)  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-c", EXPORT, str(index), str(out)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        export = json.loads(result.stdout.strip().splitlines()[-1])
        size_mb = out.stat().st_size / 2**20
        print(f"{export['rows']} rows, dim {args.dim}: GeoParquet {size_mb:.0f} MB")
        print(
            f"  {'export (geobind export)':44s} {export['seconds']:7.2f} s, peak "
            f"{export['peak_mb']:.0f} MB ({export['base_mb']:.0f} MB before it began)"
        )
        read_back(out, args.rows)


def read_back(out: Path, rows: int) -> None:
    import duckdb
    import geopandas
    import pyarrow.parquet as pq

    table = timed("read: pyarrow.parquet.read_table", lambda: pq.read_table(out))
    assert table.num_rows == rows
    gdf = timed("read: geopandas.read_parquet", lambda: geopandas.read_parquet(out))
    assert len(gdf) == rows and gdf.crs is not None
    side = math.ceil(math.sqrt(rows))
    lon0, lat0 = gdf["lon"].min(), gdf["lat"].max()
    span = 0.1 * (gdf["lon"].max() - lon0)
    sql = (
        f"SELECT count(*) FROM read_parquet('{out}') WHERE bbox.xmin >= {lon0} AND "
        f"bbox.xmax <= {lon0 + span} AND bbox.ymax <= {lat0} AND bbox.ymin >= {lat0 - span}"
    )
    found = timed(
        "read: DuckDB bbox filter (about 1% of rows)", lambda: duckdb.sql(sql).fetchall()[0]
    )
    print(f"  ({found[0]} rows in the box; grid of {side} x {side} tiles)")


if __name__ == "__main__":
    main()
