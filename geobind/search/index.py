"""Nearest-neighbour search over a dataset's satellite tiles, embedded by a space's anchor.

Layout::

    SPACE/index/<dataset stem>.lance   id, lat, lon, vector (FixedSizeList<float32>[dim])
    SPACE/index/<dataset stem>.json    what it was built from (a readable copy)

Every query modality lands in the anchor's space, so one table of anchor embeddings answers
text, audio, ground and satellite queries alike. The table records (in its Arrow schema
metadata, and in the JSON beside it) the dataset path and version and the sha256 of the anchor
weights; searching it with a space whose anchor has other weights is refused, since its vectors
would then live in another space.

A rebuild writes a new Lance version of the same table (the first build, a new table renamed
into place): Lance's commit switches readers to it atomically, a reader holding the previous
version finishes its query on it, and one holding an older, collected version reopens the table
and asks again. Builds of one index take turns (a lock file beside it).

Small tables are searched exactly (one matmul and a top-k in torch). From
``min_rows_for_ann`` rows on, the build adds a Lance ``IVF_HNSW_SQ`` vector index with the
``dot`` metric (the vectors are unit length, so dot is cosine without Lance's normalising
pass), and search asks it for candidates, then scores those candidates exactly so every
printed score is a true cosine similarity.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from geobind.data.pairs import lance_reason, open_pairs, read_values
from geobind.encoders.weights import atomic_write, temporary_name
from geobind.errors import GeobindError, InputError, writing
from geobind.plugins import get_registry
from geobind.space import SpaceError, input_list

if TYPE_CHECKING:
    import lance
    import pyarrow as pa
    import torch

    from geobind.space import Space

__all__ = [
    "ANN_INDEX_TYPE",
    "ANN_METRIC",
    "DEFAULT_MIN_ROWS_FOR_ANN",
    "INDEX_DIR",
    "SearchIndex",
    "add_vector_index",
    "build_index",
    "dataset_key",
    "embed_queries",
    "embedded_batches",
    "exact_topk",
    "find_index",
    "list_indexes",
    "index_path",
    "open_index",
    "search",
    "write_vectors",
]

T = TypeVar("T")

INDEX_DIR = "index"
DEFAULT_MIN_ROWS_FOR_ANN = 10_000
ANN_INDEX_TYPE = "IVF_HNSW_SQ"
ANN_METRIC = "dot"
#: Rows per IVF partition. Each partition is its own HNSW graph: larger partitions build
#: slower but are probed fewer at a time (at 1M x 64: 122 partitions built in ~4 min and
#: answered in ~95 ms a query, 16 partitions in ~8 min and ~40 ms; benchmarks/index_search.py).
TARGET_PARTITION_SIZE = 32_768
#: How many candidates the vector index returns per result asked for; the candidates are then
#: scored exactly, which repairs most of what scalar quantisation gets wrong.
CANDIDATES_PER_RESULT = 2
METADATA_KEY = b"geobind.index"
FORMAT = 1
#: Versions of an index table kept after a rebuild: the new one (its rows, then its vector
#: index) and the one it replaced, which readers that opened it before finish their query on.
KEEP_VERSIONS = 3


# ---- building ---------------------------------------------------------------------------------
def index_path(space: Space, dataset_uri: str | Path) -> Path:
    """Where the index of ``dataset_uri`` lives in ``space``: ``SPACE/index/<stem>.lance``."""
    return space.path / INDEX_DIR / f"{Path(str(dataset_uri).rstrip('/')).stem}.lance"


def dataset_key(dataset_uri: str | Path) -> str:
    """How an index names its dataset: an absolute path, or an object-store URI as given."""
    text = str(dataset_uri)
    return text if "://" in text else str(Path(text).resolve())


def build_index(
    space: Space,
    dataset_uri: str | Path,
    out: str | Path | None = None,
    batch_size: int = 256,
    min_rows_for_ann: int = DEFAULT_MIN_ROWS_FOR_ANN,
    progress: bool = False,
) -> Path:
    """Embed every satellite tile of a dataset with the space's anchor into a searchable table.

    A rebuild commits a new version of the table, so readers see the old index or the new
    one, whole (see the module doc). A vector index is added once the table has
    ``min_rows_for_ann`` rows; smaller tables are searched exactly.

    :returns: the path of the index table.
    """
    ds = open_pairs(dataset_uri)
    anchor = space.anchor
    encoder = space.encoder(anchor)
    column = encoder.modality.column
    if column not in ds.schema.names:
        raise GeobindError(
            f"dataset {dataset_uri} has no {column!r} column to index "
            f"(it has: {', '.join(ds.schema.names)})"
        )
    rows = ds.count_rows()
    if rows == 0:
        raise GeobindError(f"dataset {dataset_uri} is empty: nothing to index")
    out = Path(out) if out is not None else index_path(space, dataset_uri)
    meta = {
        "format": FORMAT,
        "dataset": dataset_key(dataset_uri),
        "dataset_version": ds.version,
        "column": column,
        "anchor": anchor,
        "anchor_sha256": space.entry(anchor).sha256,
        "rows": rows,
        "dim": encoder.embed_dim,
        "min_rows_for_ann": min_rows_for_ann,
    }
    started = time.perf_counter()
    batches = embedded_batches(ds, encoder, column, batch_size, progress)

    def finish(ds: lance.LanceDataset) -> None:
        if rows >= min_rows_for_ann:
            meta["vector_index"] = add_vector_index(ds)
        else:
            meta["vector_index"] = None

    _commit_table(
        out, lambda uri, mode: write_vectors(uri, batches, encoder.embed_dim, meta, mode), finish
    )
    meta["build_seconds"] = round(time.perf_counter() - started, 3)
    _write_json(out, meta)
    return out


def embedded_batches(
    ds: lance.LanceDataset, encoder: Any, column: str, batch_size: int, progress: bool
) -> Iterator[tuple[list, list, list, torch.Tensor]]:
    """(ids, lats, lons, unit vectors) for consecutive row ranges of the dataset."""
    from tqdm import tqdm

    rows = ds.count_rows()
    with tqdm(total=rows, desc="index", unit=" tiles", disable=not progress) as bar:
        for start in range(0, rows, batch_size):
            picked = list(range(start, min(rows, start + batch_size)))
            base = ds.take(picked, columns=["id", "lat", "lon"])
            vectors = encoder.embed(read_values(ds, column, picked), batch_size=batch_size)
            bar.update(len(picked))
            yield (
                base.column("id").to_pylist(),
                base.column("lat").to_pylist(),
                base.column("lon").to_pylist(),
                vectors,
            )


def index_schema(dim: int, meta: dict | None = None) -> pa.Schema:
    """The Arrow schema of an index table; ``meta`` is kept in its metadata."""
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
    ]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta or {})})


def write_vectors(
    uri: str | Path, batches: Any, dim: int, meta: dict | None = None, mode: str = "create"
) -> lance.LanceDataset:
    """Write ``(ids, lats, lons, vectors [n, dim])`` batches as an index table, streaming
    (``mode="overwrite"``: as a new version of an existing table)."""
    import numpy as np
    import pyarrow as pa

    schema = index_schema(dim, meta)

    def records() -> Iterator[pa.RecordBatch]:
        for ids, lats, lons, vectors in batches:
            flat = np.ascontiguousarray(_numpy(vectors), dtype=np.float32).reshape(-1)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(ids, pa.string()),
                    pa.array(lats, pa.float64()),
                    pa.array(lons, pa.float64()),
                    pa.FixedSizeListArray.from_arrays(pa.array(flat), dim),
                ],
                schema=schema,
            )

    reader = pa.RecordBatchReader.from_batches(schema, records())
    return _lance().write_dataset(reader, str(uri), schema=schema, mode=mode)


def ann_params(rows: int, target_partition_size: int = TARGET_PARTITION_SIZE) -> dict:
    """Lance ``create_index`` arguments for a table of ``rows`` unit vectors."""
    # at least one partition: Lance's k-means needs partitions <= rows, and tiny tables (as in
    # tests) would otherwise ask for zero
    partitions = max(1, min(4096, rows // max(1, target_partition_size)))
    return {"index_type": ANN_INDEX_TYPE, "metric": ANN_METRIC, "num_partitions": partitions}


def add_vector_index(
    ds: lance.LanceDataset, target_partition_size: int = TARGET_PARTITION_SIZE
) -> dict:
    """Add the vector index to an index table; returns what was built (for the metadata)."""
    params = ann_params(ds.count_rows(), target_partition_size)
    started = time.perf_counter()
    ds.create_index("vector", replace=True, **params)
    return {**params, "seconds": round(time.perf_counter() - started, 3)}


def _commit_table(out: Path, write: Any, finish: Any) -> None:
    """Write the index at ``out`` as a new version, or as a new table renamed into place.

    ``write(uri, mode)`` writes the rows and ``finish(ds)`` adds what follows (the vector
    index). Afterwards only the last :data:`KEEP_VERSIONS` versions are kept, and files of a
    failed write are removed.
    """
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / ".lock"):
        current = _open_table(out)
        if current is None:
            _create_table(out, write, finish)
            return
        try:
            with writing(out):
                finish(write(out, "overwrite"))
        finally:  # after a failure too: its files go, the table stays at its last version
            _lance().dataset(str(out)).cleanup_old_versions(
                retain_versions=KEEP_VERSIONS, delete_unverified=True
            )


def _create_table(out: Path, write: Any, finish: Any) -> None:
    """A first build: written under a temporary name, then renamed into place whole."""
    tmp = temporary_name(out)
    try:
        with writing(out):
            finish(write(tmp, "create"))
        if out.exists():  # a folder that is no table (a crashed first build): nothing to keep
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_table(path: Path) -> lance.LanceDataset | None:
    """The Lance table at ``path``, or None when there is none."""
    if not path.is_dir():
        return None
    try:
        return _lance().dataset(str(path))
    except (ValueError, OSError):
        return None


def _write_json(out: Path, meta: dict) -> None:
    atomic_write(
        out.with_suffix(".json"), json.dumps({**meta, "table": out.name}, indent=2).encode()
    )


# ---- opening ----------------------------------------------------------------------------------
@dataclass
class SearchIndex:
    """An opened index table: its metadata, and exact or approximate top-k search."""

    path: Path
    meta: dict
    ds: Any = field(repr=False)
    _vectors: Any = field(default=None, repr=False)

    @functools.cached_property
    def rows(self) -> int:
        """Rows in the table."""
        return self.ds.count_rows()

    @property
    def dim(self) -> int:
        """The dimension of the vectors."""
        return self.ds.schema.field("vector").type.list_size

    @functools.cached_property
    def ann(self) -> bool:
        """Whether the table carries a vector index (searched approximately)."""
        return self.ds.has_index  # read once: it lists the indexes from the manifest

    @property
    def dataset(self) -> str:
        """The dataset the index was built from."""
        return self.meta.get("dataset", "")

    def built_from(self, dataset_uri: str | Path, version: int) -> bool:
        """Whether the index holds this very version of ``dataset_uri``."""
        return (
            self.meta.get("dataset") == dataset_key(dataset_uri)
            and self.meta.get("dataset_version") == version
        )

    def vectors(self) -> torch.Tensor:
        """Every vector, ``[rows, dim]`` float32, in row order (read once)."""
        return self._read(self._read_vectors)

    def _read_vectors(self) -> torch.Tensor:
        import numpy as np
        import torch

        if self._vectors is None:
            column = self.ds.to_table(columns=["vector"]).column("vector").combine_chunks()
            flat = column.flatten().to_numpy(zero_copy_only=False)  # flatten honours slicing
            self._vectors = torch.from_numpy(np.array(flat, np.float32).reshape(-1, self.dim))
        return self._vectors

    def table(self, columns: Sequence[str] = ("id", "lat", "lon")) -> dict[str, list]:
        """Whole columns, in row order."""
        return self._read(lambda: self.ds.to_table(columns=list(columns)).to_pydict())

    def reopen(self) -> None:
        """Read the newest version of the table, as a rebuild left it; it must still hold
        vectors of the anchor this index was opened for."""
        ds = _lance().dataset(str(self.path))
        meta = _metadata(ds, self.path)
        if meta.get("anchor_sha256") != self.meta.get("anchor_sha256"):
            raise SpaceError(
                f"index {self.path} was rebuilt from other anchor weights while it was read: "
                f"open it again with its space"
            )
        self.ds, self.meta, self._vectors = ds, meta, None
        for cached in ("rows", "ann"):
            self.__dict__.pop(cached, None)

    def _read(self, read: Callable[[], T]) -> T:
        """``read()``, once more on the newest version if a rebuild collected the files of the
        version this handle holds: the answer comes from one whole version, old or new."""
        try:
            return read()
        except (OSError, ValueError) as exc:
            if "not found" not in str(exc).lower():
                raise
        self.reopen()
        return read()

    def query(
        self,
        queries: torch.Tensor,
        top: int = 10,
        exact: bool | None = None,
        candidates: int = CANDIDATES_PER_RESULT,
        **nearest: Any,
    ) -> list[list[dict]]:
        """The ``top`` rows nearest each query vector: dicts of id, lat, lon, score.

        :param exact: force exact search (True) or the vector index (False); by default the
            index is used when the table has one.
        :param candidates: with the index, fetch ``top * candidates`` rows and keep the
            ``top`` best by exact score.
        :param nearest: further Lance nearest-query options (``nprobes``, ``ef``...).
        """
        if int(top) < 1:
            raise InputError(f"top must be >= 1, got {top}")
        queries = _as_queries(queries, self.dim)

        def answer() -> list[list[dict]]:
            most = min(int(top), self.rows)
            if (not self.ann) if exact is None else exact:
                return self._exact(queries, most)
            return self._approximate(queries, most, candidates, nearest)

        return self._read(answer)

    def _exact(self, queries: torch.Tensor, top: int) -> list[list[dict]]:
        scores, rows = exact_topk(self.vectors(), queries, top)
        picked = sorted({int(r) for r in rows.reshape(-1)})
        base = self.ds.take(picked, columns=["id", "lat", "lon"]).to_pydict()
        where = {row: i for i, row in enumerate(picked)}
        return [
            [_hit(base, where[int(r)], float(s)) for s, r in zip(srow, rrow)]
            for srow, rrow in zip(scores, rows)
        ]

    def _approximate(
        self, queries: torch.Tensor, top: int, candidates: int, nearest: dict
    ) -> list[list[dict]]:
        import numpy as np
        import torch

        if not self.ann:
            raise SpaceError(f"index {self.path} has no vector index: search it exactly")
        found = self.ds.to_table(
            columns=["id", "lat", "lon", "vector"],
            disable_scoring_autoprojection=True,
            nearest={
                "column": "vector",
                "q": queries.numpy(),
                "k": min(self.rows, top * max(1, candidates)),
                **nearest,
            },
        )
        # straight from Arrow buffers: to_pydict on the vectors costs more than the search
        which = torch.from_numpy(found.column("query_index").to_numpy().astype(np.int64))
        flat = found.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = torch.from_numpy(np.array(flat, np.float32).reshape(-1, self.dim))
        scores = (vectors * queries[which]).sum(1).tolist()
        base = {c: found.column(c).to_pylist() for c in ("id", "lat", "lon")}
        out: list[list[dict]] = [[] for _ in range(len(queries))]
        for i, q in enumerate(which.tolist()):
            out[q].append(_hit(base, i, scores[i]))
        return [sorted(hits, key=lambda h: -h["score"])[:top] for hits in out]


def _hit(columns: dict, i: int, score: float) -> dict:
    return {
        "id": columns["id"][i],
        "lat": columns["lat"][i],
        "lon": columns["lon"][i],
        "score": score,
    }


def exact_topk(
    gallery: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 262_144
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` by dot product: ``(scores, rows)``, each ``[queries, k]``, best first.

    The gallery is scanned in chunks so a large one never builds a full score matrix.
    """
    import torch

    best_s: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, gallery.shape[0], chunk):
        scores = queries @ gallery[start : start + chunk].T
        s, i = scores.topk(min(k, scores.shape[1]), dim=1)
        i = i + start
        if best_s is not None and best_i is not None:
            s, j = torch.cat([best_s, s], 1).topk(k, dim=1)
            i = torch.cat([best_i, i], 1).gather(1, j)
        best_s, best_i = s, i
    assert best_s is not None and best_i is not None
    return best_s, best_i


def _as_queries(queries: Any, dim: int) -> torch.Tensor:
    import torch

    queries = torch.as_tensor(queries, dtype=torch.float32).detach().cpu()
    if queries.ndim == 1:
        queries = queries[None]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise InputError(f"query vectors must be [n, {dim}], got {list(queries.shape)}")
    if queries.shape[0] == 0:
        raise InputError("no query vectors")
    return queries.contiguous()


def list_indexes(space: Space) -> list[Path]:
    """The index tables in ``SPACE/index/``, oldest first by their last committed version."""

    def committed(table: Path) -> float:
        versions = table / "_versions"  # each rebuild or append adds a manifest here
        return (versions if versions.is_dir() else table).stat().st_mtime

    return sorted((space.path / INDEX_DIR).glob("*.lance"), key=lambda p: (committed(p), p.name))


def find_index(
    space: Space, index: str | Path | None = None, data: str | Path | None = None
) -> Path:
    """The index table to search: ``index`` itself (a path, or a name in ``SPACE/index/``),
    the one built from ``data``, or else the space's newest index (:func:`list_indexes`);
    an error says how to build one when there is none."""
    if index is not None:
        path = Path(index)
        named = space.path / INDEX_DIR / f"{path.name.removesuffix('.lance')}.lance"
        if not path.is_dir() and path.parent == Path(".") and named.is_dir():
            path = named  # a name, such as the 'mosaic' of SPACE/index/mosaic.lance
    elif data is not None:
        path = index_path(space, data)
    else:
        built = list_indexes(space)
        if not built:
            raise SpaceError(
                f"space {space.path} has no index yet: run 'geobind index build "
                f"{space.path} --data DATASET'"
            )
        path = built[-1]  # the newest; the CLI names the others
    if not path.is_dir():
        if data:
            hint = f" (run 'geobind index build {space.path} --data {data}')"
        else:
            names = ", ".join(p.stem for p in list_indexes(space)) or "none yet"
            hint = f" (the indexes of space {space.path}: {names})"
        raise SpaceError(f"no index at {path}{hint}")
    return path


def open_index(
    space: Space, index: str | Path | None = None, data: str | Path | None = None
) -> SearchIndex:
    """Open an index of ``space`` and check it was built from this space's anchor weights."""
    path = find_index(space, index, data)
    ds = _open_index_table(path)
    meta = _metadata(ds, path)
    expected = space.entry(space.anchor).sha256
    if meta.get("anchor_sha256") != expected:
        raise SpaceError(
            f"index {path} was built from anchor weights sha256 "
            f"{str(meta.get('anchor_sha256'))[:12]}…, but space {space.path} holds "
            f"{expected[:12]}…: rebuild it with 'geobind index build {space.path} --data "
            f"{meta.get('dataset', 'DATASET')}'"
        )
    return SearchIndex(path, meta, ds)


def _open_index_table(path: Path) -> lance.LanceDataset:
    """The newest version of an index table (asked twice if a rebuild collected the version
    named newest between reading its name and opening it)."""
    for attempt in (1, 2):
        try:
            return _lance().dataset(str(path))
        except (ValueError, OSError) as exc:
            if attempt == 2 or "not found" not in str(exc).lower():
                raise SpaceError(
                    f"not an index table: {path} ({lance_reason(exc, path)})"
                ) from None
    raise AssertionError("unreachable")


def _metadata(ds: lance.LanceDataset, path: Path) -> dict:
    raw = (ds.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise SpaceError(f"{path} is not a geobind index (no {METADATA_KEY.decode()} metadata)")
    return json.loads(raw)


# ---- searching --------------------------------------------------------------------------------
def embed_queries(space: Space, modality: str, values: Any) -> torch.Tensor:
    """Unit embeddings of query values; a bad value is named in the error."""
    space.entry(modality)  # an unknown modality names what the space holds
    values = input_list(values, get_registry().modality(modality))
    if not values:
        raise InputError(f"search: no {modality} query given")
    try:
        return space.embed(modality, values)
    except InputError:
        if len(values) == 1:
            _reraise_naming(values[0])
        for value in values:  # find which one, and name it
            try:
                space.embed(modality, [value])
            except InputError:
                _reraise_naming(value)
        raise


def _reraise_naming(value: Any) -> None:
    import sys

    exc = sys.exc_info()[1]
    if isinstance(value, (str, Path)) and Path(value).is_file():
        raise InputError(f"{value}: {exc}") from None
    raise exc  # type: ignore[misc]


def search(
    space: Space,
    modality: str,
    values: Any,
    top: int = 10,
    index: str | Path | SearchIndex | None = None,
    data: str | Path | None = None,
) -> list[list[dict]]:
    """Tiles nearest each query: one list per query of dicts ``id, lat, lon, score``.

    :param modality: what the queries are (``text``, ``audio``, ``ground``, ``satellite``...).
    :param values: one query or a list: strings, file paths, or encoded bytes.
    :param index: an opened index, an index table path, or ``None`` to use ``data``'s index
        (or the space's only index).
    """
    opened = index if isinstance(index, SearchIndex) else open_index(space, index, data)
    queries = embed_queries(space, modality, values)
    return opened.query(queries, top)


def _numpy(vectors: Any) -> Any:
    return vectors.detach().cpu().numpy() if hasattr(vectors, "detach") else vectors


def _lance() -> Any:
    import lance

    return lance
