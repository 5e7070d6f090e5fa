"""Where recipes are, by name, and how a recipe file is read.

geobind ships its recipe sets as package data beside this module (``world/`` for the demo,
``paper/`` at paper scale), named ``SET/FILE`` (``world/demo``); a plugin ships the default
stage of each of its modalities inside its own package and names it in
:attr:`geobind.Modality.recipe`, and that recipe is named after the modality (``audio``).
:func:`find_recipe` turns a name or a path into a file; :func:`list_recipes` lists them all
(``geobind recipes``).

A recipe file is omegaconf YAML. A stage may be written inline, or as the name or relative path
of a recipe whose single stage it takes, optionally with settings of its own changed::

    stages:
      clip: clip.yaml                  # relative to this file
      audio: {include: audio.yaml, epochs: 20}   # that stage, with settings changed
      location:                        # the geobind-location plugin's stage, on other data
        include: location
        data: ${data_dir}/audio.lance
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobind.errors import ConfigError
from geobind.plugins import BUILTIN, KNOWN_DISTRIBUTIONS, get_registry

__all__ = [
    "RecipeInfo",
    "StageSummary",
    "find_recipe",
    "list_recipes",
    "modality_recipe",
    "read_recipe_file",
    "shipped_file",
    "shipped_folder",
]

#: How a modality names a recipe inside its package: ``"package:path/in/package.yaml"``.
_RESOURCE = re.compile(r"^([A-Za-z_][\w.]*):(.+)$")


@dataclass(frozen=True)
class StageSummary:
    """What one stage trains: its student, against which teacher, and whether that trains too."""

    name: str
    student: str
    teacher: str
    teacher_trains: bool = False

    def __str__(self) -> str:
        if self.teacher_trains:
            return f"{self.name}: {self.student} + {self.teacher} (both train)"
        return f"{self.name}: {self.student} -> {self.teacher}"


@dataclass
class RecipeInfo:
    """One recipe geobind can find by name."""

    name: str
    plugin: str
    path: Path
    description: str = ""
    stages: list[StageSummary] = field(default_factory=list)
    #: why the file could not be read (a broken plugin's recipe is listed, not fatal)
    error: str = ""


def shipped_folder() -> Path:
    """Where geobind's recipe sets and the files they name lie, inside the installed package."""
    return Path(str(importlib.resources.files(__name__)))


def shipped_recipes() -> dict[str, Path]:
    """geobind's own recipes, ``SET/FILE`` -> path of the YAML file in the package."""
    root = shipped_folder()
    return {f"{path.parent.name}/{path.stem}": path for path in sorted(root.glob("*/*.yaml"))}


def modality_recipe(name: str) -> Path:
    """The default stage recipe of modality ``name``, as its plugin ships it."""
    registry = get_registry()
    modality = registry.modality(name)
    plugin = registry.owner(name).distribution
    if not modality.recipe:
        raise ConfigError(
            f"modality {name!r} (plugin {plugin}) ships no recipe of its own; "
            f"`geobind recipes` lists those there are"
        )
    path = _resource(modality.recipe, f"modality {name!r} (plugin {plugin})")
    if not path.is_file():
        raise ConfigError(
            f"modality {name!r} (plugin {plugin}) names recipe {modality.recipe!r}, "
            f"but there is no file {path}"
        )
    return path


def _resource(spec: str, owner: str) -> Path:
    """``package:file`` inside an installed package, or a plain path."""
    match = _RESOURCE.match(spec)
    if not match or "/" in match.group(1) or "\\" in match.group(1):
        return Path(spec)
    try:
        root = importlib.resources.files(match.group(1))
    except ModuleNotFoundError:
        raise ConfigError(
            f"{owner}: recipe {spec!r} names package {match.group(1)!r}, which is not installed"
        ) from None
    return Path(str(root)) / match.group(2)


def find_recipe(name: str | Path) -> Path:
    """A recipe file from a path, or from a name that ``geobind recipes`` lists."""
    path = Path(name)
    if path.is_file():
        return path
    text = str(name)
    shipped = shipped_recipes()
    if text in shipped:
        return shipped[text]
    registry = get_registry()
    if text in registry.modalities:
        return modality_recipe(text)
    if text in KNOWN_DISTRIBUTIONS:
        registry.modality(text)  # a shipped plugin that is not installed: says what to install
    names = ", ".join([*sorted(_modality_names()), *shipped]) or "none"
    raise ConfigError(f"recipe not found: {text} (not a file, nor a recipe name: {names})")


def _modality_names() -> list[str]:
    return [name for name, m in get_registry().modalities.items() if m.recipe]


def list_recipes() -> list[RecipeInfo]:
    """Every recipe that can be named: the installed plugins' modality recipes, then geobind's."""
    registry = get_registry()
    found: list[RecipeInfo] = []
    for name in sorted(_modality_names()):
        plugin = registry.owner(name).distribution
        try:
            found.append(_info(name, plugin, modality_recipe(name)))
        except ConfigError as exc:
            found.append(
                RecipeInfo(name, plugin, Path(str(registry.modality(name).recipe)), error=str(exc))
            )
    found += [_info(name, BUILTIN, path) for name, path in shipped_recipes().items()]
    return found


def _info(name: str, plugin: str, path: Path) -> RecipeInfo:
    info = RecipeInfo(name, plugin, path, description=_first_comment(path))
    try:
        raw = read_recipe_file(path)
    except ConfigError as exc:
        info.error = str(exc)
        return info
    for stage, body in (raw.get("stages") or {}).items():
        body = body if isinstance(body, dict) else {}
        student, teacher = body.get("student") or {}, body.get("teacher") or {}
        info.stages.append(
            StageSummary(
                str(stage),
                str(student.get("modality", "?")),
                str(teacher.get("modality", "?")),
                bool(teacher.get("train", False)),
            )
        )
    return info


def _first_comment(path: Path) -> str:
    """The first sentence of the recipe's opening comment: what it is, in its author's words."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    words: list[str] = []
    for line in lines:
        if not words and not line.strip():
            continue
        if not line.startswith("#") or not line.strip("# "):
            break
        words.append(line.strip("# "))
    text = " ".join(words)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def shipped_file(name: str) -> Path:
    """A file shipped beside geobind's recipe sets (``world/weights/clip-text.safetensors``),
    where a recipe names it as ``${shipped:world/weights/clip-text.safetensors}``: inside the
    installed package, wherever that is."""
    path = shipped_folder() / name
    if not path.is_file():
        raise ConfigError(
            f"${{shipped:{name}}}: geobind ships no such file ({path}); reinstall geobind, "
            "or in a source tree run `make pretrain` for the demo's pretrained towers"
        )
    return path


def _shipped(name: str) -> str:
    return str(shipped_file(name))


# -- reading ---------------------------------------------------------------------------------
def read_yaml(path: Path) -> dict:
    """One recipe file as a plain mapping (interpolations left unresolved)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("shipped"):
        OmegaConf.register_resolver("shipped", _shipped)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # YAML errors come in several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML: {first}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a recipe is a mapping")
    return loaded


def read_recipe_file(path: Path, _including: tuple[Path, ...] = ()) -> dict:
    """A recipe file with each included stage replaced by that stage's fields."""
    if path.resolve() in _including:
        raise ConfigError(f"{path}: includes itself (through {', '.join(map(str, _including))})")
    raw = read_yaml(path)
    stages = raw.get("stages") or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{path}: 'stages' must be a mapping of stage name to stage")
    including = (*_including, path.resolve())
    raw["stages"] = {name: _stage(value, path, including) for name, value in stages.items()}
    return raw


def _stage(value: Any, recipe: Path, including: tuple[Path, ...]) -> Any:
    """A stage written inline, or another recipe's single stage (``include``) with changes."""
    if isinstance(value, str):
        value = {"include": value}
    if not isinstance(value, dict) or "include" not in value:
        return value
    changes = {k: v for k, v in value.items() if k != "include"}
    source = str(value["include"])
    relative = recipe.parent / source
    other = read_recipe_file(relative if relative.is_file() else find_recipe(source), including)
    stages = other.get("stages") or {}
    if not isinstance(stages, dict) or len(stages) != 1:
        raise ConfigError(f"{recipe}: included {source} must hold exactly one stage")
    base = next(iter(stages.values()))
    if not isinstance(base, dict):
        raise ConfigError(f"{recipe}: the stage of included {source} is not a mapping")
    return _merge(base, changes)


def _merge(base: dict, changes: dict) -> dict:
    """``changes`` over ``base``, mapping by mapping (a stage's student config, say)."""
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out
