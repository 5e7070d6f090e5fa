"""The pair-dataset schema, in one place.

Every row is one place: a stable ``id``, ``lat``/``lon`` in degrees, a ``split`` (train, val or
test), and one column per modality named after it (``satellite``, ``ground``, ``audio``,
``text``, ...). Images and audio stay as encoded file bytes in Lance blob columns; text is a
string column.

A dataset may also carry a label column of per-class fractions (the synthetic world's
``landcover``): its field metadata names the classes and, optionally, words that name each
one (zero-shot classification builds its text prompts from them). See :func:`label_field`,
:func:`name_classes` and :func:`label_classes`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobind.errors import GeobindError

if TYPE_CHECKING:
    import lance
    import pyarrow as pa

    from geobind.modality import Storage

__all__ = [
    "BASE_COLUMNS",
    "CLASSES_KEY",
    "CLASS_WORDS_KEY",
    "SPLITS",
    "data_identity",
    "label_classes",
    "label_field",
    "lance_reason",
    "name_classes",
    "open_pairs",
    "pair_schema",
    "read_inputs",
    "read_values",
    "to_record_batch",
    "write_pairs",
]

BASE_COLUMNS = ("id", "lat", "lon", "split")
SPLITS = ("train", "val", "test")
#: Field metadata of a label column: a JSON list of its class names, in column order ...
CLASSES_KEY = "geobind.classes"
#: ... and a JSON object of the words that name each class.
CLASS_WORDS_KEY = "geobind.class_words"


def pair_schema(storages: Mapping[str, Storage]) -> pa.Schema:
    """The Arrow schema of a pair dataset with the given ``{column: storage}`` modalities."""
    import lance
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("split", pa.string()),
    ]
    for column, storage in storages.items():
        fields.append(
            lance.blob_field(column) if storage == "binary" else pa.field(column, pa.string())
        )
    return pa.schema(fields)


def write_pairs(
    uri: str | Path,
    rows: Sequence[Mapping[str, Any]],
    storages: Mapping[str, Storage],
    mode: str = "create",
) -> lance.LanceDataset:
    """Write rows (dicts with the base columns and each modality's raw value) to Lance."""
    import lance

    schema = pair_schema(storages)
    return lance.write_dataset(
        to_record_batch(rows, schema, storages), str(uri), schema=schema, mode=mode
    )


def to_record_batch(
    rows: Sequence[Mapping[str, Any]], schema: pa.Schema, storages: Mapping[str, Storage]
) -> pa.RecordBatch:
    """Rows as one Arrow batch of ``schema``; binary modality columns become Lance blobs."""
    import lance
    import pyarrow as pa

    arrays = [
        lance.blob_array([r[f.name] for r in rows])
        if storages.get(f.name) == "binary"
        else pa.array([r[f.name] for r in rows], type=f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def open_pairs(uri: str | Path) -> lance.LanceDataset:
    """Open a pair dataset, with an error naming the path when it is not one."""
    import lance

    if "://" not in str(uri) and not Path(uri).exists():
        hint = ""
        if Path(uri).name == "sounds.lance" and (Path(uri).parent / "world.json").is_file():
            hint = "; a synthetic world writes it when made with `geobind world make --sounds`"
        raise GeobindError(f"not a Lance pair dataset: {uri} (no such file or folder{hint})")
    try:
        return lance.dataset(str(uri))
    except (ValueError, OSError) as exc:
        raise GeobindError(f"not a Lance pair dataset: {uri} ({lance_reason(exc, uri)})") from None


def lance_reason(exc: BaseException, uri: str | Path | None = None) -> str:
    """A Lance error (about ``uri``) in the user's terms: without the Rust source locations
    Lance appends, and with the leading ``/`` its object-store paths drop put back."""
    text = _RUST_LOCATION.sub("", str(exc))
    if uri is None or "://" in str(uri):
        return text
    absolute = str(Path(uri).absolute())
    return re.sub(r"(?<!/)" + re.escape(absolute.lstrip("/")), lambda _: absolute, text)


#: ", /home/runner/work/lance/lance/rust/lance/src/dataset/builder.rs:921:29" and the like.
_RUST_LOCATION = re.compile(r",?\s*\S*/rust/\S+\.rs:\d+:\d+")


def read_values(ds: lance.LanceDataset, column: str, indices: Iterable[int]) -> list:
    """Raw values of one column at row ``indices``, in that order (bytes or strings)."""
    from lance.blob import BlobType

    indices = list(indices)
    if isinstance(ds.schema.field(column).type, BlobType):
        # without preserve_order, blobs come back in address order, not the order asked for
        return [data for _, data in ds.read_blobs(column, indices=indices, preserve_order=True)]
    return ds.take(indices, columns=[column]).column(column).to_pylist()


def read_inputs(
    ds: lance.LanceDataset, inputs: str | Sequence[str], indices: Iterable[int]
) -> list:
    """A modality's raw values at row ``indices`` (see :attr:`geobind.Modality.inputs`): the
    values of one column (a name), or tuples of the values of several (a sequence of names)."""
    if isinstance(inputs, str):
        return read_values(ds, inputs, indices)
    missing = [c for c in inputs if c not in ds.schema.names]
    if missing:
        raise GeobindError(
            f"dataset {ds.uri} has no column {missing[0]!r} (it has: {', '.join(ds.schema.names)})"
        )
    table = ds.take(list(indices), columns=list(inputs))
    return list(zip(*(table.column(c).to_pylist() for c in inputs)))


# -- label columns ------------------------------------------------------------------------
def _label_metadata(
    classes: Sequence[str], words: Mapping[str, Sequence[str]] | None
) -> dict[str, str]:
    meta = {CLASSES_KEY: json.dumps(list(classes))}
    if words:
        meta[CLASS_WORDS_KEY] = json.dumps({c: list(words[c]) for c in classes if c in words})
    return meta


def label_field(
    name: str, classes: Sequence[str], words: Mapping[str, Sequence[str]] | None = None
) -> pa.Field:
    """A column of per-class fractions (``[len(classes)]`` float32) that names its classes."""
    import pyarrow as pa

    return pa.field(
        name, pa.list_(pa.float32(), len(classes)), metadata=_label_metadata(classes, words)
    )


def name_classes(
    uri: str | Path,
    column: str,
    classes: Sequence[str],
    words: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Record the class names (and words) of an existing label column (a new version)."""
    ds = open_pairs(uri)
    if column not in ds.schema.names:
        raise GeobindError(f"{uri} has no label column {column!r}")
    updates: dict[str, str | None] = {**_label_metadata(classes, words)}
    ds.update_field_metadata({column: updates})


def label_classes(ds: lance.LanceDataset, column: str) -> tuple[list[str], dict[str, list[str]]]:
    """The class names and the words naming each that a label column records (empty if none)."""
    if column not in ds.schema.names:
        return [], {}
    meta = ds.schema.field(column).metadata or {}
    classes = json.loads(meta.get(CLASSES_KEY.encode(), b"[]"))
    words = json.loads(meta.get(CLASS_WORDS_KEY.encode(), b"{}"))
    return list(classes), {c: list(w) for c, w in words.items()}


def data_identity(data: str) -> str:
    """A local Lance dataset's identity: its version and its data files' names. Lance names
    each file it writes at random and keeps the names when a folder is moved or copied, so
    a moved dataset keeps its identity and one written again (another world at the same
    path) gets a new one. A URI, a path that is not a dataset, or no data: as written."""
    if not data or "://" in str(data) or not Path(data).is_dir():
        return data
    import lance

    try:
        ds = lance.dataset(str(data))
        files = sorted(f.path for frag in ds.get_fragments() for f in frag.data_files())
    except Exception:  # not a dataset: whoever reads it says what is wrong
        return data
    blob = json.dumps([ds.version, files]).encode()
    return "lance:" + hashlib.sha256(blob).hexdigest()[:16]
