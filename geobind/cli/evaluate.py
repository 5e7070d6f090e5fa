"""Reading a space: ``geobind eval`` (retrieval and zero-shot tables) and ``geobind report``
(one static HTML page)."""

from __future__ import annotations

import argparse

from geobind.cli.common import (
    Subcommands,
    check_output_file,
    check_output_folder,
    parse_query,
)

__all__ = ["add_eval", "add_report"]


def add_eval(sub: Subcommands) -> None:
    """``geobind eval SPACE --data DATASET``."""
    ev = sub.add_parser(
        "eval",
        help="retrieval tables and zero-shot land cover of a space",
        description="Recall@k, median and mean rank for every ordered pair of "
        "modalities DATASET carries and SPACE embeds, and zero-shot "
        "land-cover accuracy from text prompts; written as "
        "eval.json and eval.md.",
    )
    ev.add_argument("space", metavar="SPACE", help="a trained space folder")
    ev.add_argument("--data", required=True, metavar="DATASET", help="a Lance pair dataset")
    ev.add_argument("--ks", default="1,5,10,100", help="Recall@k cut-offs (default: %(default)s)")
    ev.add_argument(
        "--convention",
        default="standard",
        metavar="standard|geoclap",
        help="a hit at k: rank <= k (standard, default) or rank < k (geoclap: "
        "GeoCLAP's and SoundingEarth's code)",
    )
    ev.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where to write eval.json and eval.md (default: SPACE/eval/<dataset>; "
        "SPACE/eval/<dataset>-<hash> when another dataset of that name has results there)",
    )
    ev.add_argument(
        "--rows",
        type=int,
        default=None,
        metavar="N",
        help="evaluate the first N rows only (default: all)",
    )
    ev.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor: simple features + linear CCA fitted on each trained pair's "
        "training data, shown beside the learned numbers (it reads those datasets)",
    )
    ev.set_defaults(run=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval of every ordered pair of modalities and zero-shot land cover on a dataset."""
    from geobind.eval.evaluate import run_eval  # torch

    check_output_folder(args.out, "--out")
    run_eval(
        args.space,
        args.data,
        ks=args.ks,
        convention=args.convention,
        out=args.out,
        rows=args.rows,
        floor=args.floor,
    )
    return 0


def add_report(sub: Subcommands) -> None:
    """``geobind report SPACE --out HTML [--data DATASET] [--query TEXT ...]``."""
    rep = sub.add_parser("report", help="write one static HTML page about a space")
    rep.add_argument("space", help="a space folder")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--data", help="a pair dataset: adds retrieval, zero-shot, queries, maps")
    rep.add_argument(
        "--query",
        action="append",
        metavar="TEXT|MODALITY=VALUE",
        help="an example query (repeatable): text, or any modality the space holds "
        "(location=40.5,-74.0, audio=rain.flac)",
    )
    rep.set_defaults(run=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the static HTML report of a space."""
    from geobind.eval.report import DEFAULT_QUERIES, write_report  # torch

    check_output_file(args.out, "--out", "an HTML page", (".html", ".htm"))
    queries = [parse_query(q) for q in args.query] if args.query else DEFAULT_QUERIES
    out = write_report(args.space, args.out, data=args.data, queries=queries)
    print(f"report written to {out}")
    return 0
