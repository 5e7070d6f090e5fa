"""Recipes: omegaconf YAML, checked against typed dataclasses.

A recipe file names the space to build and its stages, in order. A stage may be written
inline or as another recipe (a relative path or a name) whose single stage it takes, so the
per-stage recipes and the whole-sequence recipe share one definition of each stage (see
:mod:`geobind.recipes`, which also finds recipes by name)::

    space: geobind-demo/space
    data_dir: geobind-demo/world
    stages:
      clip: clip.yaml        # relative to this file
      anchor: anchor.yaml
      audio: {include: audio.yaml, epochs: 20}   # that stage, with settings changed

Command-line overrides are dot-lists (``stages.anchor.lr=1e-4``). An unknown key is an error
naming it and the valid keys; the order of stages is the recipe's, never the plugins'.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from geobind.config import config_error
from geobind.errors import ConfigError
from geobind.plugins import get_registry
from geobind.recipes import find_recipe, read_recipe_file

__all__ = ["RANGES", "Recipe", "SideRecipe", "StageRecipe", "load_recipe"]


@dataclass
class SideRecipe:
    """One side of a stage: a modality, its encoder config, where its weights start."""

    modality: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    #: a local weights file, or ``space`` for this modality's weights in the space being built
    weights: str | None = None
    #: whether this side trains (the student always does; the teacher only in CLIP pre-training)
    train: bool = False
    #: this side's own peak learning rate (default: the stage's ``lr``); the same warm-up and
    #: schedule scale it. A CLIP stage may let one tower learn more slowly than the other
    lr: float | None = None


@dataclass
class StageRecipe:
    """One alignment stage: the student learns against the teacher on a pair dataset."""

    #: the Lance pair dataset; not needed by a stage of ``max_steps: 0``, which only stores
    #: its (pretrained) sides in the space, aligned to each other
    data: str = ""
    student: SideRecipe = field(default_factory=SideRecipe)
    teacher: SideRecipe = field(default_factory=SideRecipe)
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 20
    temperature: float = 0.07
    learn_temperature: bool = True
    seed: int = 0
    workers: int = 0
    val_every: int = 0
    val_rows: int = 1000
    checkpoint_every: int = 50
    cache: bool = True
    #: what a student is contrasted with when the teacher is frozen: ``batch`` (the teacher
    #: embeddings of the batch, as CLIP) or ``bank`` (every training row's cached teacher
    #: embedding: a full memory bank, which a frozen teacher makes exact)
    negatives: str = "batch"
    #: weight of feature distillation onto a frozen teacher: ``distill * (1 - cos)`` between
    #: each student embedding and its own row's teacher embedding, added to the contrastive
    #: loss. InfoNCE only ranks a student among the negatives; this keeps it where the
    #: teacher's space puts its pairs, which zero-shot queries and the pairs no stage trained
    #: together rely on (BENCHMARKS.md measures the trade). 0: contrastive loss alone
    distill: float = 0.0
    device: str = "auto"
    enabled: bool = True


#: The numeric settings of a stage and the values each accepts, checked when a recipe loads,
#: so a wrong value fails at once, naming its key, and never trains (or stores) a broken stage.
RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "epochs": (">= 1", lambda v: v >= 1),
    "max_steps": (">= 0 (0: a stage that stores pretrained sides, no training)", lambda v: v >= 0),
    "batch_size": (">= 1", lambda v: v >= 1),
    "lr": ("> 0", lambda v: v > 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "eps": ("> 0", lambda v: v > 0),
    "warmup_steps": (">= 0", lambda v: v >= 0),
    "temperature": ("> 0", lambda v: v > 0),
    "distill": (">= 0 (0: contrastive loss alone)", lambda v: v >= 0),
    "workers": (">= 0", lambda v: v >= 0),
    "val_every": (">= 0 (0: validate once, at the end)", lambda v: v >= 0),
    "val_rows": (">= 2", lambda v: v >= 2),
    "checkpoint_every": (">= 1", lambda v: v >= 1),
}


@dataclass
class Recipe:
    """A space and the stages that build it, in order."""

    space: str = ""
    data_dir: str = "."
    #: where pretrained weights files live, for ``${weights_dir}/...`` interpolations
    weights_dir: str = "."
    stages: dict[str, StageRecipe] = field(default_factory=dict)


def load_recipe(
    recipe: str | Path,
    overrides: Sequence[str] = (),
    space: str | Path | None = None,
    data: str | Path | None = None,
) -> Recipe:
    """Read a recipe, resolve included stages, apply dot-list overrides, check it.

    :param recipe: a YAML file, or a name that ``geobind recipes`` lists (``world/demo``, or a
        modality whose plugin ships a recipe, such as ``audio``).
    :param overrides: dot-list overrides (``stages.anchor.lr=1e-4``); in a recipe of one stage
        a stage's own keys may leave out ``stages.NAME.`` (``epochs=3``).
    :param space: the space to train into (the same as the override ``space=...``).
    :param data: the pair dataset of a one-stage recipe (``stages.NAME.data=...``).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = find_recipe(recipe)
    raw = read_recipe_file(path)
    given = _given(list(raw["stages"]), overrides, space, data, path)
    schema = OmegaConf.structured(Recipe)
    try:
        merged = OmegaConf.merge(schema, raw)
        if given:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(given))
        loaded = cast(Recipe, OmegaConf.to_object(merged))
    except OmegaConfBaseException as exc:
        raise config_error(exc, str(path)) from None
    _check(loaded, path)
    return loaded


_RECIPE_KEYS = {f.name for f in dataclasses.fields(Recipe)}


def _given(
    stages: list[str],
    overrides: Sequence[str],
    space: str | Path | None,
    data: str | Path | None,
    path: Path,
) -> list[str]:
    """The dot-list to apply: ``space``, ``data`` and the overrides, short keys spelt out."""
    given = [f"space={space}"] if space is not None else []
    if data is not None:
        if len(stages) != 1:
            raise ConfigError(
                f"{path}: a dataset given on its own is for a recipe of one stage, and this "
                f"one has {len(stages)} ({', '.join(stages)}): set stages.NAME.data=... instead"
            )
        given.append(f"stages.{stages[0]}.data={data}")
    for item in overrides:
        key = item.partition("=")[0].split(".")[0]
        short = len(stages) == 1 and key not in _RECIPE_KEYS  # a stage's key, known or not
        given.append(f"stages.{stages[0]}.{item}" if short else item)
    return given


def _check(recipe: Recipe, path: Path) -> None:
    if not recipe.space:
        raise ConfigError(
            f"{path}: 'space' (the output folder) is required: give --space SPACE (space=SPACE)"
        )
    if not recipe.stages:
        raise ConfigError(f"{path}: no stages")
    registry = get_registry()
    for name, stage in recipe.stages.items():
        where = f"{path}: stage {name!r}"
        _check_ranges(stage, f"{path}: stages.{name}")
        if not stage.data and stage.max_steps != 0:
            raise ConfigError(
                f"{where}: 'data' (a Lance pair dataset) is required "
                f"(only a stage of max_steps: 0 needs none): give --data DATASET"
            )
        for side in ("student", "teacher"):
            modality = getattr(stage, side).modality
            if not modality:
                raise ConfigError(f"{where}: {side}.modality is required")
            registry.modality(modality)  # an uninstalled plugin fails here, naming its package
        _check_negatives(stage, where)
        stage.student.train = True
        if stage.max_steps == 0:
            _check_import_stage(stage, f"{path}: stages.{name}")


def _check_negatives(stage: StageRecipe, where: str) -> None:
    if stage.negatives not in ("batch", "bank"):
        raise ConfigError(f"{where}: negatives must be 'batch' or 'bank', got {stage.negatives!r}")
    if stage.distill and stage.teacher.train:
        raise ConfigError(
            f"{where}: distill needs a frozen teacher (a trained teacher would be pulled onto "
            "its student as much as the student onto it); set teacher.train: false or distill: 0"
        )
    if stage.negatives == "bank" and stage.teacher.train:
        raise ConfigError(
            f"{where}: negatives 'bank' needs a frozen teacher (its cached embeddings are the "
            f"bank); this stage trains its teacher too"
        )


def _check_ranges(stage: StageRecipe, where: str) -> None:
    """Each numeric setting within its range; NaN and infinities are never in one."""
    checks = [(key, getattr(stage, key), rule) for key, rule in RANGES.items()]
    # a side's own learning rate (unset: the stage's) by the stage's rule for lr
    checks += [
        (f"{side}.lr", getattr(stage, side).lr, RANGES["lr"]) for side in ("student", "teacher")
    ]
    for key, value, (rule, accepts) in checks:
        if value is None:  # only max_steps and the sides' lr may be unset
            continue
        if not (math.isfinite(value) and accepts(value)):
            raise ConfigError(f"{where}.{key} must be {rule}, got {value}")
    if len(stage.betas) != 2 or not all(0 <= b < 1 for b in stage.betas):
        raise ConfigError(f"{where}.betas must be two numbers in [0, 1), got {stage.betas}")
    if stage.teacher.lr is not None and not stage.teacher.train:
        raise ConfigError(
            f"{where}.teacher.lr is set, but the teacher is frozen (teacher.train: false): "
            f"a frozen side learns at no rate; remove teacher.lr or train the teacher"
        )


def _check_import_stage(stage: StageRecipe, where: str) -> None:
    """A stage of ``max_steps: 0`` stores its sides as built: each needs a weights file to
    store (``space:OTHER`` only initialises a side that then trains)."""
    for side in ("student", "teacher"):
        recipe = getattr(stage, side)
        if recipe.train and (not recipe.weights or recipe.weights.startswith("space:")):
            given = f"{recipe.weights!r}" if recipe.weights else "not given"
            raise ConfigError(
                f"{where}.max_steps is 0 (store the sides as they are, no training), but "
                f"{side}.weights is {given}: it would store a {recipe.modality} encoder no "
                f"stage trained. Give {side}.weights a weights file, or max_steps >= 1 to train"
            )
