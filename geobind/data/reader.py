"""Reading pair datasets for training: decoded, preprocessed tensors from random rows.

A small map-style Dataset over Lance ``take``/``read_blobs`` (``lance.torch.data`` does not
handle Lance 2.2 blobs, and its samplers ignore ``set_epoch``). Lance is not fork-safe, so the
dataset is opened lazily in each process and worker processes are started with ``spawn``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from geobind.data.pairs import open_pairs, read_inputs

__all__ = ["PairDataset", "pair_loader", "split_rows"]


def split_rows(ds: Any, split: str | None) -> list[int]:
    """Row indices of one split (all rows if ``split`` is None), in dataset order."""
    splits = ds.to_table(columns=["split"]).column("split").to_pylist()
    return [i for i, s in enumerate(splits) if split is None or s == split]


class PairDataset(Dataset):
    """Rows of a Lance pair dataset as ``{"row": index, key: tensor, ...}``.

    :param uri: the Lance dataset.
    :param preprocess: key -> function turning one raw value into a tensor (see
        :meth:`geobind.Encoder.preprocess`).
    :param split: keep only this split's rows (``train``, ``val``, ``test``), or all.
    :param inputs: key -> what its raw values are read from: a column, or a tuple of columns
        read together (:attr:`geobind.Modality.inputs`); by default the column named ``key``.

    Every epoch reads the same rows again, so each process keeps the raw values it has read
    (up to :attr:`KEEP_BYTES`; then it reads the rest from Lance every time): a stage's later
    epochs read nothing (a Lance ``read_blobs`` of 128 panoramas took ~4 ms, ``take`` of 256
    locations ~2 ms). A Lance dataset object is one fixed version, so what is kept stays true.
    """

    KEEP_BYTES = 256 * 2**20

    #: Set by a training stage. In a data worker, each batch's random draws (crops, a clip's
    #: window: anything a preprocess draws from torch's generator) are then seeded from this and
    #: the batch's rows, so a stage resumed in the middle of an epoch draws what the run it
    #: continues would have drawn; a worker's own stream starts afresh with every run. In the
    #: main process (no workers) the draws continue torch's generator, which a checkpoint saves.
    seed: int | None = None

    def __init__(
        self,
        uri: str | Path,
        preprocess: Mapping[str, Callable[[Any], Any]],
        split: str | None = None,
        inputs: Mapping[str, str | tuple[str, ...]] | None = None,
    ) -> None:
        self.uri = str(uri)
        self.preprocess = dict(preprocess)
        self.inputs = {key: (inputs or {}).get(key, key) for key in self.preprocess}
        self._ds: Any = None
        self.rows = split_rows(self.dataset, split)
        self._kept: dict[str, dict[int, Any]] = {}
        self._kept_bytes = 0

    @property
    def dataset(self) -> Any:
        """The Lance dataset, opened on first use in this process."""
        if self._ds is None:
            self._ds = open_pairs(self.uri)
        return self._ds

    def __getstate__(self) -> dict:
        # Lance handles do not cross processes; nor does what this one has kept
        return {**self.__dict__, "_ds": None, "_kept": {}, "_kept_bytes": 0}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: Sequence[int]) -> list[dict[str, Any]]:
        rows = [self.rows[i] for i in items]
        if self.seed is not None and get_worker_info() is not None:
            torch.manual_seed(_batch_seed(self.seed, rows))
        samples: list[dict[str, Any]] = [{"row": r} for r in rows]
        for key, prep in self.preprocess.items():
            for sample, value in zip(samples, self._raw(key, rows)):
                sample[key] = prep(value)
        return samples

    def _raw(self, key: str, rows: list[int]) -> list[Any]:
        """The raw values of ``key`` at ``rows``: those kept, and the others read now."""
        kept = self._kept.setdefault(key, {})
        missing = [r for r in rows if r not in kept]
        read = (
            dict(zip(missing, read_inputs(self.dataset, self.inputs[key], missing)))
            if missing
            else {}
        )
        for r, value in read.items():
            size = _size(value)
            if self._kept_bytes + size <= self.KEEP_BYTES:
                kept[r] = value
                self._kept_bytes += size
        return [kept[r] if r in kept else read[r] for r in rows]


def _batch_seed(seed: int, rows: Sequence[int]) -> int:
    """A seed for one batch's random draws, from the stage's seed and the batch's rows."""
    digest = hashlib.blake2b(repr((seed, list(rows))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _size(value: Any) -> int:
    """About how many bytes a raw value holds (bytes, a string, or a tuple of values)."""
    if isinstance(value, (bytes, str)):
        return len(value) + 64
    if isinstance(value, (tuple, list)):
        return sum(_size(v) for v in value) + 64
    return 64


def pair_loader(
    dataset: PairDataset,
    batch_size: int,
    sampler: Sampler | Iterable[int] | None = None,
    shuffle: bool = False,
    workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader over a :class:`PairDataset`: batched reads, ``spawn`` workers."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle if sampler is None else False,
        num_workers=workers,
        collate_fn=default_collate,
        drop_last=drop_last,
        generator=generator,
        multiprocessing_context="spawn" if workers > 0 else None,
        persistent_workers=workers > 0,
    )
