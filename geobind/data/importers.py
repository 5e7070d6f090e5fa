"""Importers of real dataset layouts into Lance pair datasets.

- ``sat2cap``: Sat2Cap/YFCC-style webdataset shards: tar members ``KEY.groundlevel.jpg``,
  ``KEY.overhead.jpg`` and ``KEY.metadata.json`` (with latitude/longitude).
- ``soundingearth``: a metadata CSV keyed by sample id with latitude/longitude, a folder of
  satellite JPEGs and a folder of MP3/WAV/FLAC audio named by the same ids.
- ``table``: a CSV or Parquet table with a column mapping (id, lat, lon, optional split, and
  ``modality=column`` pairs whose values are file paths, or text and numbers for string
  modalities); every other column is kept as it is, field metadata included.
"""

from __future__ import annotations

import decimal
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobind.config import opt
from geobind.data.importing import Candidate, ImportReport, MissingFile, import_pairs
from geobind.errors import ConfigError, GeobindError, InputError
from geobind.plugins import get_registry

__all__ = [
    "Sat2CapOptions",
    "SoundingEarthOptions",
    "TableOptions",
    "import_sat2cap",
    "import_soundingearth",
    "import_table",
]


def _modalities(*names: str) -> dict[str, Any]:
    registry = get_registry()
    return {name: registry.modality(name) for name in names}


def _file(path: Path) -> Callable[[], bytes]:
    """A reader of ``path`` that says which file is missing."""

    def read() -> bytes:
        if not path.is_file():
            raise MissingFile(f"missing file: {path}")
        return path.read_bytes()

    return read


def _progress(label: str) -> Callable[[int], None]:
    from tqdm import tqdm

    bar = tqdm(desc=label, unit=" rows", mininterval=0.5, leave=False)

    def update(n: int) -> None:
        bar.update(n - bar.n)

    return update


# -- Sat2Cap ------------------------------------------------------------------------------
@dataclass
class Sat2CapOptions:
    """Import Sat2Cap/YFCC webdataset shards (``*.tar``) into a satellite+ground dataset."""

    shards: str = opt("", "a folder of .tar shards, or one .tar file")
    out: str = opt("", "the Lance dataset to create or append to")
    rejects: str | None = opt(None, "JSON-lines file listing rejected rows")


def _shard_samples(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) per sample of a webdataset tar.

    Read with tarfile rather than the webdataset package: grouping members by key takes a few
    lines, and a corrupt member must become a rejected row, not an aborted iterator.
    """
    with tarfile.open(shard) as tar:
        key, parts = None, {}
        for member in tar:
            if not member.isfile():
                continue
            name = Path(member.name).name
            stem, _, suffix = name.partition(".")
            if stem != key and key is not None:
                yield key, parts
                parts = {}
            key = stem
            content = tar.extractfile(member)  # a regular member always has content
            parts[suffix] = content.read() if content is not None else b""
        if key is not None:
            yield key, parts


def _sat2cap_candidates(shards: list[Path]) -> Iterator[Candidate]:
    for shard in shards:
        for key, parts in _shard_samples(shard):
            meta = _json(parts.get("metadata.json"))
            yield Candidate(
                id=key,
                lat=meta.get("latitude", meta.get("lat")),
                lon=meta.get("longitude", meta.get("lon")),
                values={
                    "satellite": _member(parts, "overhead.jpg", shard, key),
                    "ground": _member(parts, "groundlevel.jpg", shard, key),
                },
            )


def _json(data: bytes | None) -> dict:
    try:
        value = json.loads(data) if data else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _member(parts: dict[str, bytes], suffix: str, shard: Path, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        if suffix not in parts:
            raise MissingFile(f"missing file: {key}.{suffix} in {shard.name}")
        return parts[suffix]

    return read


def import_sat2cap(options: Sat2CapOptions) -> ImportReport:
    """Import webdataset shards of (overhead, ground-level, metadata) samples."""
    root = Path(_required(options.shards, "shards"))
    shards = sorted(root.glob("*.tar")) if root.is_dir() else [root]
    if not shards or not all(s.is_file() for s in shards):
        raise GeobindError(f"no .tar shards at {root}")
    return import_pairs(
        _required(options.out, "out"),
        _sat2cap_candidates(shards),
        _modalities("satellite", "ground"),
        rejects=options.rejects,
        progress=_progress("sat2cap"),
    )


# -- SoundingEarth -----------------------------------------------------------------------
@dataclass
class SoundingEarthOptions:
    """Import a SoundingEarth-style layout into a satellite+audio dataset."""

    metadata: str = opt("", "CSV with one row per sample")
    images: str = opt("", "folder of satellite images named ID.jpg")
    audio: str = opt("", "folder of audio named ID.mp3 / ID.wav / ID.flac")
    out: str = opt("", "the Lance dataset to create or append to")
    id_column: str = "key"
    lat_column: str = "latitude"
    lon_column: str = "longitude"
    image_suffixes: list[str] = field(default_factory=lambda: [".jpg", ".jpeg", ".png"])
    audio_suffixes: list[str] = field(default_factory=lambda: [".mp3", ".wav", ".flac", ".ogg"])
    keep: list[str] = field(
        default_factory=list,
        metadata={"help": "a metadata column to keep beside the modalities (repeatable)"},
    )
    rejects: str | None = opt(None, "JSON-lines file listing rejected rows")


def _find(folder: Path, key: str, suffixes: list[str]) -> Path:
    for suffix in suffixes:
        if (folder / f"{key}{suffix}").is_file():
            return folder / f"{key}{suffix}"
    return folder / f"{key}{suffixes[0]}"  # reported as missing when read


def import_soundingearth(options: SoundingEarthOptions) -> ImportReport:
    """Import satellite images and recordings keyed by a metadata CSV."""
    table = _read_table(Path(_required(options.metadata, "metadata")))
    images, audio = (
        Path(_required(options.images, "images")),
        Path(_required(options.audio, "audio")),
    )
    for name in (options.id_column, options.lat_column, options.lon_column):
        _need_column(table, name, options.metadata)
    modalities = _modalities("satellite", "audio")
    kept = _kept(table, options.keep, modalities, options.metadata)
    rows = table.to_pylist()

    def candidates() -> Iterator[Candidate]:
        for row in rows:
            key = str(row[options.id_column])
            yield Candidate(
                id=key,
                lat=row[options.lat_column],
                lon=row[options.lon_column],
                values={
                    "satellite": _file(_find(images, key, options.image_suffixes)),
                    "audio": _file(_find(audio, key, options.audio_suffixes)),
                },
                extra={f.name: row[f.name] for f in kept},
            )

    return import_pairs(
        _required(options.out, "out"),
        candidates(),
        modalities,
        extra={f.name: f for f in kept},
        rejects=options.rejects,
        progress=_progress("soundingearth"),
    )


# -- generic tables ----------------------------------------------------------------------
@dataclass
class TableOptions:
    """Import a CSV or Parquet table; ``columns`` maps modalities to table columns, and every
    other column is kept as it is (labels such as ``landcover``, numbers a modality reads)."""

    table: str = ""
    out: str = opt("", "the Lance dataset to create or append to")
    columns: list[str] = field(
        default_factory=list,
        metadata={"help": "MODALITY=COLUMN, repeatable (e.g. satellite=tile_path)"},
    )
    id: str = "id"
    lat: str = "lat"
    lon: str = "lon"
    split: str | None = opt(None, "a column of train/val/test; else a stable hash of the id")
    keep: list[str] = field(
        default_factory=list,
        metadata={"help": "keep only these other columns (repeatable; default: every one)"},
    )
    root: str | None = opt(None, "where relative paths resolve (default: the table's folder)")
    rejects: str | None = opt(None, "JSON-lines file listing rejected rows")
    encoding: str = opt("utf-8", "the text encoding of a CSV table (e.g. latin-1)")


def import_table(options: TableOptions) -> ImportReport:
    """Import rows of a table whose modality columns hold file paths, text or numbers."""
    path = Path(_required(options.table, "table"))
    table = _read_table(path, options.encoding)
    mapping = _mapping(options.columns)
    modalities = _modalities(*mapping)
    used = [options.id, options.lat, options.lon, *mapping.values()] + (
        [options.split] if options.split else []
    )
    for name in used:
        _need_column(table, name, options.table)
    others = options.keep or [c for c in table.column_names if c not in used]
    kept = _kept(table, others, modalities, options.table)
    root = Path(options.root) if options.root else path.parent

    def value(modality: Any, cell: Any, column: str) -> Any:
        if modality.storage == "string":
            return _plain(cell, column)
        return _file(root / str(cell)) if cell is not None else _file(root / "<empty cell>")

    def candidates() -> Iterator[Candidate]:
        for row in table.to_pylist():
            yield Candidate(
                id=str(row[options.id]) if row[options.id] is not None else None,
                lat=row[options.lat],
                lon=row[options.lon],
                split=row[options.split] if options.split else None,
                values={m: value(modalities[m], row[c], c) for m, c in mapping.items()},
                extra={f.name: row[f.name] for f in kept},
            )

    return import_pairs(
        _required(options.out, "out"),
        candidates(),
        modalities,
        extra={f.name: f for f in kept},
        rejects=options.rejects,
        progress=_progress(path.name),
    )


def _plain(cell: Any, column: str) -> Any:
    """A table cell as the text a string modality stores: text, or a number written out."""
    if isinstance(cell, (str, bytes)):  # bytes: a CSV column not all UTF-8, decoded per row
        return cell
    if isinstance(cell, (int, float, decimal.Decimal)) and not isinstance(cell, bool):
        return str(cell)

    def bad() -> str:  # read when the row is checked, so the row is rejected, not the import
        what = "an empty cell" if cell is None else f"a {type(cell).__name__}"
        raise InputError(f"column {column!r}: expected text or a number, got {what}")

    return bad


def _kept(table: Any, names: list[str], modalities: dict[str, Any], source: str) -> list[Any]:
    """The Arrow fields (with their metadata) of table columns kept beside the modalities."""
    taken = {"id", "lat", "lon", "split", *modalities}
    for name in names:
        _need_column(table, name, source)
        if name in taken:
            raise ConfigError(
                f"{source}: column {name!r} would overwrite the dataset's own {name!r}: "
                f"rename it in the table, or keep only other columns (--keep)"
            )
    return [table.schema.field(name) for name in names]


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        modality, sep, column = pair.partition("=")
        if not sep or not modality or not column:
            raise ConfigError(f"columns: expected MODALITY=COLUMN, got {pair!r}")
        mapping[modality.strip()] = column.strip()
    if not mapping:
        raise ConfigError("columns: name at least one MODALITY=COLUMN (e.g. satellite=tile)")
    return mapping


def _read_table(path: Path, encoding: str = "utf-8") -> Any:
    """A CSV or Parquet table. In a CSV only an empty cell is missing: "NaN" stays a number
    (so a row is rejected as NaN, not as missing) and "NA" stays text."""
    import codecs

    import pyarrow.csv
    import pyarrow.parquet

    if not path.is_file():
        raise GeobindError(f"table not found: {path}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"encoding: unknown text encoding {encoding!r}") from None
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pyarrow.parquet.read_table(path)
        return pyarrow.csv.read_csv(
            path,
            read_options=pyarrow.csv.ReadOptions(encoding=encoding),
            convert_options=pyarrow.csv.ConvertOptions(null_values=[""]),
        )
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise GeobindError(f"cannot read table {path}: {exc}") from None


def _need_column(table: Any, name: str, source: str) -> None:
    if name not in table.column_names:
        raise ConfigError(
            f"{source}: no column {name!r} (columns: {', '.join(table.column_names)})"
        )


def _required(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(f"option {name!r} is required")
    return value
