"""An open_clip vision transformer as a geobind encoder: the anchor and ground photos use it.

Sizes come either from explicit fields or from an open_clip architecture name (``arch``, e.g.
``"ViT-B-32-quickgelu"``) read from the JSON configs shipped inside the open_clip package.
Weights load from a local file in any of these layouts (see :func:`vision_state`):

- an open_clip / OpenAI ``CLIP`` state dict (``visual.*`` keys; ``.pt``, ``.bin`` or
  ``.safetensors``; optionally wrapped in ``{"state_dict": ...}`` and ``module.``-prefixed), which
  covers RemoteCLIP's checkpoints too;
- OpenAI's TorchScript archive (``ViT-B-32.pt``), read with ``torch.jit.load``;
- a bare vision-tower state dict (what a geobind space stores);
- a Hugging Face ``CLIPVisionModel(WithProjection)`` state dict, including Sat2Cap's Lightning
  checkpoints (see :mod:`geobind.encoders.convert`).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional

from geobind.errors import ConfigError, WeightsError
from geobind.encoders.media import decode_image

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ImagePreprocess", "VisionConfig", "build_vision_tower", "is_torchscript",
           "open_clip_arch", "read_clip_state", "resolve_arch", "vision_state"]

#: The tiny tower a :class:`VisionConfig` gets when neither ``arch`` nor a size is given.
TINY_VISION_DEFAULTS = dict(embed_dim=64, image_size=64, patch_size=8, width=128, layers=4,
                            head_width=32, mlp_ratio=4.0, quick_gelu=False)

#: Entries of OpenAI's TorchScript archives that are not weights of either tower.
TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")

#: What to do with OpenAI CLIP weights in a GELU tower: they were trained with QuickGELU.
QUICK_GELU_HINT = ("OpenAI's CLIP weights were trained with QuickGELU: use an arch ending in "
                   "'-quickgelu' (e.g. 'ViT-B-32-quickgelu') or set quick_gelu: true")


@dataclass
class VisionConfig:
    """An open_clip ViT.

    Give ``arch`` (an open_clip model name such as ``"ViT-B-32-quickgelu"``, or the path of a
    local open_clip model-config JSON) to take every size from that architecture; a size given
    as well must agree with it, or building the config fails naming both values. Without
    ``arch``, unset sizes take the tiny defaults that train on a CPU (``TINY_VISION_DEFAULTS``).
    CLIP ViT-B/32 with OpenAI's weights is ``arch: ViT-B-32-quickgelu`` (``image_size=224,
    patch_size=32, width=768, layers=12, head_width=64, embed_dim=512, quick_gelu=True``);
    RemoteCLIP's README builds its ViT-B-32 as open_clip's ``ViT-B-32`` (GELU).

    ``image_mean`` / ``image_std`` override the normalisation (default: OpenAI CLIP's).
    """

    embed_dim: Optional[int] = None
    image_size: Optional[int] = None
    patch_size: Optional[int] = None
    width: Optional[int] = None
    layers: Optional[int] = None
    head_width: Optional[int] = None
    mlp_ratio: Optional[float] = None
    quick_gelu: Optional[bool] = None
    #: an open_clip architecture name (or local model-config JSON) the sizes come from
    arch: Optional[str] = None
    image_mean: Optional[List[float]] = None
    image_std: Optional[List[float]] = None

    def __post_init__(self) -> None:
        resolve_arch(self, "vision_cfg", TINY_VISION_DEFAULTS, _VISION_ARCH_FIELDS)


_VISION_ARCH_FIELDS = ("image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio")


# -- architectures --------------------------------------------------------------------
def open_clip_arch(name: str) -> dict:
    """The open_clip model config of architecture ``name``, read locally (never a download).

    ``name`` is a model name of the installed open_clip (its ``model_configs/*.json``, or one
    registered with ``open_clip.add_model_config``), or the path of a model-config JSON file.
    """
    import importlib.util
    import sys

    if name.startswith("hf-hub:"):
        raise ConfigError(f"arch {name!r}: geobind never reaches a model hub; save the model's "
                          f"open_clip_config.json locally and give its path as arch")
    path = Path(name)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"arch {name!r}: no such model-config file")
        config = json.loads(path.read_text())
        return config.get("model_cfg", config)
    loaded = sys.modules.get("open_clip")
    if loaded is not None:  # includes configs added with open_clip.add_model_config
        config = loaded.factory._MODEL_CONFIGS.get(name)
        if config is not None:
            return json.loads(json.dumps(config))
    spec = importlib.util.find_spec("open_clip")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    file = folder / f"{name}.json"
    if not file.is_file():
        import difflib

        known = sorted(p.stem for p in folder.glob("*.json"))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        raise ConfigError(f"arch {name!r} is not an open_clip architecture"
                          + (f"; did you mean: {', '.join(close)}?" if close else
                             f" ({len(known)} known, e.g. ViT-B-32, ViT-B-32-quickgelu)"))
    return json.loads(file.read_text())


def arch_tower(config: Any, part: str) -> dict:
    """The ``vision_cfg`` / ``text_cfg`` of a config's architecture (empty without one)."""
    if not getattr(config, "arch", None):
        return {}
    arch = open_clip_arch(config.arch)
    tower = dict(arch.get(part) or {})
    if part == "vision_cfg" and (tower.get("timm_model_name")
                                 or not isinstance(tower.get("layers", 12), int)):
        raise ConfigError(f"arch {config.arch!r}: its vision tower is not an open_clip "
                          f"VisionTransformer (timm or ResNet towers are not supported)")
    if part == "text_cfg" and tower.get("hf_model_name"):
        raise ConfigError(f"arch {config.arch!r}: its text tower is a Hugging Face model, "
                          f"which is not supported")
    return tower


def resolve_arch(config: Any, part: str, defaults: Mapping[str, Any],
                 tower_fields: tuple) -> None:
    """Fill a tower config's unset sizes from its ``arch`` (or ``defaults``), in place.

    A size set explicitly that differs from the architecture's is a :class:`ConfigError`
    naming the field, both values and the architecture.
    """
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg  # only when an arch is named

    if not config.arch:
        for name, value in defaults.items():
            if getattr(config, name) is None:
                setattr(config, name, value)
        return
    arch = open_clip_arch(config.arch)
    tower = arch_tower(config, part)
    base = CLIPVisionCfg() if part == "vision_cfg" else CLIPTextCfg()
    wanted = {name: tower.get(name, getattr(base, name)) for name in tower_fields}
    wanted["embed_dim"] = arch["embed_dim"]
    conflicts = [f"{name}={getattr(config, name)!r} but {config.arch} has {value!r}"
                 for name, value in wanted.items()
                 if getattr(config, name) is not None and getattr(config, name) != value]
    if "quick_gelu" in arch and config.quick_gelu is not None \
            and bool(config.quick_gelu) != bool(arch["quick_gelu"]):
        conflicts.append(f"quick_gelu={config.quick_gelu!r} but {config.arch} has "
                         f"{bool(arch['quick_gelu'])!r}")
    if conflicts:
        raise ConfigError(f"{type(config).__name__}: explicit sizes contradict arch "
                          f"{config.arch!r}: " + "; ".join(conflicts)
                          + " (leave them out to take the architecture's)")
    for name, value in wanted.items():
        setattr(config, name, value)
    if config.quick_gelu is None:
        config.quick_gelu = bool(arch.get("quick_gelu", False))


def _tower_cfg(config: VisionConfig) -> Any:
    from open_clip.model import CLIPVisionCfg

    known = {f.name for f in fields(CLIPVisionCfg)}
    extra = {k: v for k, v in arch_tower(config, "vision_cfg").items() if k in known}
    extra.update(layers=config.layers, width=config.width, head_width=config.head_width,
                 mlp_ratio=config.mlp_ratio, patch_size=config.patch_size,
                 image_size=config.image_size)
    return CLIPVisionCfg(**extra)


# -- weights --------------------------------------------------------------------------
def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (as OpenAI's CLIP ``ViT-B-32.pt`` is)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_clip_state(path: str | Path) -> dict[str, "torch.Tensor"]:
    """The tensors of a CLIP checkpoint, in open_clip/OpenAI key names.

    Reads safetensors and torch files (``weights_only=True``, a ``{"state_dict": ...}`` wrapper
    unwrapped, a DDP ``module.`` prefix removed) and OpenAI's TorchScript archives, which
    ``torch.jit.load`` reads (no pickled Python objects are executed) and whose non-weight
    entries (``input_resolution``, ``context_length``, ``vocab_size``) are dropped.
    """
    from geobind.encoders.weights import read_state_dict, strip_prefix

    path = Path(path)
    if path.is_file() and is_torchscript(path):
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:  # a damaged archive raises many types
            raise WeightsError(f"cannot read TorchScript archive {path}: {exc}") from None
        return {k: v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}
    try:
        return strip_prefix(read_state_dict(path), "module.")
    except WeightsError as exc:
        raise WeightsError(f"{exc}{_unsafe_hint(path)}") from None


def _unsafe_hint(path: Path) -> str:
    """Why ``weights_only`` refused a torch file (e.g. a Lightning checkpoint's hparams)."""
    try:
        import torch

        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a torch zip file at all: nothing to add
        return ""
    if not unsafe:
        return ""
    return (f" -- it pickles Python objects besides tensors ({', '.join(unsafe[:5])}), which "
            f"geobind never unpickles. If you trust the file, save its tensors alone once, "
            f"e.g. torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pt'), "
            f"and load that")


def vision_state(state: Mapping[str, "torch.Tensor"], prefer: Optional[str] = None,
                 source: str = "weights") -> dict[str, "torch.Tensor"]:
    """The vision-tower entries of a checkpoint, in open_clip ``VisionTransformer`` names.

    A Hugging Face CLIP vision model (Sat2Cap included) is converted; with several such towers
    in one checkpoint ``prefer`` (e.g. ``"imo_encoder."``) picks one. Otherwise the ``visual.``
    entries are taken, or the whole state if it has none (a bare tower).
    """
    from geobind.encoders.convert import hf_clip_vision_to_open_clip, hf_vision_towers
    from geobind.encoders.weights import strip_prefix

    towers = hf_vision_towers(state)
    if towers:
        chosen = [t for t in towers if prefer and t.startswith(prefer)] or towers
        if len(chosen) > 1:
            raise WeightsError(f"{source} holds {len(chosen)} Hugging Face CLIP vision towers "
                               f"({', '.join(p or '<root>' for p in chosen)}): convert the one "
                               f"you want with geobind.encoders.convert")
        return hf_clip_vision_to_open_clip(state, chosen[0])
    return strip_prefix(state, "visual.")


def uses_quick_gelu(tower: "nn.Module") -> bool:
    """Whether an open_clip transformer tower's MLPs use QuickGELU."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in tower.modules())


def build_vision_tower(config: VisionConfig, weights: Optional[Path] = None,
                       prefer: Optional[str] = None) -> "nn.Module":
    """The tower, optionally initialised from a local checkpoint (see the module doc)."""
    from open_clip.model import _build_vision_tower

    from geobind.encoders.weights import load_into

    tower = _build_vision_tower(config.embed_dim, _tower_cfg(config),
                                quick_gelu=bool(config.quick_gelu))
    if weights is not None:
        source = f"vision weights {weights}"
        raw = read_clip_state(weights)
        if is_torchscript(weights) and not config.quick_gelu:
            raise WeightsError(f"{source}: a TorchScript CLIP archive (OpenAI's) in a tower "
                               f"without QuickGELU; {QUICK_GELU_HINT}")
        from geobind.encoders.convert import check_sat2cap_activation

        check_sat2cap_activation(raw, config, source)
        load_into(tower, vision_state(raw, prefer, source), source)
    return tower


# -- preprocessing --------------------------------------------------------------------
class ImagePreprocess:
    """Encoded image bytes -> normalised ``[3, H, W]`` tensor, with open_clip's transforms."""

    def __init__(self, image_size: int, train: bool, mean: Optional[List[float]] = None,
                 std: Optional[List[float]] = None) -> None:
        self.image_size = image_size
        self.train = train
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self._transform = None

    def __call__(self, data: bytes) -> Any:
        if self._transform is None:  # built on first use so the object pickles light
            from open_clip.transform import image_transform
            self._transform = image_transform(self.image_size, is_train=self.train,
                                              mean=self.mean, std=self.std)
        return self._transform(decode_image(data))

    def __getstate__(self) -> dict:
        return {"image_size": self.image_size, "train": self.train, "mean": self.mean,
                "std": self.std, "_transform": None}


def vision_preprocess(config: VisionConfig, train: bool) -> ImagePreprocess:
    """The preprocessing a :class:`VisionConfig` tower expects."""
    return ImagePreprocess(config.image_size, train, config.image_mean, config.image_std)
