"""geobind plugin: text through CLIP's text tower and BPE tokenizer (open_clip)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from geobind import InputError, Modality, hookimpl, load_into, read_state_dict

__all__ = ["TextConfig", "TextPreprocess", "build_text_tower", "text_modality"]


@dataclass
class TextConfig:
    """An open_clip text transformer. Defaults are tiny; CLIP ViT-B/32's tower is
    ``context_length=77, width=512, heads=8, layers=12, embed_dim=512, quick_gelu=True``."""

    embed_dim: int = 64
    context_length: int = 32
    vocab_size: int = 49408
    width: int = 128
    heads: int = 4
    layers: int = 4
    mlp_ratio: float = 4.0
    quick_gelu: bool = False


def build_text_tower(config: TextConfig, weights: Optional[Path] = None) -> Any:
    """The text tower, optionally initialised from a local open_clip/CLIP checkpoint."""
    from open_clip.model import CLIPTextCfg, _build_text_tower

    text_cfg = CLIPTextCfg(context_length=config.context_length, vocab_size=config.vocab_size,
                           width=config.width, heads=config.heads, layers=config.layers,
                           mlp_ratio=config.mlp_ratio)
    tower = _build_text_tower(config.embed_dim, text_cfg, quick_gelu=config.quick_gelu)
    if weights is not None:
        load_into(tower, text_state(read_state_dict(weights)), f"text weights {weights}")
    return tower


def text_state(state: dict) -> dict:
    """The text-tower entries of a CLIP checkpoint (OpenAI/open_clip ``CLIP`` or ``text.*``)."""
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
