"""geobind plugin: text through CLIP's text tower and BPE tokenizer (open_clip).

Weights load from an open_clip/OpenAI ``CLIP`` checkpoint (``.pt``, ``.bin`` or
``.safetensors``, optionally ``{"state_dict": ...}``-wrapped and ``module.``-prefixed; RemoteCLIP's
too), from OpenAI's TorchScript archive (``ViT-B-32.pt``), or from a bare text-tower state dict.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from geobind import InputError, Modality, WeightsError, hookimpl, load_into

__all__ = ["TextConfig", "TextPreprocess", "build_text_tower", "text_modality"]


#: The tiny tower a :class:`TextConfig` gets when neither ``arch`` nor a size is given.
TINY_TEXT_DEFAULTS = dict(embed_dim=64, context_length=32, vocab_size=49408, width=128, heads=4,
                          layers=4, mlp_ratio=4.0, quick_gelu=False)
_TEXT_ARCH_FIELDS = ("context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio")


@dataclass
class TextConfig:
    """An open_clip text transformer.

    Give ``arch`` (an open_clip model name such as ``"ViT-B-32-quickgelu"``, or a local
    model-config JSON) to take every size from that architecture's text tower; a size given as
    well must agree with it, or building the config fails naming both values. Without ``arch``,
    unset sizes take tiny defaults (``TINY_TEXT_DEFAULTS``). CLIP ViT-B/32's text tower is
    ``context_length=77, width=512, heads=8, layers=12, embed_dim=512`` (OpenAI's weights:
    ``quick_gelu=True``, i.e. ``arch: ViT-B-32-quickgelu``).
    """

    embed_dim: Optional[int] = None
    context_length: Optional[int] = None
    vocab_size: Optional[int] = None
    width: Optional[int] = None
    heads: Optional[int] = None
    layers: Optional[int] = None
    mlp_ratio: Optional[float] = None
    quick_gelu: Optional[bool] = None
    #: an open_clip architecture name (or local model-config JSON) the sizes come from
    arch: Optional[str] = None

    def __post_init__(self) -> None:
        from geobind import resolve_arch

        resolve_arch(self, "text_cfg", TINY_TEXT_DEFAULTS, _TEXT_ARCH_FIELDS)


def build_text_tower(config: TextConfig, weights: Optional[Path] = None) -> Any:
    """The text tower, optionally initialised from a local CLIP checkpoint (see module doc)."""
    from dataclasses import fields

    from open_clip.model import CLIPTextCfg, _build_text_tower

    from geobind import QUICK_GELU_HINT, arch_tower, is_torchscript, read_clip_state

    known = {f.name for f in fields(CLIPTextCfg)}
    settings = {k: v for k, v in arch_tower(config, "text_cfg").items() if k in known}
    settings.update(context_length=config.context_length, vocab_size=config.vocab_size,
                    width=config.width, heads=config.heads, layers=config.layers,
                    mlp_ratio=config.mlp_ratio)
    tower = _build_text_tower(config.embed_dim, CLIPTextCfg(**settings),
                              quick_gelu=bool(config.quick_gelu))
    if weights is not None:
        source = f"text weights {weights}"
        if is_torchscript(weights) and not config.quick_gelu:
            raise WeightsError(f"{source}: a TorchScript CLIP archive (OpenAI's) in a tower "
                               f"without QuickGELU; {QUICK_GELU_HINT}")
        load_into(tower, text_state(read_clip_state(weights)), source)
    return tower


def text_state(state: dict) -> dict:
    """The text-tower entries of a CLIP checkpoint (OpenAI/open_clip ``CLIP`` or ``text.*``)."""
    if any(k.startswith("module.") for k in state):
        state = {k[len("module."):] if k.startswith("module.") else k: v
                 for k, v in state.items()}
    if any(k.startswith("text.") for k in state):
        return {k[len("text."):]: v for k, v in state.items() if k.startswith("text.")}
    return {k: v for k, v in state.items()
            if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")}


@functools.lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


class TextPreprocess:
    """A string -> ``[context_length]`` token ids with CLIP's tokenizer (truncated, padded)."""

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length

    def __call__(self, text: str) -> Any:
        check_text(text)
        return _tokenizer(self.context_length)(text)[0]


def text_preprocess(config: TextConfig, train: bool) -> TextPreprocess:
    """The preprocessing of a :class:`TextConfig` tower (the same in training and eval)."""
    return TextPreprocess(config.context_length)


def check_text(text: Any) -> None:
    """Raise :class:`geobind.InputError` unless ``text`` is a non-blank string."""
    if not isinstance(text, str):
        raise InputError(f"text: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("text: empty string")


def text_modality() -> Modality:
    """The ``text`` modality: strings in the pair-dataset column ``text``."""
    return Modality(
        name="text",
        config=TextConfig,
        build_encoder=build_text_tower,
        build_preprocess=text_preprocess,
        check=check_text,
        storage="string",
        description="text through CLIP's text tower and BPE tokenizer (open_clip)",
    )


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the text modality."""
    register(text_modality())
