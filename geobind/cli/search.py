"""Finding places: ``geobind index build``, ``geobind search`` and ``geobind map``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from geobind.cli.common import GEOJSON, PNG, Subcommands, check_output_file, parse_query
from geobind.cli.geo import (
    add_raster_options,
    build_from_rasters,
    check_raster_args,
    map_raster,
    raster_hit_tiles,
    write_hits_geojson,
)
from geobind.data.raster import Raster, read_raster
from geobind.errors import InputError
from geobind.plugins import get_registry
from geobind.search.index import (
    DEFAULT_MIN_ROWS_FOR_ANN,
    build_index,
    list_indexes,
    open_index,
    search,
)
from geobind.space import Space, load_space

__all__ = ["add_index", "add_map", "add_search"]

#: Query flags and the modality each queries with.
QUERY_FLAGS = (("text", "text"), ("audio", "audio"), ("image", "satellite"), ("ground", "ground"))


def _add_query_args(parser: argparse.ArgumentParser) -> None:
    """Exactly one query: --query MODALITY=VALUE (any modality), or a flag for a common one."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--query",
        metavar="MODALITY=VALUE",
        help="a query of any modality the space holds: a file path for images and sounds, "
        "text for text, what the plugin parses otherwise (location=40.5,-74.0)",
    )
    group.add_argument("--text", help="a sentence, e.g. 'waves on a sandy beach'")
    group.add_argument("--audio", metavar="FILE", help="a sound file (wav, flac, ...)")
    group.add_argument("--image", metavar="FILE", help="a satellite tile image")
    group.add_argument("--ground", metavar="FILE", help="a ground-level photo")


def _query(args: argparse.Namespace) -> tuple[str, str]:
    """The query's modality and value, checked before any model loads: at least one tile
    asked for, a text that is not blank, a query file that is there, not empty, and passes its
    modality's check (it decodes)."""
    if getattr(args, "top", 1) < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    if args.query is not None:
        modality, value = parse_query(args.query)
        flag = "--query"
    else:
        modality, value = next(
            (m, getattr(args, f)) for f, m in QUERY_FLAGS if getattr(args, f) is not None
        )
        flag = f"--{_flag(modality)}"
    spec = get_registry().modality(modality)
    if spec.parse is not None or spec.columns:
        return modality, value  # the plugin's parse says what is wrong with it
    if spec.storage == "string":
        if not value.strip():
            raise InputError(f"{flag}: empty query")
        return modality, value
    path = Path(value)
    if not path.is_file():
        raise InputError(
            f"{path}: query file not found" if not path.exists() else f"{path}: not a file"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:  # the modality's own cheap check: a sound that does not decode, a picture that is not
        spec.check(path.read_bytes())
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return modality, value


def _flag(modality: str) -> str:
    return next(f for f, m in QUERY_FLAGS if m == modality)


def add_index(sub: Subcommands) -> None:
    """``geobind index build SPACE --data DATASET``."""
    index = sub.add_parser("index", help="nearest-neighbour indexes of a space's tiles")
    index_sub = index.add_subparsers(dest="index_command", metavar="COMMAND", required=True)
    build = index_sub.add_parser(
        "build", help="embed a dataset's tiles, or rasters cut into tiles, into SPACE/index/"
    )
    build.add_argument("space", help="a trained space")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a Lance dataset with satellite tiles")
    source.add_argument(
        "--raster",
        nargs="+",
        metavar="TIF",
        help="GeoTIFF/COG files or folders of them, cut into tiles (under torchrun, each "
        "process embeds a share)",
    )
    add_raster_options(build)
    build.add_argument(
        "--min-rows-for-ann",
        type=int,
        default=None,
        metavar="N",
        help="add a vector index from N rows on; exact search below (default: 10000)",
    )
    build.add_argument("--batch-size", type=int, default=256, help="tiles embedded at once")
    build.set_defaults(run=cmd_index_build)


def cmd_index_build(args: argparse.Namespace) -> int:
    """Embed a dataset's satellite tiles with the space's anchor into SPACE/index/."""
    if args.batch_size < 1 or (args.min_rows_for_ann or 0) < 0:
        raise InputError("--batch-size must be at least 1 and --min-rows-for-ann at least 0")
    if args.raster:
        check_raster_args(args)
    space = load_space(args.space)
    minimum = DEFAULT_MIN_ROWS_FOR_ANN if args.min_rows_for_ann is None else args.min_rows_for_ann
    if args.raster:
        return build_from_rasters(space, args, minimum)
    path = build_index(
        space,
        args.data,
        batch_size=args.batch_size,
        min_rows_for_ann=minimum,
        progress=sys.stderr.isatty(),
    )
    index = open_index(space, path)
    kind = "vector index (approximate)" if index.ann else f"exact search (< {minimum} rows)"
    print(f"{path}: {index.rows} tiles, dim {index.dim}, {kind}")
    return 0


def add_search(sub: Subcommands) -> None:
    """``geobind search SPACE (--query MODALITY=VALUE | --text T | --audio F | ...)``."""
    search_ = sub.add_parser("search", help="the tiles nearest a query of any modality")
    search_.add_argument("space", help="a trained space")
    _add_query_args(search_)
    which = search_.add_mutually_exclusive_group()
    which.add_argument(
        "--index", metavar="NAME", help="an index: its name in SPACE/index/, or a table's path"
    )
    which.add_argument("--data", metavar="DATASET", help="search the index built from DATASET")
    search_.add_argument("--top", type=int, default=10, help="how many tiles (default: 10)")
    search_.add_argument("--grid", metavar="PNG", help="draw the tiles found, with scores")
    search_.add_argument(
        "--geojson", metavar="FILE", help="write the hits as GeoJSON points with rank and score"
    )
    search_.set_defaults(run=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Print the tiles nearest a query; optionally draw them as a grid."""
    check_output_file(args.grid, "--grid", "a PNG picture", PNG)
    check_output_file(args.geojson, "--geojson", "GeoJSON", GEOJSON)
    modality, value = _query(args)
    space = load_space(args.space)
    index = open_index(space, args.index, args.data)
    _note_other_indexes(args, space, index.path)
    hits = search(space, modality, value, top=args.top, index=index)[0]
    print(f"{'rank':>4}  {'id':<20} {'lat':>10} {'lon':>11} {'score':>8}")
    for rank, hit in enumerate(hits, 1):
        print(
            f"{rank:>4}  {hit['id']:<20} {hit['lat']:>10.5f} {hit['lon']:>11.5f} "
            f"{hit['score']:>8.4f}"
        )
    if args.grid:
        from geobind.search.maps import query_label, render_hits  # numpy

        render_hits(
            hits,
            args.data or index.dataset,
            args.grid,
            title=f"{query_label(modality, value)}  (top {len(hits)})",
            column=index.meta.get("column", "satellite"),
            images=raster_hit_tiles(index, hits),
        )
        print(f"grid written to {args.grid}", file=sys.stderr)
    if args.geojson:
        write_hits_geojson(index, hits, args.geojson, modality, value)
    return 0


def _note_other_indexes(args: argparse.Namespace, space: Space, chosen: Path) -> None:
    """Say which index a search without --index or --data chose, when the space holds several."""
    if args.index is None and args.data is None:
        others = [p.stem for p in list_indexes(space) if p != chosen]
        if others:
            print(
                f"searching index '{chosen.stem}', the newest (also: {', '.join(others)}; "
                "choose with --index NAME)",
                file=sys.stderr,
            )


def add_map(sub: Subcommands) -> None:
    """``geobind map SPACE --data DATASET (--query MODALITY=VALUE | --text T | ...) --out PNG``."""
    mp = sub.add_parser("map", help="a query's similarity to every tile, beside the mosaic")
    mp.add_argument("space", help="a trained space")
    where = mp.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="a Lance dataset with satellite tiles")
    where.add_argument(
        "--raster",
        metavar="TIF",
        help="a GeoTIFF indexed with 'index build --raster': also writes the map as a "
        "GeoTIFF aligned with it, beside the PNG",
    )
    _add_query_args(mp)
    mp.add_argument("--out", required=True, metavar="PNG", help="where to write the map")
    mp.add_argument("--top", type=int, default=10, help="circle this many best tiles")
    mp.add_argument("--index", metavar="NAME", help="with --raster: the index holding it")
    mp.add_argument(
        "--background",
        metavar="RASTER",
        help="with --data: the picture beside the map (a GeoTIFF such as the world's "
        "mosaic.tif, or a mosaic.json); default: the raster beside the dataset",
    )
    mp.set_defaults(run=cmd_map)


def cmd_map(args: argparse.Namespace) -> int:
    """Draw a query's similarity to every tile of a dataset beside the satellite mosaic."""
    from geobind.search.maps import similarity_map  # numpy

    check_output_file(args.out, "--out", "a PNG picture", PNG)
    modality, value = _query(args)
    if args.raster:
        check_raster_args(args)
    space = load_space(args.space)
    if args.raster:
        return map_raster(space, args, modality, value)
    background: Raster | Literal["beside"] = (
        read_raster(args.background) if args.background else "beside"
    )
    drawn = similarity_map(
        space, args.data, modality, value, args.out, mark=args.top, background=background
    )
    best = drawn.top[0] if drawn.top else {"id": "-", "score": float("nan")}
    print(
        f"map written to {drawn.path}: cosine {drawn.score_min:.4f} to {drawn.score_max:.4f}, "
        f"best tile {best['id']} ({best['score']:.4f})"
    )
    return 0
