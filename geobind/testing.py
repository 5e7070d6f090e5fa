"""Fixtures for plugin authors, installed as a pytest plugin (entry point ``pytest11``).

Any test run in an environment with geobind installed can use:

- ``register_plugin``: register a plugin object for one test; undone afterwards.
- ``tiny_anchor``: a small satellite encoder (an :class:`geobind.Encoder`), 32 wide.
- ``tiny_pair_dataset``: a Lance pair dataset of 24 places with satellite tiles, ground photos
  and captions, as a :class:`DatasetPath` (a path that also opens the dataset).
- ``pair_dataset_factory``: ``(column, values, storage="binary", columns=None)`` -> a
  :class:`DatasetPath` of satellite tiles paired with your modality's raw values, or with
  plain columns (``columns={"temperature": [...], "rainfall": [...]}``).

and the helpers :func:`train_tiny_space` (a space trained in seconds, its anchor
``TINY_VISION["embed_dim"]`` = 32 wide) and :func:`train_tiny_stage` (a modality's own recipe,
for a few steps, against that space's frozen anchor).

This module imports nothing heavy at load time: it is loaded by every pytest run.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from geobind.data.pairs import open_pairs, pair_schema, to_record_batch
from geobind.modality import Storage
from geobind.plugins import get_registry

__all__ = [
    "TINY_AUDIO",
    "TINY_TEXT",
    "TINY_VISION",
    "DatasetPath",
    "pair_rows",
    "png_bytes",
    "train_tiny_space",
    "train_tiny_stage",
    "write_tiny_pairs",
]

#: A vision tower small enough for unit tests; ``train_tiny_space``'s anchor is one (32 wide).
TINY_VISION = dict(embed_dim=32, image_size=32, patch_size=8, width=64, layers=2, head_width=32)
#: A text tower of the same width.
TINY_TEXT = dict(embed_dim=32, context_length=16, width=64, heads=2, layers=1)
#: An audio tower of the same width (the geobind-audio plugin's HTS-AT), for one-second clips.
TINY_AUDIO = dict(
    embed_dim=32,
    clip_seconds=1.0,
    spec_size=64,
    n_mels=32,
    window=256,
    hop=160,
    fmax=4000.0,
    swin_window=4,
)

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


class DatasetPath(os.PathLike):
    """A pair dataset's path that also opens it: pass it wherever a dataset path goes
    (``train_tiny_space``, recipes, ``geobind.train_recipe``), or use it as the dataset
    (``.count_rows()``, ``.schema``, ... are the Lance dataset's)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"DatasetPath({self.path!r})"

    @property
    def dataset(self) -> Any:
        """The Lance dataset, opened afresh (it sees every version written since)."""
        return open_pairs(self.path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def train_rows(data: Any) -> int:
    """How many rows of a pair dataset are in its ``train`` split."""
    splits = open_pairs(str(data)).to_table(columns=["split"]).column("split").to_pylist()
    return splits.count("train")


def fitting_batch(batch_size: int, *datasets: Any) -> int:
    """``batch_size``, or less when a dataset has fewer training rows (at least 2)."""
    return max(2, min([batch_size, *(train_rows(d) for d in datasets if d is not None)]))


def train_tiny_space(
    space: Any, clip_data: Any, anchor_data: Any = None, batch_size: int = 8
) -> Path:
    """Train a small space in seconds: CLIP towers on ground+text pairs, then the anchor.

    ``clip_data`` needs ``ground`` and ``text`` columns, ``anchor_data`` (default: the same)
    ``satellite`` and ``ground``; paths or :class:`DatasetPath`. The batch shrinks to fit a
    dataset with fewer training rows. The anchor is ``TINY_VISION["embed_dim"]`` (32) wide.
    Returns the space's path; a plugin's stage can be added to it (:func:`train_tiny_stage`).
    """
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
            batch=fitting_batch(batch_size, clip_data, anchor_data),
        )
    )
    train(load_recipe(recipe), say=lambda line: None)
    return space


def train_tiny_stage(
    recipe: str | Path,
    space: Any,
    data: Any,
    steps: int = 3,
    overrides: Sequence[str] = (),
    batch_size: int = 8,
) -> dict[str, dict]:
    """Run a one-stage recipe (a modality's own, by name: ``"location"``) for a few steps
    against the frozen anchor of ``space``, with a batch that fits ``data``; returns its metrics.

    ``overrides`` come last, so they can change anything (``["lr=1e-2"]``).
    """
    from geobind.train import train_recipe

    tiny = [
        f"max_steps={steps}",
        f"batch_size={fitting_batch(batch_size, data)}",
        "val_every=0",
        f"checkpoint_every={max(1, steps)}",
        "warmup_steps=1",
    ]
    return train_recipe(recipe, [*tiny, *overrides], space=space, data=data, say=lambda line: None)


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
def pair_dataset_factory(tmp_path: Any) -> Callable[..., DatasetPath]:
    """``(column, values, storage="binary", columns=None)`` -> a :class:`DatasetPath` pairing
    satellite tiles with your raw values, and with plain ``columns`` (name -> values, stored
    with the Arrow type pyarrow infers) for a modality that reads several columns."""
    made: list[str] = []

    def make(
        column: str | None = None,
        values: Sequence[Any] = (),
        storage: Storage = "binary",
        columns: Mapping[str, Sequence[Any]] | None = None,
    ) -> DatasetPath:
        plain = dict(columns or {})
        given = {column: list(values)} if column else {}
        n = len(next(iter([*given.values(), *plain.values()]), []))
        if n == 0:
            raise ValueError("pair_dataset_factory: give values, or columns of values")
        storages: dict[str, Storage] = {
            "satellite": "binary",
            **({column: storage} if column else {}),
        }
        rows = pair_rows({"satellite": [png_bytes(i) for i in range(n)], **given, **plain})
        name = "-".join([*(given or {}), *plain]) or "tiles"
        uri = tmp_path / f"satellite-{name}-{len(made)}.lance"
        made.append(str(uri))
        return write_dataset(uri, rows, storages, plain)

    return make


def write_tiny_pairs(uri: Any, n: int = 12) -> DatasetPath:
    """A Lance pair dataset of ``n`` places with satellite tiles, ground photos and captions,
    over train/val/test (what :func:`train_tiny_space` needs), as a :class:`DatasetPath`."""
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(1000 + i) for i in range(n)],
            "text": [f"place number {i}" for i in range(n)],
        }
    )
    storages: dict[str, Storage] = {"satellite": "binary", "ground": "binary", "text": "string"}
    return write_dataset(Path(uri), rows, storages)


@pytest.fixture
def tiny_pair_dataset(tmp_path: Any) -> DatasetPath:
    """24 places with satellite tiles, ground photos and captions: 12 train, 6 val, 6 test."""
    return write_tiny_pairs(tmp_path / "tiny.lance", n=24)


def write_dataset(
    uri: Path,
    rows: list[dict[str, Any]],
    storages: Mapping[str, Storage],
    plain: Mapping[str, Sequence[Any]] | None = None,
) -> DatasetPath:
    """Write rows as a Lance pair dataset (modality columns, then plain ones)."""
    import lance
    import pyarrow as pa

    schema = pair_schema(storages)
    for name, values in (plain or {}).items():
        schema = schema.append(pa.field(name, pa.array(list(values)).type))
    lance.write_dataset(to_record_batch(rows, schema, storages), str(uri), schema=schema)
    return DatasetPath(uri)
