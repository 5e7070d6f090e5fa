"""The ``geobind`` command line: thin over the library, and quick to start.

Nothing heavy is imported at module level; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from geobind import __version__

Command = Callable[[argparse.Namespace], int]


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins, what they register, and broken plugins."""
    from geobind.plugins import get_registry

    registry = get_registry()
    if args.json:
        print(json.dumps(registry.as_dict(), indent=2))
        return 0
    for info in registry.plugins.values():
        tag = " (built-in)" if info.builtin else ""
        print(f"{info.distribution} {info.version}{tag}")
        print(f"  hooks:      {', '.join(info.hooks) or '-'}")
        print(f"  modalities: {_describe(registry.modalities, info.modalities)}")
        if info.datasets:
            print(f"  datasets:   {_describe(registry.datasets, info.datasets)}")
    for broken in registry.broken:
        print(f"{broken.distribution} {broken.version} (BROKEN, skipped)\n  error: {broken.error}")
    return 0


def _describe(table: dict, names: Sequence[str]) -> str:
    return "; ".join(f"{n} ({table[n].description})" if table[n].description else n
                     for n in names) or "-"


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: world, three stages, retrieval table."""
    from geobind.demo import run_demo

    run_demo(args.out, places=args.places, seed=args.seed, recipe=args.recipe,
             overrides=args.overrides)
    return 0


def options_parser(prog: str, options: type, description: str) -> argparse.ArgumentParser:
    """A parser whose flags are the fields of an options dataclass (``--field VALUE``)."""
    import dataclasses
    import typing

    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        text = f.metadata.get("help", "")
        if typing.get_origin(kind) is list:
            parser.add_argument(flag, dest=f.name, action="append", default=None, help=text)
        elif kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            required = f.default == "" and base is str
            parser.add_argument(flag, dest=f.name, type=base, default=None, required=required,
                                help=text if required or f.default is None
                                else f"{text} (default: {f.default})")
    return parser


def run_source(name: str, argv: Sequence[str], prog: str) -> object:
    """Run a registered generator or importer with options parsed from ``argv``."""
    from geobind.plugins import get_registry

    source = get_registry().dataset_source(name)
    parser = options_parser(prog, source.options, source.description)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return source.run(source.options(**given))


def cmd_import(args: argparse.Namespace) -> int:
    """Import a real dataset layout into a Lance pair dataset."""
    report = run_source(args.source, args.options, f"geobind import {args.source}")
    print(report.summary())
    return 0


def cmd_world_make(args: argparse.Namespace) -> int:
    """Generate the synthetic world as Lance pair datasets."""
    reports = run_source("world", args.options, "geobind world make")
    for name, report in reports.items():
        print(f"{name:9s} {report.imported:6d} rows  {report.dataset}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    """Row counts per split, the schema and a few rows of a pair dataset."""
    from geobind.data.show import describe, render_grid

    print(describe(args.dataset, rows=args.rows))
    if args.grid:
        render_grid(args.dataset, args.grid, rows=args.grid_rows, seed=args.seed)
        print(f"grid written to {args.grid}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the static HTML report of a space."""
    from geobind.eval.report import DEFAULT_QUERIES, write_report

    out = write_report(args.space, args.out, data=args.data,
                       queries=args.query or DEFAULT_QUERIES)
    print(f"report written to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the stages of a recipe into its space."""
    from geobind.train import load_recipe, train

    recipe = load_recipe(args.recipe, args.overrides)
    train(recipe)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval of every ordered pair of modalities and zero-shot land cover on a dataset."""
    from geobind.eval.evaluate import run_eval

    run_eval(args.space, args.data, ks=args.ks, convention=args.convention, out=args.out,
             rows=args.rows)
    return 0


QUERY_FLAGS = (("text", "text"), ("audio", "audio"), ("image", "satellite"),
               ("ground", "ground"))


def _add_query_args(parser: argparse.ArgumentParser) -> None:
    """Exactly one query: --text, --audio, --image (a satellite tile) or --ground (a photo)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", help="a sentence, e.g. 'waves on a sandy beach'")
    group.add_argument("--audio", metavar="FILE", help="a sound file (wav, flac, ...)")
    group.add_argument("--image", metavar="FILE", help="a satellite tile image")
    group.add_argument("--ground", metavar="FILE", help="a ground-level photo")


def _query(args: argparse.Namespace) -> tuple[str, str]:
    """The query's modality and value."""
    return next((m, getattr(args, f)) for f, m in QUERY_FLAGS if getattr(args, f) is not None)


def cmd_index_build(args: argparse.Namespace) -> int:
    """Embed a dataset's satellite tiles with the space's anchor into SPACE/index/."""
    from geobind.search.index import DEFAULT_MIN_ROWS_FOR_ANN, build_index, open_index
    from geobind.space import load_space

    space = load_space(args.space)
    minimum = DEFAULT_MIN_ROWS_FOR_ANN if args.min_rows_for_ann is None else args.min_rows_for_ann
    path = build_index(space, args.data, batch_size=args.batch_size, min_rows_for_ann=minimum,
                       progress=sys.stderr.isatty())
    index = open_index(space, path)
    kind = "vector index (approximate)" if index.ann else f"exact search (< {minimum} rows)"
    print(f"{path}: {index.rows} tiles, dim {index.dim}, {kind}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Print the tiles nearest a query; optionally draw them as a grid."""
    from geobind.search.index import open_index, search
    from geobind.space import load_space

    space = load_space(args.space)
    index = open_index(space, args.index, args.data)
    modality, value = _query(args)
    hits = search(space, modality, value, top=args.top, index=index)[0]
    print(f"{'rank':>4}  {'id':<20} {'lat':>10} {'lon':>11} {'score':>8}")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>4}  {hit['id']:<20} {hit['lat']:>10.5f} {hit['lon']:>11.5f} "
              f"{hit['score']:>8.4f}")
    if args.grid:
        from geobind.search.maps import query_label, render_hits

        render_hits(hits, args.data or index.dataset, args.grid,
                    title=f"{query_label(modality, value)}  (top {len(hits)})",
                    column=index.meta.get("column", "satellite"))
        print(f"grid written to {args.grid}", file=sys.stderr)
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    """Draw a query's similarity to every tile of a dataset beside the satellite mosaic."""
    from geobind.search.maps import similarity_map
    from geobind.space import load_space

    space = load_space(args.space)
    modality, value = _query(args)
    drawn = similarity_map(space, args.data, modality, value, args.out, mark=args.top)
    best = drawn.top[0] if drawn.top else {"id": "-", "score": float("nan")}
    print(f"map written to {drawn.path}: cosine {drawn.score_min:.4f} to {drawn.score_max:.4f}, "
          f"best tile {best['id']} ({best['score']:.4f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="geobind",
        description="Bind ground photos, text, audio and plugin modalities into one embedding "
                    "space through satellite imagery.")
    parser.add_argument("--version", action="version", version=f"geobind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    plugins = sub.add_parser("plugins", help="list plugins and the modalities they register")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=cmd_plugins)

    imp = sub.add_parser("import", help="import a real dataset layout into a Lance dataset",
                         description="geobind import SOURCE --help lists a source's options",
                         add_help=True)
    imp.add_argument("source", help="sat2cap, soundingearth, table, or a plugin's importer")
    imp.add_argument("options", nargs=argparse.REMAINDER, help="the source's options")
    imp.set_defaults(run=cmd_import, pass_options=True)

    world = sub.add_parser("world", help="the synthetic world (the embedded default data)")
    world_sub = world.add_subparsers(dest="world_command", metavar="COMMAND", required=True)
    make = world_sub.add_parser("make", help="generate the world into Lance pair datasets",
                                add_help=False, usage="geobind world make --out DIR "
                                "[--places N] [--seed S] ... (--help lists them all)")
    make.set_defaults(run=cmd_world_make, options=[], pass_options=True)

    data = sub.add_parser("data", help="look at pair datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    show = data_sub.add_parser("show", help="splits, schema and sample rows of a dataset")
    show.add_argument("dataset", help="a Lance pair dataset")
    show.add_argument("--rows", type=int, default=3, help="sample rows to print")
    show.add_argument("--grid", metavar="PNG", help="draw sample rows side by side into PNG")
    show.add_argument("--grid-rows", type=int, default=6, help="rows in the grid")
    show.add_argument("--seed", type=int, default=0, help="which random rows to draw")
    show.set_defaults(run=cmd_data_show)

    rep = sub.add_parser("report", help="write one static HTML page about a space")
    rep.add_argument("space", help="a space folder")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--data", help="a pair dataset: adds retrieval, zero-shot, queries, maps")
    rep.add_argument("--query", action="append", help="an example text query (repeatable)")
    rep.set_defaults(run=cmd_report)

    tr = sub.add_parser("train", help="train a recipe's stages into its space",
                        description="Train each enabled stage of RECIPE, in the recipe's order. "
                                    "Stages already in the space are skipped; an interrupted "
                                    "stage resumes from its last checkpoint.")
    tr.add_argument("recipe", help="an omegaconf YAML recipe (see recipes/)")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="dot-list overrides, e.g. stages.anchor.lr=1e-4 space=out/space")
    tr.set_defaults(run=cmd_train)

    demo = sub.add_parser("demo", help="run the main job on the embedded synthetic world")
    demo.add_argument("--out", default="geobind-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--places", type=int, default=10000, help="places in the world")
    demo.add_argument("--seed", type=int, default=0, help="the world's seed")
    demo.add_argument("--recipe", default=None, help="default: recipes/world/demo.yaml")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    demo.set_defaults(run=cmd_demo)

    index = sub.add_parser("index", help="nearest-neighbour indexes of a space's tiles")
    index_sub = index.add_subparsers(dest="index_command", metavar="COMMAND", required=True)
    build = index_sub.add_parser("build", help="embed a dataset's tiles into SPACE/index/")
    build.add_argument("space", help="a trained space")
    build.add_argument("--data", required=True, help="a Lance dataset with satellite tiles")
    build.add_argument("--min-rows-for-ann", type=int, default=None, metavar="N",
                       help="add a vector index from N rows on; exact search below "
                            "(default: 10000)")
    build.add_argument("--batch-size", type=int, default=256, help="tiles embedded at once")
    build.set_defaults(run=cmd_index_build)

    search = sub.add_parser("search", help="the tiles nearest a text, sound or image query")
    search.add_argument("space", help="a trained space")
    _add_query_args(search)
    which = search.add_mutually_exclusive_group()
    which.add_argument("--index", metavar="PATH", help="an index table (SPACE/index/*.lance)")
    which.add_argument("--data", metavar="DATASET", help="search the index built from DATASET")
    search.add_argument("--top", type=int, default=10, help="how many tiles (default: 10)")
    search.add_argument("--grid", metavar="PNG", help="draw the tiles found, with scores")
    search.set_defaults(run=cmd_search)

    mp = sub.add_parser("map", help="a query's similarity to every tile, beside the mosaic")
    mp.add_argument("space", help="a trained space")
    mp.add_argument("--data", required=True, help="a Lance dataset with satellite tiles")
    _add_query_args(mp)
    mp.add_argument("--out", required=True, metavar="PNG", help="where to write the map")
    mp.add_argument("--top", type=int, default=10, help="circle this many best tiles")
    mp.set_defaults(run=cmd_map)

    ev = sub.add_parser("eval", help="retrieval tables and zero-shot land cover of a space",
                        description="Recall@k, median and mean rank for every ordered pair of "
                                    "modalities DATASET carries and SPACE embeds, and zero-shot "
                                    "land-cover accuracy from text prompts; written as "
                                    "eval.json and eval.md.")
    ev.add_argument("space", metavar="SPACE", help="a trained space folder")
    ev.add_argument("--data", required=True, metavar="DATASET", help="a Lance pair dataset")
    ev.add_argument("--ks", default="1,5,10,100", help="Recall@k cut-offs (default: %(default)s)")
    ev.add_argument("--convention", default="standard", metavar="standard|geoclap",
                    help="a hit at k: rank <= k (standard, default) or rank < k (geoclap: "
                         "GeoCLAP's and SoundingEarth's code)")
    ev.add_argument("--out", default=None, metavar="DIR",
                    help="where to write eval.json and eval.md (default: SPACE/eval/<dataset>)")
    ev.add_argument("--rows", type=int, default=None, metavar="N",
                    help="evaluate the first N rows only (default: all)")
    ev.set_defaults(run=cmd_eval)
    return parser


def _plugin_warnings_as_lines() -> None:
    """Print a skipped plugin as one line on stderr, not as a Python warning with source."""
    import warnings

    from geobind.plugins import PluginWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, PluginWarning):
            print(f"geobind: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geobind`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "pass_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # the source's own options, parsed by the source's parser
        args.options = [*args.options, *extra]
    _plugin_warnings_as_lines()
    from geobind.errors import GeobindError
    from geobind.plugins import PluginError

    try:
        return args.run(args)
    except (GeobindError, PluginError) as exc:
        print(f"geobind: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
