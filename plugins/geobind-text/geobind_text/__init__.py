"""geobind plugin: text through CLIP's text tower and BPE tokenizer (open_clip).

Weights load from an open_clip/OpenAI ``CLIP`` checkpoint (``.pt``, ``.bin`` or
``.safetensors``, optionally ``{"state_dict": ...}``-wrapped and ``module.``-prefixed; RemoteCLIP's
too), from OpenAI's TorchScript archive (``ViT-B-32.pt``), or from a bare text-tower state dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from geobind import BagOfWords, InputError, Modality, hookimpl, load_into
from geobind.encoders.openclip import build_tower, read_clip_checkpoint, resolve_arch, tokenizer

__all__ = ["TextConfig", "TextPreprocess", "build_text_tower", "text_modality"]


#: The tiny tower a :class:`TextConfig` gets when neither ``arch`` nor a size is given.
TINY_TEXT_DEFAULTS = dict(
    embed_dim=64,
    context_length=32,
    vocab_size=49408,
    width=128,
    heads=4,
    layers=4,
    mlp_ratio=4.0,
    quick_gelu=False,
)


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

    embed_dim: int | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    width: int | None = None
    heads: int | None = None
    layers: int | None = None
    mlp_ratio: float | None = None
    quick_gelu: bool | None = None
    #: an open_clip architecture name (or local model-config JSON) the sizes come from
    arch: str | None = None

    def __post_init__(self) -> None:
        resolve_arch(self, "text", TINY_TEXT_DEFAULTS)


def build_text_tower(config: TextConfig, weights: Path | None = None) -> Any:
    """The text tower, optionally initialised from a local CLIP checkpoint (see module doc)."""
    tower = build_tower(config, "text")
    if weights is not None:
        source = f"text weights {weights}"
        load_into(tower, text_state(read_clip_checkpoint(weights, config, source)), source)
    return tower


def text_state(state: dict) -> dict:
    """The text-tower entries of a CLIP checkpoint (OpenAI/open_clip ``CLIP`` or ``text.*``)."""
    if any(k.startswith("text.") for k in state):
        return {k[len("text.") :]: v for k, v in state.items() if k.startswith("text.")}
    return {
        k: v
        for k, v in state.items()
        if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")
    }


class TextPreprocess:
    """A string -> ``[context_length]`` token ids with CLIP's tokenizer (truncated, padded).

    A stage reads the same captions every epoch, so the ids of up to :attr:`KEEP` strings are
    kept (BPE in Python costs ~50 us a caption: 7 ms of every batch of 128).
    """

    KEEP = 200_000

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length
        self._kept: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        ids = self._kept.get(text) if isinstance(text, str) else None
        if ids is None:
            check_text(text)
            ids = tokenizer(self.context_length)(text)[0]
            if len(self._kept) < self.KEEP:
                self._kept[text] = ids
        return ids.clone()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_kept": {}}


def text_preprocess(config: TextConfig, train: bool) -> TextPreprocess:
    """The preprocessing of a :class:`TextConfig` tower (the same in training and eval)."""
    return TextPreprocess(cast(int, config.context_length))  # resolved by __post_init__


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
        features=BagOfWords,
    )


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the text modality."""
    register(text_modality())
