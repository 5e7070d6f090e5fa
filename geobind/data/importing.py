"""Bringing rows into a pair dataset: validation, a rejects report, atomic idempotent writes.

Importers (the Sat2Cap and SoundingEarth layouts, generic tables, the synthetic world) read
their sources into :class:`Candidate` rows and hand them to :func:`import_pairs`, which
checks every row, rejects bad ones with their id and reason, and appends the good ones in one
Lance commit: an import that dies part-way leaves the dataset as it was, and running the same
import again adds no duplicate rows.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobind.data.pairs import SPLITS, pair_schema, to_record_batch
from geobind.encoders.weights import temporary_name
from geobind.errors import ConfigError, GeobindError, InputError, writing
from geobind.modality import Storage

__all__ = ["Candidate", "ImportReport", "MissingFile", "assign_split", "import_pairs"]

#: How many rows go into one Arrow batch while importing.
BATCH_ROWS = 256
#: How many rejected rows a report quotes.
EXAMPLES = 10


class MissingFile(GeobindError, FileNotFoundError):
    """A row refers to a file that is not there."""


@dataclass
class Candidate:
    """One row as an importer reads it, before validation.

    :param values: column -> raw value, or a zero-argument callable that reads it (so a
        file is read only when its row is imported).
    :param extra: further columns written as they are (e.g. ``landcover`` labels).
    """

    id: Any
    lat: Any
    lon: Any
    values: dict[str, Any]
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import did: counts, reasons, the first rejected rows."""

    dataset: str
    imported: int = 0
    already_present: int = 0
    rejected: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)
    rejects_file: str | None = None
    version: int | None = None

    def reject(self, row_id: str, reason: str) -> None:
        """Count a rejected row and keep it as an example if it is among the first."""
        self.rejected += 1
        self.reasons[reason.split(":")[0]] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append((row_id, reason))

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"{self.dataset}: imported {self.imported} rows, {self.already_present} "
            f"already present, rejected {self.rejected} (version {self.version})"
        ]
        lines += [f"  {count:6d} x {reason}" for reason, count in self.reasons.most_common()]
        lines += [f"  e.g. {row_id}: {reason}" for row_id, reason in self.examples]
        if self.rejects_file:
            lines.append(f"  every rejected row: {self.rejects_file}")
        return "\n".join(lines)


def assign_split(row_id: str, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> str:
    """A stable train/val/test split from a hash of the id (same id, same split, anywhere)."""
    digest = hashlib.blake2b(row_id.encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    edges = [sum(fractions[: i + 1]) / sum(fractions) for i in range(len(SPLITS))]
    return next(split for split, edge in zip(SPLITS, edges) if u < edge)


def import_pairs(
    uri: str | Path,
    candidates: Iterable[Candidate],
    columns: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    rejects: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    check: bool = True,
) -> ImportReport:
    """Validate ``candidates`` and append the good ones to the Lance dataset at ``uri``.

    :param columns: modality column -> :class:`geobind.Modality` (its ``check`` validates
        values, its ``storage`` gives the column type).
    :param extra: further column -> Arrow type or field (a field keeps its metadata, such as a
        label column's class names), copied from ``Candidate.extra``.
    :param rejects: optional JSON-lines file listing every rejected row with its reason.
    :param progress: called with the number of candidates read so far.
    :param check: validate values with each modality's ``check``; off only for data this
        process has just generated itself (ids, coordinates and duplicates are still checked).
    """
    import pyarrow as pa

    uri = str(uri)
    for modality in columns.values():
        if getattr(modality, "columns", ()):
            raise ConfigError(
                f"modality {modality.name!r} reads the columns {', '.join(modality.columns)} "
                f"of each row and has no column of its own to import: keep those columns "
                f"in the dataset instead"
            )
    storages = {c: m.storage for c, m in columns.items()}
    schema = pair_schema(storages)
    for name, type_ in (extra or {}).items():
        schema = schema.append(type_ if isinstance(type_, pa.Field) else pa.field(name, type_))
    before = _existing(uri, schema)
    report = ImportReport(dataset=uri, version=before.version if before is not None else None)
    checked = columns if check else {c: _Unchecked(m) for c, m in columns.items()}
    existing = _ids(before) if before is not None else None
    with _RejectsFile(rejects) as out:
        report.rejects_file = str(rejects) if rejects else None
        rows = _validated(candidates, checked, existing, report, out, progress)
        _append(uri, rows, schema, storages, before, report)
    return report


def _append(
    uri: str,
    rows: Iterator[dict[str, Any]],
    schema: Any,
    storages: Mapping[str, Storage],
    before: Any,
    report: ImportReport,
) -> None:
    """Append the validated rows in one commit; with none, write nothing (no empty version)."""
    import lance
    import pyarrow as pa

    failure: list[BaseException] = []
    batches = _batches(rows, schema, storages, failure)
    first = next(batches, None)
    if first is None:
        return
    reader = pa.RecordBatchReader.from_batches(schema, itertools.chain([first], batches))
    created = not Path(uri).exists() and "://" not in uri
    try:
        with writing(uri):
            ds = lance.write_dataset(
                reader, uri, schema=schema, mode="append" if before is not None else "create"
            )
    except BaseException as exc:
        _discard_uncommitted(uri, created)
        if failure and failure[0] is not exc:  # Lance wraps what our generator raised
            raise failure[0] from None
        raise
    report.version = ds.version


def _discard_uncommitted(uri: str, created: bool) -> None:
    """Remove what a failed write left: the dataset it was creating, or its unreferenced files
    (an import is the dataset's only writer while it runs)."""
    import datetime

    import lance

    if created:
        shutil.rmtree(uri, ignore_errors=True)
        return
    with contextlib.suppress(ValueError, OSError):  # the cleanup is a courtesy: keep the error
        lance.dataset(uri).cleanup_old_versions(
            older_than=datetime.timedelta(days=365_000), delete_unverified=True
        )


class _RejectsFile:
    """The rejects file, written under a temporary name and renamed when the import commits:
    an import that aborts leaves none (and an older one as it was)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.tmp = temporary_name(self.path) if self.path else None
        self.file: Any = None

    def __enter__(self) -> Any:
        if self.tmp is not None:
            self.file = open(self.tmp, "w")
        return self.file

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if self.file is None:
            return
        self.file.close()
        if kind is None:
            os.replace(self.tmp, self.path)  # type: ignore[arg-type]
        else:
            os.unlink(self.tmp)  # type: ignore[arg-type]


class _Unchecked:
    """A modality whose values are trusted as they are."""

    def __init__(self, modality: Any) -> None:
        self.storage = modality.storage

    def check(self, value: Any) -> None:
        pass


def _existing(uri: str, schema: Any) -> Any:
    """The dataset already at ``uri`` (None if there is none); its schema must match."""
    import lance

    if not (Path(uri).exists() or "://" in uri):
        return None
    try:
        ds = lance.dataset(uri)
    except (ValueError, OSError):
        return None
    if ds.schema.names != schema.names:
        raise GeobindError(
            f"{uri} has columns {ds.schema.names}, this import writes "
            f"{schema.names}: import into a new dataset"
        )
    return ds


def _ids(ds: Any) -> set[str]:
    return set(ds.to_table(columns=["id"]).column("id").to_pylist())


def _validated(
    candidates: Iterable[Candidate],
    columns: Mapping[str, Any],
    existing: set[str] | None,
    report: ImportReport,
    out: Any,
    progress: Callable[[int], None] | None,
) -> Iterator[dict[str, Any]]:
    existing = existing or set()
    seen: set[str] = set()  # ids of this import: a second one is a duplicate, wherever it is
    for n, candidate in enumerate(candidates, 1):
        if progress:
            progress(n)
        row_id = str(candidate.id)
        try:
            row = _row(candidate, columns)
        except (InputError, MissingFile, ValueError, OSError) as exc:
            _reject(report, out, row_id, str(exc))
            continue
        if row["id"] in seen:
            _reject(report, out, row_id, "duplicate id: seen earlier in this import")
            continue
        seen.add(row["id"])
        if row["id"] in existing:
            report.already_present += 1
            continue
        report.imported += 1
        yield row


def _reject(report: ImportReport, out: Any, row_id: str, reason: str) -> None:
    report.reject(row_id, reason)
    if out:
        out.write(json.dumps({"id": row_id, "reason": reason}) + "\n")


def _row(candidate: Candidate, columns: Mapping[str, Any]) -> dict[str, Any]:
    """A validated row, or ValueError/InputError/MissingFile saying what is wrong."""
    row_id = candidate.id
    if not isinstance(row_id, str) or not row_id.strip():
        raise ValueError(f"bad id: {row_id!r}")
    lat, lon = _coordinate(candidate.lat, "lat", 90), _coordinate(candidate.lon, "lon", 180)
    split = candidate.split or assign_split(row_id)
    if split not in SPLITS:
        raise ValueError(f"bad split: {split!r} (expected one of {', '.join(SPLITS)})")
    row = {"id": row_id, "lat": lat, "lon": lon, "split": split, **candidate.extra}
    for column, modality in columns.items():
        if column not in candidate.values:
            raise ValueError(f"missing value: no {column}")
        value = candidate.values[column]
        value = value() if callable(value) else value
        if modality.storage == "string" and isinstance(value, (bytes, bytearray)):
            value = _utf8(value, column)  # a CSV column with bytes that are not UTF-8 is bytes
        try:
            modality.check(value)
        except InputError as exc:
            raise InputError(f"bad {column}: {exc}") from None
        row[column] = value
    return row


def _utf8(value: bytes | bytearray, column: str) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"bad {column}: not valid UTF-8 (byte 0x{value[exc.start]:02x} at {exc.start}; "
            f"if the source has another encoding, declare it)"
        ) from None


def _coordinate(value: Any, name: str, bound: float) -> float:
    if value is None or value == "":
        raise ValueError(f"missing {name}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad {name}: {value!r} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"bad {name}: NaN is not a coordinate")
    if abs(number) > bound:
        raise ValueError(f"{name} out of range: {number:g} (expected -{bound:g}..{bound:g})")
    return number


def _batches(
    rows: Iterator[dict[str, Any]],
    schema: Any,
    storages: Mapping[str, Storage],
    failure: list[BaseException],
) -> Iterator[Any]:
    chunk: list[dict[str, Any]] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) == BATCH_ROWS:
                yield to_record_batch(chunk, schema, storages)
                chunk = []
        if chunk:
            yield to_record_batch(chunk, schema, storages)
    except BaseException as exc:
        failure.append(exc)
        raise
