"""The frozen-embedding cache: a frozen teacher's embeddings, computed once, kept in Lance.

The cache of a pair dataset lives beside it (``DATA.lance`` -> ``DATA.cache/``), one Lance
table per key. The key covers everything that changes the embeddings: the dataset and its
version, the teacher's modality, config and weights (sha256), and its (eval) preprocessing.
Change any of them and a new table is computed; stale tables of the same teacher are removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from geobind.data.pairs import open_pairs, read_inputs
from geobind.errors import writing

__all__ = ["cache_dir", "cache_key", "teacher_embeddings"]

CHUNK = 256


def cache_dir(data_uri: str) -> Path:
    """The folder holding the caches of a pair dataset."""
    path = Path(data_uri)
    return path.with_name(path.stem + ".cache")


def cache_key(ds: Any, teacher: Any, weights_sha256: str) -> str:
    """A short hash of what determines the teacher's embeddings of this dataset."""
    payload = {
        "dataset": str(Path(ds.uri).resolve()),
        "version": ds.version,
        "modality": teacher.name,
        "column": teacher.modality.inputs,
        "config": asdict(teacher.config),
        "weights": weights_sha256,
        "preprocess": "eval",
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def teacher_embeddings(
    data_uri: str,
    teacher: Any,
    weights_sha256: str,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """``[rows, dim]`` embeddings of every row's teacher value, from the cache if present."""
    import lance

    ds = open_pairs(data_uri)
    key = cache_key(ds, teacher, weights_sha256)
    table = cache_dir(data_uri) / f"{teacher.name}-{key}.lance"
    if use_cache and table.exists():
        cached = lance.dataset(str(table)).to_table(columns=["embedding"])
        if cached.num_rows == ds.count_rows():
            return _tensor(cached.column("embedding"), teacher.embed_dim)
    embeddings = _compute(ds, teacher, progress)
    if use_cache:
        _store(table, embeddings)
    return embeddings


def _compute(ds: Any, teacher: Any, progress: Callable[[int, int], None] | None) -> torch.Tensor:
    inputs, total = teacher.modality.inputs, ds.count_rows()
    parts = []
    for start in range(0, total, CHUNK):
        rows = range(start, min(start + CHUNK, total))
        parts.append(teacher.embed(read_inputs(ds, inputs, rows), batch_size=CHUNK).cpu())
        if progress:
            progress(min(start + CHUNK, total), total)
    return torch.cat(parts) if parts else torch.empty(0, teacher.embed_dim)


def _store(table: Path, embeddings: torch.Tensor) -> None:
    """Write the table under a temporary name, rename it, and drop stale tables."""
    import lance
    import pyarrow as pa

    teacher = table.name.rsplit("-", 1)[0]
    tmp = table.with_name(f".{table.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    values = pa.array(embeddings.float().numpy().reshape(-1))
    vectors = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
    rows = pa.array(range(len(embeddings)), type=pa.int64())
    try:
        with writing(table):
            lance.write_dataset(pa.table({"row": rows, "embedding": vectors}), str(tmp))
    except BaseException:  # a full disk, say: leave no half-written table behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in table.parent.glob(f"{teacher}-*.lance"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.rename(table)


def _tensor(column: Any, dim: int) -> torch.Tensor:
    import numpy as np

    flat = np.asarray(column.combine_chunks().flatten(), dtype=np.float32)
    return torch.from_numpy(flat.reshape(-1, dim).copy())
