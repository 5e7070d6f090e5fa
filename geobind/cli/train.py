"""Training: ``geobind train RECIPE`` and ``geobind demo`` (the whole method on the world)."""

from __future__ import annotations

import argparse

from geobind.cli.common import Subcommands

__all__ = ["add_demo", "add_train"]


def add_train(sub: Subcommands) -> None:
    """``geobind train RECIPE [KEY=VALUE ...]``."""
    tr = sub.add_parser(
        "train",
        help="train a recipe's stages into its space",
        description="Train each enabled stage of RECIPE, in the recipe's order. "
        "Stages already in the space are skipped; an interrupted "
        "stage resumes from its last checkpoint.",
    )
    tr.add_argument("recipe", help="an omegaconf YAML recipe (see recipes/)")
    tr.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dot-list overrides, e.g. stages.anchor.lr=1e-4 space=out/space",
    )
    tr.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the stages of a recipe into its space."""
    from geobind.train import load_recipe, train  # torch

    recipe = load_recipe(args.recipe, args.overrides)
    train(recipe)
    return 0


def add_demo(sub: Subcommands) -> None:
    """``geobind demo [--out DIR] [--places N] [--seed S] [KEY=VALUE ...]``."""
    demo = sub.add_parser("demo", help="run the main job on the embedded synthetic world")
    demo.add_argument("--out", default="geobind-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--places", type=int, default=10000, help="places in the world")
    demo.add_argument("--seed", type=int, default=0, help="the world's seed")
    demo.add_argument("--recipe", default=None, help="default: recipes/world/demo.yaml")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    demo.set_defaults(run=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: world, three stages, retrieval table."""
    from geobind.demo import run_demo  # torch

    run_demo(
        args.out, places=args.places, seed=args.seed, recipe=args.recipe, overrides=args.overrides
    )
    return 0
