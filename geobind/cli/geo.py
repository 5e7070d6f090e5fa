"""Real geodata in and out: ``geobind export``, and the raster and GIS options of
``geobind index build``, ``geobind search`` and ``geobind map``.

rasterio, pyproj and shapely load only inside the commands that read or write geodata.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from geobind.cli.common import Subcommands, check_output_file
from geobind.errors import InputError
from geobind.search.index import SearchIndex, open_index
from geobind.space import Space, load_space

__all__ = [
    "add_export",
    "add_raster_options",
    "build_from_rasters",
    "check_raster_args",
    "map_raster",
    "raster_hit_tiles",
    "write_hits_geojson",
]


def _numbers(kind: type) -> Any:
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}"
            ) from None

    return parse


def add_raster_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``index build --raster``."""
    group = parser.add_argument_group("with --raster")
    group.add_argument(
        "--tile-size", type=int, metavar="PX", help="tile side (default: the anchor's input size)"
    )
    group.add_argument("--stride", type=int, metavar="PX", help="between tiles (default: tile)")
    group.add_argument(
        "--bands",
        type=_numbers(int),
        metavar="R,G,B",
        help="band numbers for red, green, blue (or one for grey); needed unless the raster "
        "is 8-bit RGB or has one band",
    )
    group.add_argument(
        "--stretch",
        type=_numbers(float),
        metavar="LOW,HIGH",
        help="per-band percentile stretch to 0..255 (default 2,98 for rasters that are not "
        "8-bit; given, it stretches 8-bit ones too)",
    )
    group.add_argument(
        "--max-nodata",
        type=float,
        default=None,
        metavar="SHARE",
        help="skip tiles with a larger share of no-data pixels (default: 0.25)",
    )
    group.add_argument("--name", help="the index's name (default: the first raster's)")


def check_raster_args(args: argparse.Namespace) -> None:
    """What can be checked before a model loads: the rasters are there, sizes are positive."""
    from pathlib import Path

    rasters = args.raster if isinstance(args.raster, list) else [args.raster]
    for given in rasters:
        if not Path(given).exists():
            raise InputError(f"raster not found: {given}")
    for flag in ("tile_size", "stride"):
        if getattr(args, flag, None) is not None and getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be at least 1 pixel")
    share = getattr(args, "max_nodata", None)
    if share is not None and not 0.0 <= share <= 1.0:
        raise InputError(f"--max-nodata must be within 0..1, got {share}")


def _ranks() -> tuple[int, int]:
    """This process's rank and the world size: torchrun's, or (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from geobind.train.distributed import Dist  # torch

    dist = Dist.from_env()
    return dist.rank, dist.world_size


def build_from_rasters(space: Space, args: argparse.Namespace, minimum: int) -> int:
    """``geobind index build SPACE --raster ...``: rasters cut into tiles, one index."""
    import sys

    from geobind.data.tiling import DEFAULT_MAX_NODATA  # numpy, rasterio
    from geobind.search.raster_index import build_raster_index

    rank, world_size = _ranks()
    report = build_raster_index(
        space,
        args.raster,
        name=args.name,
        tile_size=args.tile_size,
        stride=args.stride,
        bands=args.bands,
        stretch=args.stretch,
        batch_size=args.batch_size,
        min_rows_for_ann=minimum,
        rank=rank,
        world_size=world_size,
        max_nodata=DEFAULT_MAX_NODATA if args.max_nodata is None else args.max_nodata,
        progress=sys.stderr.isatty(),
    )
    if rank == 0:
        print(report.summary())
    return 0


def write_hits_geojson(
    index: SearchIndex, hits: list[dict], out: str, modality: str, value: Any
) -> None:
    """``geobind search ... --geojson FILE``."""
    import sys

    from geobind.search.export import write_geojson  # shapely, pyarrow
    from geobind.search.maps import query_label

    write_geojson(index, hits, out, {"modality": modality, "label": query_label(modality, value)})
    print(f"{len(hits)} hits written to {out}", file=sys.stderr)


def raster_hit_tiles(index: SearchIndex, hits: list[dict]) -> list[bytes] | None:
    """The hits' tiles cut from their rasters, for an index of rasters (else ``None``)."""
    if index.meta.get("kind") != "raster":
        return None
    from geobind.search.raster_index import hit_tiles  # rasterio

    return hit_tiles(index, hits)


def map_raster(space: Space, args: argparse.Namespace, modality: str, value: Any) -> int:
    """``geobind map SPACE --raster TIF ...``: the PNG, and the GeoTIFF beside it."""
    from geobind.search.raster_map import raster_similarity_map  # numpy, rasterio

    drawn = raster_similarity_map(
        space, args.raster, modality, value, args.out, index=args.index, mark=args.top
    )
    best = drawn.top[0] if drawn.top else {"id": "-", "score": float("nan")}
    print(
        f"map written to {drawn.path} and {drawn.geotiff} ({drawn.shape[1]} x {drawn.shape[0]} "
        f"cells of {drawn.cell} px): cosine {drawn.score_min:.4f} to {drawn.score_max:.4f}, "
        f"best tile {best['id']} ({best['score']:.4f})"
    )
    return 0


def add_export(sub: Subcommands) -> None:
    """``geobind export SPACE --index NAME --to FILE.parquet``."""
    ex = sub.add_parser(
        "export",
        help="write an index's tiles and embeddings as GeoParquet",
        description="Write every tile of an index as GeoParquet 1.1: id, lat, lon, source, the "
        "footprint polygon in WGS84 (WKB), its bbox covering column, and the embedding.",
    )
    ex.add_argument("space", help="a trained space")
    ex.add_argument(
        "--index",
        metavar="NAME",
        help="the index: a name in SPACE/index/ or a path (default: the space's only index)",
    )
    ex.add_argument("--to", required=True, metavar="FILE", help="the .parquet file to write")
    ex.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Write an index as GeoParquet."""
    from geobind.search.export import export_geoparquet  # pyarrow, shapely

    check_output_file(args.to, "--to", "GeoParquet", (".parquet", ".geoparquet"))
    space = load_space(args.space)
    report = export_geoparquet(open_index(space, args.index), args.to)
    print(
        f"{report.path}: {report.rows} rows, GeoParquet 1.1, "
        f"geometry {'/'.join(report.geometry_types)} in OGC:CRS84"
    )
    return 0
