"""The one module that calls open_clip: towers by architecture, CLIP checkpoints, transforms, loss.

open_clip builds whole CLIP models publicly, but geobind needs one tower at a time (the anchor
and the ground photos use its vision tower, geobind-text its text tower) and reads its model
configs without creating a model. For that it calls a few of open_clip's internals; every such
call is in this module, listed in :data:`INTERNALS`, and ``constraints.txt`` pins the
open_clip_torch version they were checked against. ``tests/test_openclip.py`` names the internal
that moved when an upgrade breaks one.

Public for plugin authors whose encoder is an open_clip tower (geobind-text is one): give the
config dataclass the sizes of :data:`TOWER_FIELDS` plus ``embed_dim``, ``quick_gelu`` and
``arch``, call :func:`resolve_arch` in its ``__post_init__``, build the tower with
:func:`build_tower` and read weights with :func:`read_clip_checkpoint`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geobind.encoders.weights import read_state_dict, strip_prefix
from geobind.errors import ConfigError, GeobindError, WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "INTERNALS",
    "QUICK_GELU_HINT",
    "TOWER_FIELDS",
    "OpenClipChanged",
    "Tower",
    "arch_tower",
    "build_tower",
    "check_internals",
    "clip_loss",
    "image_transform",
    "is_torchscript",
    "open_clip_arch",
    "read_clip_checkpoint",
    "read_clip_state",
    "resolve_arch",
    "tokenizer",
]

#: The two kinds of open_clip tower.
Tower = Literal["vision", "text"]

#: The sizes of each tower that a geobind config holds and an architecture fixes.
TOWER_FIELDS: dict[str, tuple[str, ...]] = {
    "vision": ("image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio"),
    "text": ("context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"),
}

#: open_clip internals geobind calls: (module, name, the arguments geobind passes by name).
INTERNALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("open_clip.model", "_build_vision_tower", ("embed_dim", "vision_cfg", "quick_gelu")),
    ("open_clip.model", "_build_text_tower", ("embed_dim", "text_cfg", "quick_gelu")),
    ("open_clip.factory", "_MODEL_CONFIGS", ()),
)

#: Entries of OpenAI's TorchScript archives that are not weights of either tower.
TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")

#: What to do with OpenAI CLIP weights in a GELU tower: they were trained with QuickGELU.
QUICK_GELU_HINT = (
    "OpenAI's CLIP weights were trained with QuickGELU: use an arch ending in "
    "'-quickgelu' (e.g. 'ViT-B-32-quickgelu') or set quick_gelu: true"
)

_CONFIG_PART = {"vision": "vision_cfg", "text": "text_cfg"}


class OpenClipChanged(GeobindError, RuntimeError):
    """An open_clip internal geobind calls is missing or takes other arguments."""


# -- internals ----------------------------------------------------------------------------
def internal(module: str, name: str) -> Any:
    """``module.name`` from open_clip, or an error naming it and the versions involved."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise OpenClipChanged(
            f"open_clip internal {module}.{name} is gone ({exc}); {_versions()}"
        ) from None


def model_configs_folder() -> Path:
    """The folder of model-config JSON files inside the installed open_clip package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is not installed: pip install open_clip_torch")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    if not folder.is_dir():
        raise OpenClipChanged(f"open_clip internal model_configs/ folder is gone; {_versions()}")
    return folder


def check_internals() -> list[str]:
    """Each internal that moved, in words: empty when the installed open_clip still fits."""
    problems = []
    for module, name, arguments in INTERNALS:
        try:
            value = internal(module, name)
            if arguments:
                inspect.signature(value).bind(**dict.fromkeys(arguments))
        except OpenClipChanged as exc:
            problems.append(str(exc))
        except TypeError as exc:
            problems.append(
                f"open_clip internal {module}.{name} no longer takes "
                f"{', '.join(arguments)} ({exc}); {_versions()}"
            )
    try:
        model_configs_folder()
    except OpenClipChanged as exc:
        problems.append(str(exc))
    return problems


def _versions() -> str:
    try:
        installed = importlib.metadata.version("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    return (
        f"open_clip_torch {installed} is installed; geobind.encoders.openclip was checked "
        f"against the version constraints.txt pins"
    )


# -- architectures --------------------------------------------------------------------
def open_clip_arch(name: str) -> dict:
    """The open_clip model config of architecture ``name``, read locally (never a download).

    ``name`` is a model name of the installed open_clip (its ``model_configs/*.json``, or one
    registered with ``open_clip.add_model_config``), or the path of a model-config JSON file.
    """
    if name.startswith("hf-hub:"):
        raise ConfigError(
            f"arch {name!r}: geobind never reaches a model hub; save the model's "
            f"open_clip_config.json locally and give its path as arch"
        )
    path = Path(name)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"arch {name!r}: no such model-config file")
        config = json.loads(path.read_text())
        return config.get("model_cfg", config)
    if "open_clip" in sys.modules:  # includes configs added with open_clip.add_model_config
        config = internal("open_clip.factory", "_MODEL_CONFIGS").get(name)
        if config is not None:
            return json.loads(json.dumps(config))
    folder = model_configs_folder()
    file = folder / f"{name}.json"
    if not file.is_file():
        known = sorted(p.stem for p in folder.glob("*.json"))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        raise ConfigError(
            f"arch {name!r} is not an open_clip architecture"
            + (
                f"; did you mean: {', '.join(close)}?"
                if close
                else f" ({len(known)} known, e.g. ViT-B-32, ViT-B-32-quickgelu)"
            )
        )
    return json.loads(file.read_text())


def arch_tower(config: Any, tower: Tower) -> dict:
    """The ``vision_cfg`` / ``text_cfg`` of a config's architecture (empty without one)."""
    if not getattr(config, "arch", None):
        return {}
    settings = dict(open_clip_arch(config.arch).get(_CONFIG_PART[tower]) or {})
    if tower == "vision" and (
        settings.get("timm_model_name") or not isinstance(settings.get("layers", 12), int)
    ):
        raise ConfigError(
            f"arch {config.arch!r}: its vision tower is not an open_clip "
            f"VisionTransformer (timm or ResNet towers are not supported)"
        )
    if tower == "text" and settings.get("hf_model_name"):
        raise ConfigError(
            f"arch {config.arch!r}: its text tower is a Hugging Face model, which is not supported"
        )
    return settings


def resolve_arch(config: Any, tower: Tower, defaults: Mapping[str, Any]) -> None:
    """Fill a tower config's unset sizes from its ``arch`` (or ``defaults``), in place.

    A size set explicitly that differs from the architecture's is a :class:`ConfigError`
    naming the field, both values and the architecture.
    """
    if not config.arch:
        for name, value in defaults.items():
            if getattr(config, name) is None:
                setattr(config, name, value)
        return
    arch = open_clip_arch(config.arch)
    wanted = _arch_sizes(config, tower, arch)
    conflicts = [
        f"{name}={getattr(config, name)!r} but {config.arch} has {value!r}"
        for name, value in wanted.items()
        if getattr(config, name) is not None and getattr(config, name) != value
    ]
    if (
        "quick_gelu" in arch
        and config.quick_gelu is not None
        and bool(config.quick_gelu) != bool(arch["quick_gelu"])
    ):
        conflicts.append(
            f"quick_gelu={config.quick_gelu!r} but {config.arch} has {bool(arch['quick_gelu'])!r}"
        )
    if conflicts:
        raise ConfigError(
            f"{type(config).__name__}: explicit sizes contradict arch "
            f"{config.arch!r}: "
            + "; ".join(conflicts)
            + " (leave them out to take the architecture's)"
        )
    for name, value in wanted.items():
        setattr(config, name, value)
    if config.quick_gelu is None:
        config.quick_gelu = bool(arch.get("quick_gelu", False))


def _arch_sizes(config: Any, tower: Tower, arch: dict) -> dict[str, Any]:
    """Every size of :data:`TOWER_FIELDS` and ``embed_dim`` as the architecture has them."""
    settings = arch_tower(config, tower)
    base = _tower_config_class(tower)()
    wanted = {name: settings.get(name, getattr(base, name)) for name in TOWER_FIELDS[tower]}
    wanted["embed_dim"] = arch["embed_dim"]
    return wanted


def _tower_config_class(tower: Tower) -> type:
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    return CLIPVisionCfg if tower == "vision" else CLIPTextCfg


def tower_config(config: Any, tower: Tower) -> Any:
    """open_clip's ``CLIPVisionCfg`` / ``CLIPTextCfg`` for a resolved geobind config: the
    architecture's other settings, with the config's sizes."""
    cls = _tower_config_class(tower)
    known = {f.name for f in fields(cls)}
    settings = {k: v for k, v in arch_tower(config, tower).items() if k in known}
    settings.update({name: getattr(config, name) for name in TOWER_FIELDS[tower]})
    return cls(**settings)


def build_tower(config: Any, tower: Tower) -> nn.Module:
    """A randomly initialised open_clip tower for a resolved config (see :func:`resolve_arch`)."""
    build = internal("open_clip.model", f"_build_{tower}_tower")
    return build(
        embed_dim=config.embed_dim,
        **{_CONFIG_PART[tower]: tower_config(config, tower)},
        quick_gelu=bool(config.quick_gelu),
    )


# -- CLIP checkpoints -----------------------------------------------------------------
def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (as OpenAI's CLIP ``ViT-B-32.pt`` is)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_clip_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint, in open_clip/OpenAI key names.

    Reads safetensors and torch files (``weights_only=True``, a ``{"state_dict": ...}`` wrapper
    unwrapped, a DDP ``module.`` prefix removed) and OpenAI's TorchScript archives, which
    ``torch.jit.load`` reads (no pickled Python objects are executed) and whose non-weight
    entries (``input_resolution``, ``context_length``, ``vocab_size``) are dropped.
    """
    path = Path(path)
    if path.is_file() and is_torchscript(path):
        return _read_torchscript(path)
    return strip_prefix(read_state_dict(path), "module.")


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as exc:  # a damaged archive raises many types
        raise WeightsError(f"cannot read TorchScript archive {path}: {exc}") from None
    return {k: v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}


def read_clip_checkpoint(weights: str | Path, config: Any, source: str) -> dict[str, torch.Tensor]:
    """:func:`read_clip_state` of ``weights``, refusing OpenAI's TorchScript archive in a tower
    without QuickGELU (its weights were trained with QuickGELU) before reading it."""
    if is_torchscript(weights) and not config.quick_gelu:
        raise WeightsError(
            f"{source}: a TorchScript CLIP archive (OpenAI's) in a tower "
            f"without QuickGELU; {QUICK_GELU_HINT}"
        )
    return read_clip_state(weights)


# -- preprocessing and loss -----------------------------------------------------------
def image_transform(
    image_size: int, train: bool, mean: list[float] | None = None, std: list[float] | None = None
) -> Any:
    """open_clip's image transform: PIL image -> normalised ``[3, size, size]`` tensor."""
    from open_clip import image_transform as transform

    return transform(image_size, is_train=train, mean=mean, std=std)


@functools.lru_cache(maxsize=4)
def tokenizer(context_length: int) -> Any:
    """CLIP's BPE tokenizer: ``tokenizer(n)(text)`` -> ``[1, n]`` token ids (cached)."""
    from open_clip import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def clip_loss(rank: int = 0, world_size: int = 1) -> nn.Module:
    """open_clip's ``ClipLoss``, gathering negatives across ranks with gradients.

    ``local_loss=True, gather_with_grad=True`` is the one setting that gives the full-batch
    gradient when one side is frozen.
    """
    from open_clip import ClipLoss

    # open_clip gathers with torch.distributed.nn.all_gather, which warns of a future rename
    warnings.filterwarnings(
        "ignore", message=r"torch\.distributed\.nn\.functional\.all_gather", category=FutureWarning
    )
    return ClipLoss(
        local_loss=True, gather_with_grad=True, cache_labels=False, rank=rank, world_size=world_size
    )
