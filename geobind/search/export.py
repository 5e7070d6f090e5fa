"""An index's tiles and a search's hits in the files GIS tools open: GeoParquet and GeoJSON.

:func:`export_geoparquet` writes an index as GeoParquet 1.1, streaming (memory does not grow
with the rows), one row a tile:

- ``id`` (string): the tile's id in the index;
- ``lat``, ``lon`` (double): the tile's centre, WGS84 degrees;
- ``source`` (string): the raster (its path) or the dataset the tile came from;
- ``geometry`` (binary, WKB): the tile's footprint polygon in WGS84 longitude/latitude (a
  MultiPolygon when split at the antimeridian); for an index of a dataset, whose rows have
  no footprint, the centre point;
- ``bbox`` (struct of double ``xmin, ymin, xmax, ymax``): the geometry's bounding box, the
  GeoParquet 1.1 ``covering`` column;
- ``embedding`` (fixed-size list of float): the tile's unit anchor embedding.

The ``geo`` file metadata names ``geometry`` as the primary column, encoding WKB, its geometry
types, the CRS (OGC:CRS84 as PROJJSON: longitude, latitude on WGS84), the bbox covering, and
the file's bbox (left out when a footprint crosses the antimeridian: RFC 7946 bboxes of a set
of such boxes are not defined by a min and max).

:func:`write_geojson` writes a search's hits as an RFC 7946 FeatureCollection of points (the
tiles' centres) with their rank, score and id, and the footprint's ``bbox`` when known.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from geobind.encoders.weights import atomic_write, replacing
from geobind.search.index import SearchIndex
from geobind.search.raster_index import BBOX_TYPE, is_raster_index, raster_rows

__all__ = [
    "GEOPARQUET_VERSION",
    "GeoParquetReport",
    "export_geoparquet",
    "geoparquet_metadata",
    "hit_features",
    "write_geojson",
]

GEOPARQUET_VERSION = "1.1.0"
#: Rows read from the index and written as one Parquet row group (the bbox covering's
#: statistics are kept per row group, so smaller groups let readers skip more).
ROWS_PER_GROUP = 65_536


def _crs84() -> dict:
    from pyproj import CRS

    return CRS("OGC:CRS84").to_json_dict()


def geoparquet_metadata(
    geometry_types: Sequence[str], bbox: Sequence[float] | None
) -> dict[str, Any]:
    """The ``geo`` metadata (GeoParquet 1.1) of an export."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": list(geometry_types),
        "crs": _crs84(),
        "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if bbox is not None:
        column["bbox"] = [float(v) for v in bbox]
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


def _schema(dim: int, geo: dict, index: SearchIndex) -> pa.Schema:
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("source", pa.string()),
        pa.field("geometry", pa.binary()),
        pa.field("bbox", BBOX_TYPE),
        pa.field("embedding", pa.list_(pa.float32(), dim)),
    ]
    meta = {
        b"geo": json.dumps(geo).encode(),
        b"geobind": json.dumps({k: v for k, v in index.meta.items() if k != "rasters"}).encode(),
    }
    return pa.schema(fields, metadata=meta)


@dataclass
class GeoParquetReport:
    """What :func:`export_geoparquet` wrote."""

    path: Path
    rows: int
    geometry_types: list[str]
    bbox: list[float] | None


def export_geoparquet(
    index: SearchIndex, out: str | Path, rows_per_group: int = ROWS_PER_GROUP
) -> GeoParquetReport:
    """Write an index as GeoParquet 1.1 (see the module doc); atomically."""
    import pyarrow.parquet as pq

    out = Path(out)
    types, bbox = _extent(index)
    schema = _schema(index.dim, geoparquet_metadata(types, bbox), index)
    rows = 0
    with replacing(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in _export_batches(index, schema, rows_per_group):
            writer.write_batch(batch, row_group_size=rows_per_group)
            rows += batch.num_rows
    return GeoParquetReport(out, rows, types, bbox)


def _extent(index: SearchIndex) -> tuple[list[str], list[float] | None]:
    """The geometry types and the file bbox, from one pass over the small columns."""
    if not is_raster_index(index):
        t = index.ds.to_table(columns=["lat", "lon"])
        lat, lon = t.column("lat").to_numpy(), t.column("lon").to_numpy()
        return ["Point"], [lon.min(), lat.min(), lon.max(), lat.max()]
    box = index.ds.to_table(columns=["bbox"]).column("bbox").combine_chunks()
    xmin, ymin, xmax, ymax = (box.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
    if (xmin > xmax).any():
        return ["MultiPolygon", "Polygon"] if (xmin <= xmax).any() else ["MultiPolygon"], None
    return ["Polygon"], [xmin.min(), ymin.min(), xmax.max(), ymax.max()]


def _export_batches(index: SearchIndex, schema: pa.Schema, rows: int) -> Iterator[pa.RecordBatch]:
    raster = is_raster_index(index)
    paths = {r["key"]: r["path"] for r in index.meta.get("rasters", [])}
    columns = ["id", "lat", "lon", "vector"] + (["source", "footprint", "bbox"] if raster else [])
    for batch in index.ds.to_batches(columns=columns, batch_size=rows):
        if raster:
            keys = batch.column("source").to_pylist()
            source = pa.array([paths.get(k, k) for k in keys], pa.string())
            geometry, bbox = batch.column("footprint"), batch.column("bbox")
        else:
            source = pa.array([index.dataset] * batch.num_rows, pa.string())
            geometry, bbox = _points(batch.column("lon").to_numpy(), batch.column("lat").to_numpy())
        yield pa.RecordBatch.from_arrays(
            [
                batch.column("id"),
                batch.column("lat"),
                batch.column("lon"),
                source,
                geometry,
                bbox,
                batch.column("vector"),
            ],
            schema=schema,
        )


def _points(lon: np.ndarray, lat: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Centre points as WKB, and their (degenerate) bounding boxes."""
    wkb = shapely.to_wkb(shapely.points(lon, lat), flavor="iso")
    bbox = pa.StructArray.from_arrays(
        [pa.array(v, pa.float64()) for v in (lon, lat, lon, lat)], fields=list(BBOX_TYPE)
    )
    return pa.array(list(wkb), pa.binary()), bbox


# ---- GeoJSON ----------------------------------------------------------------------------------
def hit_features(index: SearchIndex, hits: Sequence[dict], query: dict | None = None) -> dict:
    """A search's hits as an RFC 7946 FeatureCollection of points, best first."""
    extra = (
        raster_rows(index, [h["id"] for h in hits], ["source", "bbox"])
        if is_raster_index(index)
        else {}
    )
    paths = {r["key"]: r["path"] for r in index.meta.get("rasters", [])}
    features = []
    for rank, hit in enumerate(hits, 1):
        row = extra.get(hit["id"], {})
        feature: dict[str, Any] = {
            "type": "Feature",
            "id": hit["id"],
            "geometry": {"type": "Point", "coordinates": [_deg(hit["lon"]), _deg(hit["lat"])]},
            "properties": {
                "rank": rank,
                "score": round(float(hit["score"]), 6),
                "id": hit["id"],
                "source": paths.get(row.get("source"), row.get("source")) or index.dataset,
            },
        }
        if row.get("bbox"):
            feature["bbox"] = [_deg(row["bbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        features.append(feature)
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if query:
        collection["query"] = query  # a foreign member (RFC 7946 section 6.1)
    return collection


def _deg(value: float) -> float:
    return round(float(value), 7)  # ~1 cm: RFC 7946 suggests no more than 6 decimals matter


def write_geojson(
    index: SearchIndex, hits: Sequence[dict], out: str | Path, query: dict | None = None
) -> Path:
    """Write :func:`hit_features` to ``out`` (atomically)."""
    out = Path(out)
    atomic_write(out, json.dumps(hit_features(index, hits, query), indent=1).encode())
    return out
