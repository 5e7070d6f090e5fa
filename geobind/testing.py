"""Fixtures for plugin authors, installed as a pytest plugin (entry point ``pytest11``).

Any test run in an environment with geobind installed can use:

- ``register_plugin``: register a plugin object for one test; undone afterwards.
- ``tiny_anchor``: a small satellite encoder (an :class:`geobind.Encoder`).
- ``tiny_pair_dataset``: a Lance pair dataset of 12 places with satellite tiles, ground photos
  and captions.
- ``pair_dataset_factory``: ``(column, values, storage="binary")`` -> a Lance pair dataset of
  satellite tiles paired with your modality's raw values.

This module imports nothing heavy at load time: it is loaded by every pytest run.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from geobind.data import write_pairs
from geobind.modality import Storage
from geobind.plugins import get_registry

__all__ = [
    "TINY_TEXT",
    "TINY_VISION",
    "pair_rows",
    "png_bytes",
    "train_tiny_space",
    "write_tiny_pairs",
]

#: A vision tower small enough for unit tests.
TINY_VISION = dict(embed_dim=32, image_size=32, patch_size=8, width=64, layers=2, head_width=32)
#: A text tower of the same width.
TINY_TEXT = dict(embed_dim=32, context_length=16, width=64, heads=2, layers=1)

_TINY_SPACE = """
space: {space}
stages:
  clip:
    data: {clip_data}
    student: {{modality: text, config: {text}}}
    teacher: {{modality: ground, config: {vision}, train: true}}
    batch_size: {batch}
  anchor:
    data: {anchor_data}
    student: {{modality: satellite, config: {vision}, weights: "space:ground"}}
    teacher: {{modality: ground, weights: space}}
    batch_size: {batch}
"""


def train_tiny_space(
    space: Any, clip_data: Any, anchor_data: Any = None, batch_size: int = 8
) -> Any:
    """Train a small space in seconds: CLIP towers on ground+text pairs, then the anchor.

    ``clip_data`` needs ``ground`` and ``text`` columns, ``anchor_data`` (default: the same)
    ``satellite`` and ``ground``. Returns the space's path; a plugin's stage can be added to it.
    """
    from pathlib import Path

    from geobind.train import load_recipe, train

    space = Path(space)
    recipe = space.parent / f"{space.name}-recipe.yaml"
    recipe.write_text(
        _TINY_SPACE.format(
            space=space,
            clip_data=clip_data,
            anchor_data=anchor_data or clip_data,
            text=TINY_TEXT,
            vision=TINY_VISION,
            batch=batch_size,
        )
    )
    train(load_recipe(recipe), say=lambda line: None)
    return space


def png_bytes(seed: int, size: int = 32) -> bytes:
    """A small deterministic PNG: a colour field with a seed-dependent pattern."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    noise = rng.integers(-40, 40, size=(size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def pair_rows(values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows for :func:`geobind.data.write_pairs`: ids, coordinates, splits and the values."""
    n = len(next(iter(values.values())))
    splits = ["train", "train", "val", "test"]
    return [
        dict(
            id=f"place-{i:04d}",
            lat=40.0 + i / 100,
            lon=-74.0 + i / 100,
            split=splits[i % len(splits)],
            **{k: v[i] for k, v in values.items()},
        )
        for i in range(n)
    ]


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., Any]]:
    """``register_plugin(plugin, name="test-plugin", version="0")`` for the test's duration."""
    registry = get_registry()
    added: list[str] = []

    def register(plugin: object, name: str = "test-plugin", version: str = "0") -> Any:
        info = registry.add(plugin, name, version)
        added.append(name)
        return info

    yield register
    for name in reversed(added):
        registry.remove(name)


@pytest.fixture
def tiny_anchor() -> Any:
    """A small satellite encoder, randomly initialised."""
    import torch

    from geobind.encoders.encoder import build_encoder

    torch.manual_seed(0)
    return build_encoder("satellite", TINY_VISION)


@pytest.fixture
def pair_dataset_factory(tmp_path: Any) -> Callable[..., Any]:
    """``(column, values, storage="binary")`` -> a Lance dataset pairing tiles with values."""

    def make(column: str, values: Sequence[Any], storage: Storage = "binary") -> Any:
        tiles = [png_bytes(i) for i in range(len(values))]
        rows = pair_rows({"satellite": tiles, column: list(values)})
        uri = tmp_path / f"satellite-{column}.lance"
        return write_pairs(uri, rows, {"satellite": "binary", column: storage})

    return make


def write_tiny_pairs(uri: Any, n: int = 12) -> Any:
    """A Lance pair dataset of ``n`` places with satellite tiles, ground photos and captions,
    over train/val/test (what :func:`train_tiny_space` needs)."""
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(1000 + i) for i in range(n)],
            "text": [f"place number {i}" for i in range(n)],
        }
    )
    storages: dict[str, Storage] = {"satellite": "binary", "ground": "binary", "text": "string"}
    return write_pairs(uri, rows, storages)


@pytest.fixture
def tiny_pair_dataset(tmp_path: Any) -> Any:
    """12 places with satellite tiles, ground photos and captions, over train/val/test."""
    return write_tiny_pairs(tmp_path / "tiny.lance")
