"""Running a recipe: its stages in the recipe's order, skipping those already done."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geobind.data.pairs import data_identity
from geobind.errors import ConfigError, record_done
from geobind.space import Space
from geobind.train.distributed import Dist
from geobind.train.recipe import Recipe, load_recipe
from geobind.train.stage import recipe_hashes, train_stage

__all__ = ["train", "train_recipe"]


def stage_done(space: Space, name: str, stage: Any, hashes: Sequence[str] | None = None) -> bool:
    """Whether the space already holds this stage's student, trained by this same recipe
    (``hashes``: the stage's :func:`recipe_hashes`, when the caller has them)."""
    if not space.has(stage.student.modality):
        return False
    entry = space.entry(stage.student.modality)
    known = recipe_hashes(stage) if hashes is None else hashes
    # a student whose teacher was trained again since (the anchor, say) must learn again
    aligned = not space.misaligned(stage.student.modality)
    return entry.stage == name and entry.recipe.get("hash") in known and aligned


def train(
    recipe: Recipe,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
    dist: Dist | None = None,
) -> dict[str, dict]:
    """Train every enabled stage of ``recipe`` into its space, in order; returns metrics."""
    dist = dist or Dist.from_env()
    space = Space(recipe.space)
    results: dict[str, dict] = {}
    for name, stage in recipe.stages.items():
        if not stage.enabled:
            continue
        hashes = recipe_hashes(stage)  # reads the dataset's identity: once, not per use
        if stage_done(space, name, stage, hashes):
            if dist.is_main:
                say(f"stage {name}: already in {space.path}, skipped")
            continue
        record = {"hash": hashes[0], **dataclasses.asdict(stage)}
        if stage.data and "://" not in str(stage.data):
            # the space remembers where its data lay, wherever it is read from later (the
            # floor of `geobind eval` refits on it): not a path relative to today's folder
            record["data"] = str(Path(stage.data).resolve())
            # and what it was, to find it again if the project folder moves (the floor)
            record["data_identity"] = data_identity(stage.data)
        try:
            results[name] = train_stage(name, stage, space, dist, record)
        except BaseException as exc:
            if results:
                record_done(exc, f"stages stored in {space.path} before it: {', '.join(results)}")
            raise
        space = Space(recipe.space)  # re-read what the stage wrote
        if dist.is_main:
            say(f"stage {name}: {_summary(results[name])}")
    return results


def train_recipe(
    recipe: str | Path | Recipe,
    overrides: Sequence[str] = (),
    *,
    space: str | Path | None = None,
    data: str | Path | None = None,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, dict]:
    """Train a recipe's stages into a space, as ``geobind train`` does; returns each stage's
    final metrics (stages already in the space are skipped and not listed).

    :param recipe: a YAML file, a name that ``geobind recipes`` lists (``"location"`` runs the
        geobind-location plugin's own stage), or a :class:`Recipe` already loaded.
    :param overrides: dot-list overrides; a one-stage recipe takes its stage's keys as they are
        (``["epochs=3", "batch_size=32"]``).
    :param space: the space to train into; a modality's stage aligns to this space's anchor.
    :param data: the pair dataset of a one-stage recipe.
    :param say: where progress lines go.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, space=space, data=data)
    elif overrides or space is not None or data is not None:
        raise ConfigError("a loaded Recipe takes no overrides: pass its name or path instead")
    return train(recipe, say=say)


def _summary(metrics: dict) -> str:
    keys = [
        k for k in ("steps", "val_s2t_R@1", "val_s2t_R@10", "val_s2t_median_rank") if k in metrics
    ]
    return ", ".join(f"{k} {metrics[k]:.3g}" for k in keys)
