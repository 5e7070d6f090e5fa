"""Bringing data in and looking at it: ``geobind import``, ``geobind world make``,
``geobind data show``."""

from __future__ import annotations

import argparse

from geobind.cli.common import PNG, Subcommands, check_output_file, run_source
from geobind.data.show import describe, render_grid
from geobind.data.synthetic import world_summary
from geobind.errors import GeobindError

__all__ = ["add_data", "add_import", "add_world"]


def add_import(sub: Subcommands) -> None:
    """``geobind import SOURCE [source options]``."""
    imp = sub.add_parser(
        "import",
        help="import a real dataset layout into a Lance dataset",
        description="geobind import SOURCE --help lists a source's options",
        add_help=True,
    )
    imp.add_argument("source", help="sat2cap, soundingearth, table, or a plugin's importer")
    imp.add_argument("options", nargs=argparse.REMAINDER, help="the source's options")
    imp.set_defaults(run=cmd_import, pass_options="options")


def cmd_import(args: argparse.Namespace) -> int:
    """Import a real dataset layout into a Lance pair dataset."""
    report = run_source(args.source, args.options, f"geobind import {args.source}")
    print(report.summary())
    if report.rejected and not (report.imported or report.already_present):
        raise GeobindError(f"nothing imported into {report.dataset}: every row was rejected")
    return 0


def add_world(sub: Subcommands) -> None:
    """``geobind world make [world options]``."""
    world = sub.add_parser("world", help="the synthetic world (the embedded default data)")
    world_sub = world.add_subparsers(dest="world_command", metavar="COMMAND", required=True)
    make = world_sub.add_parser(
        "make",
        help="generate the world into Lance pair datasets",
        add_help=False,
        usage="geobind world make --out DIR [--places N] [--seed S] ... (--help lists them all)",
    )
    make.set_defaults(run=cmd_world_make, options=[], pass_options="options")


def cmd_world_make(args: argparse.Namespace) -> int:
    """Generate the synthetic world as Lance pair datasets."""
    reports = run_source("world", args.options, "geobind world make")
    print(world_summary(reports))
    return 0


def add_data(sub: Subcommands) -> None:
    """``geobind data show DATASET``."""
    data = sub.add_parser("data", help="look at pair datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    show = data_sub.add_parser("show", help="splits, schema and sample rows of a dataset")
    show.add_argument("dataset", help="a Lance pair dataset")
    show.add_argument("--rows", type=int, default=3, help="sample rows to print")
    show.add_argument("--grid", metavar="PNG", help="draw sample rows side by side into PNG")
    show.add_argument("--grid-rows", type=int, default=6, help="rows in the grid")
    show.add_argument("--seed", type=int, default=0, help="which random rows to draw")
    show.set_defaults(run=cmd_data_show)


def cmd_data_show(args: argparse.Namespace) -> int:
    """Row counts per split, the schema and a few rows of a pair dataset."""
    check_output_file(args.grid, "--grid", "a PNG picture", PNG)
    print(describe(args.dataset, rows=args.rows))
    if args.grid:
        render_grid(args.dataset, args.grid, rows=args.grid_rows, seed=args.seed)
        print(f"grid written to {args.grid}")
    return 0
