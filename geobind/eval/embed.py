"""Embedding a dataset's columns with a space: every modality the dataset carries and the space
can embed, read a chunk of rows at a time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch

from geobind.data.pairs import open_pairs, read_inputs
from geobind.errors import GeobindError
from geobind.plugins import get_registry

__all__ = ["embed_columns", "row_indices"]


def row_indices(ds: Any, rows: int | Sequence[int] | None) -> list[int]:
    """Rows to evaluate: all (``None``), the first ``rows`` (an int), or the given indices."""
    count = ds.count_rows()
    if rows is None:
        return list(range(count))
    if isinstance(rows, int):
        if rows < 1:
            raise GeobindError(f"rows: expected a positive number, got {rows}")
        return list(range(min(rows, count)))
    return list(rows)


def embed_columns(
    space: Any,
    dataset_uri: str,
    rows: int | Sequence[int] | None = None,
    batch_size: int = 128,
    only: Collection[str] | None = None,
    read_chunk: int = 1024,
) -> dict[str, torch.Tensor]:
    """Embeddings of every modality column the dataset carries and the space can embed.

    ``rows`` as in :func:`row_indices`; ``only`` names the modalities instead: those of them
    the space holds and can build, even one :meth:`geobind.space.Space.stale` leaves out (the
    demo checks encoders while a chain of stages trains again). Raw values are read
    ``read_chunk`` rows at a time so a large dataset of sounds never sits in memory whole.
    """
    ds = open_pairs(dataset_uri)
    rows = row_indices(ds, rows)
    if not rows:
        raise GeobindError(f"dataset {dataset_uri} has no rows to evaluate")
    registry, out = get_registry(), {}
    held = space.modalities if only is None else getattr(space, "entries", space.modalities)
    for name in held:
        if name not in registry.modalities or (only is not None and name not in only):
            continue
        modality = registry.modality(name)
        if all(c in ds.schema.names for c in modality.input_columns):
            out[name] = torch.cat(
                [
                    space.embed(
                        name, read_inputs(ds, modality.inputs, rows[i : i + read_chunk]), batch_size
                    )
                    for i in range(0, len(rows), read_chunk)
                ]
            )
    return out
