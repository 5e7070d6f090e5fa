"""An index of GeoTIFF tiles: rasters cut into tiles, embedded by the anchor, with footprints.

``build_raster_index(space, ["scene.tif"])`` writes ``SPACE/index/scene.lance`` (and
``scene.json``), searched like an index of a dataset (:mod:`geobind.search.index`). Besides
``id``, ``lat``, ``lon`` (the tile's centre in WGS84) and ``vector``, each row holds:

- ``source``: the key of the raster it was cut from (its file stem; the metadata names the
  file);
- ``col``, ``row``: the pixel offsets of the tile's window in that raster;
- ``footprint``: the tile's outline in WGS84 longitude/latitude as WKB, split at the
  antimeridian when it crosses it (:mod:`geobind.data.footprints`);
- ``bbox``: the footprint's bounding box, a struct of ``xmin, ymin, xmax, ymax``.

The metadata records every raster (path, size, CRS, transform, data type, band choice and
scaling), the tile size, stride and no-data threshold, and how many tiles were skipped.

Under torchrun each rank takes a contiguous share of the tile windows, embeds it and writes
its own Lance fragments; rank 0 commits them once, in rank order (the rows one process would
have written, in its order), adds the vector index and swaps the table into place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from geobind.data.fragments import (
    all_ranks,
    barrier,
    commit_fragments,
    gather_fragments,
    same_on_every_rank,
    write_fragments,
)
from geobind.data.geotiff import BandScaling, GeoRaster, raster_env
from geobind.data.tiling import (
    DEFAULT_MAX_NODATA,
    TileBatch,
    TilePlan,
    plan_tiles,
    png_bytes,
    read_tile_batches,
)
from geobind.encoders.weights import temporary_name
from geobind.errors import InputError
from geobind.search.index import (
    DEFAULT_MIN_ROWS_FOR_ANN,
    FORMAT,
    INDEX_DIR,
    SearchIndex,
    _commit_table,
    _lance,
    _write_json,
    add_vector_index,
    index_schema,
)

if TYPE_CHECKING:
    from geobind.space import Space

__all__ = [
    "BBOX_TYPE",
    "RasterIndexReport",
    "build_raster_index",
    "hit_tiles",
    "is_raster_index",
    "raster_index_schema",
    "raster_rows",
]

#: The bounding box of a footprint (RFC 7946: ``xmin > xmax`` across the antimeridian).
BBOX_TYPE = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
#: What a raster index adds to the columns of every index.
RASTER_FIELDS = [
    pa.field("source", pa.string()),
    pa.field("col", pa.int32()),
    pa.field("row", pa.int32()),
    pa.field("footprint", pa.binary()),
    pa.field("bbox", BBOX_TYPE),
]
KIND = "raster"


def raster_index_schema(dim: int, meta: dict | None = None) -> pa.Schema:
    """The Arrow schema of a raster index: an index's columns and :data:`RASTER_FIELDS`."""
    base = index_schema(dim, meta)
    return pa.schema([*base, *RASTER_FIELDS], metadata=base.metadata)


def is_raster_index(index: SearchIndex) -> bool:
    """Whether an index was built from rasters (and has footprints)."""
    return index.meta.get("kind") == KIND


@dataclass
class RasterIndexReport:
    """What :func:`build_raster_index` did."""

    path: Path
    rows: int
    windows: int
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line, and one more per note."""
        left = sum(self.skipped.values())
        lines = [
            f"{self.path}: {self.rows} tiles of {self.windows} windows "
            f"({left} skipped as over {self.meta.get('max_nodata', 0):.0%} no-data)"
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def anchor_input_size(encoder: Any) -> int:
    """The side, in pixels, of the images the anchor takes."""
    size = getattr(encoder.config, "image_size", None)
    if not size:
        raise InputError("the anchor does not say its input size: give a tile size")
    return int(size)


def default_name(rasters: Sequence[str | Path]) -> str:
    """An index's name when none is given: the first raster's (or folder's) name."""
    return Path(str(rasters[0]).rstrip("/")).stem


def build_raster_index(
    space: Space,
    rasters: Sequence[str | Path],
    name: str | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    stretch: Sequence[float] | None = None,
    max_nodata: float = DEFAULT_MAX_NODATA,
    batch_size: int = 256,
    min_rows_for_ann: int = DEFAULT_MIN_ROWS_FOR_ANN,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> RasterIndexReport:
    """Cut rasters into tiles, embed them with the space's anchor, and write one index.

    :param rasters: GeoTIFF files, or folders of them.
    :param name: the index's name in ``SPACE/index/`` (default: the first raster's).
    :param tile_size: tile side in pixels (default: the anchor's input size).
    :param stride: pixels between tiles (default: the tile size).
    :param bands: 1-based band numbers, three (RGB) or one (grey); see
        :mod:`geobind.data.geotiff` for when a choice is needed.
    :param stretch: per-band percentile stretch, ``(low, high)``.
    :param max_nodata: tiles with a larger share of no-data pixels are skipped.
    :param rank: this process's rank under torchrun (collective when ``world_size > 1``).
    """
    started = time.perf_counter()
    encoder = space.encoder(space.anchor)
    size = int(tile_size) if tile_size else anchor_input_size(encoder)
    plan = plan_tiles(rasters, size, stride, bands, stretch, max_nodata)
    out = space.path / INDEX_DIR / f"{name or default_name(rasters)}.lance"
    schema = raster_index_schema(encoder.embed_dim)
    staging = _staging(out, schema, rank, world_size)
    try:
        share = plan.share(rank, world_size)
        progress = progress and rank == 0
        fragments, skipped = _embed_share(plan, share, encoder, staging, batch_size, progress)
        fragments = gather_fragments(fragments, world_size)
        meta = {
            **_index_meta(space, encoder, fragments, min_rows_for_ann),
            **plan.describe(),
            "skipped": _sum_counts(all_ranks(skipped, world_size)),
            "processes": world_size,
        }
        if meta["rows"] == 0:
            raise InputError(
                f"nothing to index: every tile of {', '.join(map(str, rasters))} is more "
                f"than {max_nodata:.0%} no-data"
            )
        if rank == 0:
            _commit(out, staging, fragments, raster_index_schema(encoder.embed_dim, meta), meta)
            meta["build_seconds"] = round(time.perf_counter() - started, 3)
            _write_json(out, meta)
    finally:
        if rank == 0:
            _remove(staging)
    barrier(world_size)  # the others return once the index is in place
    return RasterIndexReport(out, meta["rows"], len(plan), meta["skipped"], plan.notes, meta)


def _staging(out: Path, schema: pa.Schema, rank: int, world_size: int) -> Path:
    """The table every rank writes its fragments into, made (empty) by rank 0."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_name(out)
    if rank == 0:  # made now, Lance writes fragments into it without warning that it is new
        _lance().write_dataset(schema.empty_table(), str(staging), schema=schema)
    return Path(same_on_every_rank(str(staging), world_size))


def _embed_share(
    plan: TilePlan,
    share: tuple[int, int],
    encoder: Any,
    staging: Path,
    batch_size: int,
    progress: bool,
) -> tuple[list, dict[str, int]]:
    """Embed windows ``share`` of the plan into fragments of ``staging``: their metadata,
    and the tiles skipped per raster."""
    skipped: dict[str, int] = {}
    tiles = read_tile_batches(plan, *share, batch_size, skipped)
    schema = raster_index_schema(encoder.embed_dim)
    records = _records(encoder, tiles, schema, batch_size, progress, share[1] - share[0])
    with raster_env():
        fragments = write_fragments(staging, records, schema)
    return fragments, skipped


def _index_meta(space: Space, encoder: Any, fragments: list, min_rows_for_ann: int) -> dict:
    return {
        "format": FORMAT,
        "kind": KIND,
        "column": encoder.modality.column,
        "anchor": space.anchor,
        "anchor_sha256": space.entry(space.anchor).sha256,
        "rows": sum(f.physical_rows for f in fragments),
        "dim": encoder.embed_dim,
        "min_rows_for_ann": min_rows_for_ann,
    }


def _sum_counts(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def _commit(out: Path, staging: Path, fragments: list, schema: pa.Schema, meta: dict) -> None:
    """Make the ranks' fragments the index: a new version of the table at ``out`` (readers of
    the old one finish their queries), or a new table renamed into place; then its vector
    index."""

    def write(uri: Path, mode: str) -> Any:
        data = Path(uri) / "data"
        data.mkdir(parents=True, exist_ok=True)
        for part in (staging / "data").iterdir():  # named relative to the table's data/
            os.replace(part, data / part.name)
        return commit_fragments(uri, fragments, schema)

    def finish(ds: Any) -> None:
        large = meta["rows"] >= meta["min_rows_for_ann"]
        meta["vector_index"] = add_vector_index(ds) if large else None

    _commit_table(out, write, finish)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _records(
    encoder: Any,
    batches: Iterator[TileBatch],
    schema: pa.Schema,
    batch_size: int,
    progress: bool,
    total: int,
) -> Iterator[pa.RecordBatch]:
    """Embedded tiles as record batches of a raster index."""
    from tqdm import tqdm

    with tqdm(total=total, desc="index", unit=" windows", disable=not progress) as bar:
        for batch in batches:
            vectors = encoder.embed([t.png() for t in batch.tiles], batch_size=batch_size)
            bar.update(len(batch.tiles))
            yield _record_batch(batch, vectors.numpy(), schema)


def _record_batch(batch: TileBatch, vectors: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    fp, tiles = batch.footprints, batch.tiles
    flat = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    bbox = pa.StructArray.from_arrays(
        [pa.array(getattr(fp, k), pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")],
        fields=list(BBOX_TYPE),
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.array([t.id for t in tiles], pa.string()),
            pa.array(fp.lat, pa.float64()),
            pa.array(fp.lon, pa.float64()),
            pa.FixedSizeListArray.from_arrays(pa.array(flat), vectors.shape[1]),
            pa.array([t.raster.key for t in tiles], pa.string()),
            pa.array([t.col for t in tiles], pa.int32()),
            pa.array([t.row for t in tiles], pa.int32()),
            pa.array(fp.wkb(), pa.binary()),
            bbox,
        ],
        schema=schema,
    )


def hit_tiles(index: SearchIndex, hits: Sequence[dict]) -> list[bytes]:
    """The hits' tiles as PNG, cut again from their rasters with the recorded scaling."""
    rows = raster_rows(index, [h["id"] for h in hits], ["source", "col", "row"])
    records = {r["key"]: r for r in index.meta["rasters"]}
    size, out = int(index.meta["tile_size"]), []
    with raster_env():
        for hit in hits:
            row = rows[hit["id"]]
            record = records[row["source"]]
            scaling = BandScaling.from_dict(record["scaling"])
            with GeoRaster(record["path"], scaling=scaling) as raster:
                out.append(png_bytes(raster.read_rgb(row["col"], row["row"], size)[0]))
    return out


def raster_rows(index: SearchIndex, ids: Sequence[str], columns: Sequence[str]) -> dict[str, dict]:
    """Columns of the rows with these ids, by id."""
    if not ids:
        return {}
    quoted = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
    table = index.ds.to_table(columns=["id", *columns], filter=f"id IN ({quoted})").to_pylist()
    return {row["id"]: row for row in table}
