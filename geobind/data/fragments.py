"""One Lance dataset written by many processes: each writes its own fragments, one commit.

Lance writes data files (fragments) without a manifest (``lance.fragment.write_fragments``);
a commit (``LanceDataset.commit`` with an ``Overwrite`` or ``Append`` operation) then makes
them one dataset version. So each rank of a torchrun job writes its share of the rows as
fragments of the same dataset URI, the ranks exchange the fragments' metadata, and rank 0
commits them all at once, in rank order: the dataset has exactly the rows one process would
have written, in the same order, and nobody ever sees a part of it.

With one process the same functions write and commit in one go. The process group (gloo or
NCCL) must be initialised before a function is called with ``world_size > 1``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "all_ranks",
    "barrier",
    "commit_fragments",
    "gather_fragments",
    "same_on_every_rank",
    "write_fragments",
    "write_sharded",
]

Mode = Literal["overwrite", "append"]


def write_fragments(uri: str | Path, batches: Iterable[Any], schema: Any) -> list[Any]:
    """Write Arrow record batches as fragments under ``uri`` (not yet part of any version).

    ``batches`` is consumed in the calling thread: Lance pulls its input from threads of its
    own, where GDAL, PROJ or torch objects made in this thread must not be used (PROJ
    crashes). A helper thread runs Lance's writer on a short queue, so memory stays flat.

    :returns: the fragments' ``FragmentMetadata``, for :func:`commit_fragments`.
    """
    import pyarrow as pa
    from lance.fragment import write_fragments as lance_write_fragments

    pipe: queue.Queue = queue.Queue(maxsize=2)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            reader = pa.RecordBatchReader.from_batches(schema, _drain(pipe))
            outcome["fragments"] = lance_write_fragments(reader, str(uri), schema=schema)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    writer = threading.Thread(target=write, name="lance-fragments", daemon=True)
    writer.start()
    try:
        for batch in batches:
            _put(pipe, batch, writer)
    except BaseException:
        _put(pipe, _ABORT, writer)
        writer.join()
        raise
    _put(pipe, _END, writer)
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["fragments"])


_END, _ABORT = object(), object()


def _put(pipe: queue.Queue, item: Any, writer: threading.Thread) -> None:
    """Queue ``item`` for the writer, unless the writer has stopped."""
    while writer.is_alive():
        try:
            pipe.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _drain(pipe: queue.Queue) -> Iterator[Any]:
    while (item := pipe.get()) is not _END:
        if item is _ABORT:
            raise RuntimeError("the rows' producer failed")
        yield item


def commit_fragments(
    uri: str | Path, fragments: Sequence[Any], schema: Any, mode: Mode = "overwrite"
) -> Any:
    """Make fragments one new version of the dataset at ``uri``, in the order given.

    ``overwrite`` creates the dataset (or replaces every row of an existing one) with
    ``schema``; ``append`` adds the rows to the existing dataset.
    """
    import lance

    if mode == "overwrite":
        return lance.LanceDataset.commit(
            str(uri), lance.LanceOperation.Overwrite(schema, list(fragments))
        )
    version = lance.dataset(str(uri)).version
    return lance.LanceDataset.commit(
        str(uri), lance.LanceOperation.Append(list(fragments)), read_version=version
    )


def all_ranks(value: Any, world_size: int = 1) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank (collective)."""
    if world_size <= 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value)
    return values


def gather_fragments(fragments: Sequence[Any], world_size: int = 1) -> list[Any]:
    """Every rank's fragments, in rank order, on every rank (collective)."""
    if world_size <= 1:
        return list(fragments)
    import json

    from lance.fragment import FragmentMetadata

    shares = all_ranks([json.dumps(f.to_json()) for f in fragments], world_size)
    return [FragmentMetadata.from_json(f) for share in shares for f in share]


def same_on_every_rank(value: Any, world_size: int = 1) -> Any:
    """Rank 0's ``value``, on every rank (collective): e.g. a temporary name all write to."""
    if world_size <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world_size: int = 1) -> None:
    """Wait until every rank gets here (collective; nothing for one process)."""
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def write_sharded(
    uri: str | Path,
    batches: Iterable[Any],
    schema: Any,
    rank: int = 0,
    world_size: int = 1,
    mode: Mode = "overwrite",
) -> Any:
    """Each rank writes its own ``batches`` as fragments of ``uri``; rank 0 commits them all
    once, in rank order. Every rank returns the committed dataset (collective).

    The rows a rank passes should be its disjoint share; the dataset then holds each rank's
    rows one after the other, rank 0's first.
    """
    import lance

    fragments = gather_fragments(write_fragments(uri, batches, schema), world_size)
    if rank == 0:
        commit_fragments(uri, fragments, schema, mode)
    barrier(world_size)
    return lance.dataset(str(uri))
