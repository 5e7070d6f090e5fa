"""Training: ``geobind train RECIPE`` and ``geobind demo`` (the whole method on the world)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from geobind.cli.common import Subcommands, check_output_folder
from geobind.errors import ConfigError
from geobind.recipes import RecipeInfo, list_recipes

__all__ = ["add_demo", "add_recipes", "add_train"]


def add_train(sub: Subcommands) -> None:
    """``geobind train RECIPE [--space SPACE] [--data DATASET] [KEY=VALUE ...]``."""
    tr = sub.add_parser(
        "train",
        help="train a recipe's stages into its space",
        description="Train each enabled stage of RECIPE, in the recipe's order. "
        "Stages already in the space are skipped; an interrupted "
        "stage resumes from its last checkpoint. `geobind train audio --space S --data D` "
        "runs the audio plugin's own stage against the frozen anchor of space S.",
    )
    tr.add_argument("recipe", help="a YAML recipe file, or a name that `geobind recipes` lists")
    tr.add_argument("--space", default=None, help="the space to train into (space=SPACE)")
    tr.add_argument(
        "--data", default=None, metavar="DATASET", help="the pair dataset of a one-stage recipe"
    )
    tr.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dot-list overrides, e.g. stages.anchor.lr=1e-4; a one-stage recipe also takes "
        "its stage's keys as they are (epochs=3)",
    )
    tr.set_defaults(run=cmd_train, pass_options="overrides")


def cmd_train(args: argparse.Namespace) -> int:
    """Train the stages of a recipe into its space."""
    from geobind.train import train_recipe  # torch

    train_recipe(args.recipe, _overrides(args.overrides), space=args.space, data=args.data)
    return 0


def _overrides(items: list[str]) -> list[str]:
    """KEY=VALUE items, or an error naming the first that is not one."""
    for item in items:
        if "=" not in item or item.startswith("-"):
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
    return items


def add_recipes(sub: Subcommands) -> None:
    """``geobind recipes [--json]``."""
    rec = sub.add_parser(
        "recipes",
        help="list the recipes geobind and its plugins ship",
        description="Every recipe that `geobind train NAME` takes: each modality's own stage "
        "(shipped by its plugin) and geobind's recipe sets; for each, its plugin and what "
        "each stage trains against what.",
    )
    rec.add_argument("--json", action="store_true", help="print JSON, with paths")
    rec.set_defaults(run=cmd_recipes)


def cmd_recipes(args: argparse.Namespace) -> int:
    """List every recipe by name: plugin, and what each stage trains against."""
    found = list_recipes()
    if args.json:
        print(json.dumps([_as_json(r) for r in found], indent=2))
        return 0
    width = max([len(r.name) for r in found] + [6])
    plugin_width = max([len(r.plugin) for r in found] + [6])
    print(f"{'recipe':{width}s}  {'plugin':{plugin_width}s}  stages: student -> teacher")
    for r in found:
        what = f"BROKEN: {r.error}" if r.error else "; ".join(str(s) for s in r.stages)
        print(f"{r.name:{width}s}  {r.plugin:{plugin_width}s}  {what}")
    return 0


def _as_json(info: RecipeInfo) -> dict:
    return {
        "name": info.name,
        "plugin": info.plugin,
        "path": str(info.path),
        "description": info.description,
        "stages": [dataclasses.asdict(s) for s in info.stages],
        "error": info.error,
    }


def add_demo(sub: Subcommands) -> None:
    """``geobind demo [--out DIR] [--places N] [--seed S] [KEY=VALUE ...]``."""
    demo = sub.add_parser("demo", help="run the main job on the embedded synthetic world")
    demo.add_argument("--out", default="geobind-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--places", type=int, default=10000, help="places in the world")
    demo.add_argument("--seed", type=int, default=0, help="the world's seed")
    demo.add_argument("--recipe", default=None, help="a recipe file or name (default: world/demo)")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    demo.set_defaults(run=cmd_demo, pass_options="overrides")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: world, its stages, retrieval table."""
    from geobind.demo import run_demo  # torch

    check_output_folder(args.out, "--out")
    run_demo(
        args.out,
        places=args.places,
        seed=args.seed,
        recipe=args.recipe,
        overrides=_overrides(args.overrides),
    )
    return 0
