"""The floor: how far simple, non-learned features and one linear map get on the same pairs.

A learned number means little alone. For every pair of modalities a space was trained on, the
floor turns each side's raw values into simple features (each modality's own
:attr:`~geobind.Modality.features`: colour histograms for images, band energies for sound, a
bag of words for text; see :mod:`geobind.encoders.features`) and fits linear CCA between the
two sides on the training split of the stage's own dataset. Both sides are projected into the
shared CCA space (each canonical direction weighted by the square root of its correlation)
and ranked by cosine similarity, exactly as learned embeddings are. A learned space that does
not clearly beat its floor has learned no more than colour and loudness statistics.

CCA is written here, a dozen lines of linear algebra, rather than taken from scikit-learn:
scikit-learn's ``CCA`` is an iterative, unregularised NIPALS solver, slow at these sizes and
unstable on histogram features, whose covariance is singular; this is the closed-form,
ridge-regularised solution.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from geobind.data.pairs import data_identity, open_pairs, read_inputs
from geobind.data.reader import split_rows
from geobind.encoders.features import Features
from geobind.eval.retrieval import ranks, ratio_interval, recall_metrics
from geobind.plugins import get_registry
from geobind.world.oracle import oracle_recall_at_k

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CCA",
    "FIT_ROWS",
    "Floor",
    "fit_floor",
    "fit_sample",
    "fit_space_floor",
    "floor_table",
    "trained_pairs",
]

#: At most this many training pairs fit a floor (a seeded sample of the training split):
#: linear CCA over a few hundred feature dimensions has settled well before that.
FIT_ROWS = 3000


@dataclass
class CCA:
    """Ridge-regularised linear CCA between two feature sets, fitted in closed form.

    :param dims: canonical directions kept (at most the smaller feature dimension).
    :param ridge: added to each covariance's diagonal, relative to its mean variance.
    """

    dims: int = 32
    ridge: float = 1e-3
    correlations: Any = field(default=None, init=False, repr=False)

    def fit(self, x: np.ndarray, y: np.ndarray) -> CCA:
        """Fit on paired rows ``x[i]``, ``y[i]``."""
        import numpy as np

        if len(x) != len(y) or len(x) < 2:
            raise ValueError(
                f"CCA needs the same number (at least 2) of rows on both sides, "
                f"got {len(x)} and {len(y)}"
            )
        self._mean = (x.mean(0), y.mean(0))
        xc, yc = x - self._mean[0], y - self._mean[1]
        wx, wy = self._whitener(xc), self._whitener(yc)
        u, s, vt = np.linalg.svd(wx @ (xc.T @ yc / len(x)) @ wy)
        k = min(self.dims, len(s))
        self.correlations = np.clip(s[:k], 0.0, 1.0)
        self._proj = (wx @ u[:, :k], wy @ vt.T[:, :k])
        return self

    def _whitener(self, centred: np.ndarray) -> np.ndarray:
        import numpy as np

        cov = centred.T @ centred / len(centred)
        cov += self.ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
        values, vectors = np.linalg.eigh(cov)
        return vectors @ np.diag(np.clip(values, 1e-12, None) ** -0.5) @ vectors.T

    def transform(self, side: int, features: np.ndarray) -> torch.Tensor:
        """Unit vectors in the shared space of ``features`` from side 0 (x) or 1 (y)."""
        import numpy as np

        z = (features - self._mean[side]) @ self._proj[side]
        weighted = z * np.sqrt(self.correlations)  # strong directions count more
        return torch.nn.functional.normalize(torch.from_numpy(weighted).float(), dim=-1)


def transform_rows(features: Features, values: Sequence[Any], threads: int = 0) -> np.ndarray:
    """``features.transform`` of ``values`` in chunks on ``threads`` threads (default: one per
    CPU core, at most 4), stacked in order.

    Decoding images and sounds (PIL, libsndfile) and numpy's FFTs release the GIL, so threads
    share the cores without copying values into worker processes; the floor's features of
    3,000 sounds take about half the time on two cores.
    """
    import numpy as np

    values = list(values)
    threads = threads or min(4, os.cpu_count() or 1)
    if threads < 2 or len(values) < 2 * 64:
        return features.transform(values)
    size = -(-len(values) // (4 * threads))  # a few chunks per thread evens out the load
    chunks = [values[i : i + size] for i in range(0, len(values), size)]
    with ThreadPoolExecutor(threads, thread_name_prefix="floor-features") as pool:
        return np.concatenate(list(pool.map(features.transform, chunks)))


@dataclass
class Floor:
    """A fitted floor for one pair of modalities: each side's features and their CCA."""

    modalities: tuple[str, str]
    features: tuple[Features, Features]
    cca: CCA
    fitted_on: str = ""
    rows: int = 0

    def embed(self, modality: str, values: Sequence[Any]) -> torch.Tensor:
        """Unit vectors of raw ``values`` of ``modality`` (either of the pair)."""
        if modality not in self.modalities:
            raise KeyError(f"this floor is for {self.modalities}, not {modality!r}")
        side = self.modalities.index(modality)
        return self.cca.transform(side, transform_rows(self.features[side], values))


def fit_floor(
    modalities: tuple[str, str],
    values: tuple[Sequence[Any], Sequence[Any]],
    make_features: tuple[Callable[[], Features], Callable[[], Features]],
    fitted_on: str = "",
    dims: int = 32,
) -> Floor:
    """Fit each side's features, then CCA between them, on paired training values."""
    features = (make_features[0]().fit(values[0]), make_features[1]().fit(values[1]))
    x, y = transform_rows(features[0], values[0]), transform_rows(features[1], values[1])
    return Floor(modalities, features, CCA(dims=dims).fit(x, y), fitted_on, len(values[0]))


def trained_pairs(space: Any, near: str | None = None) -> list[tuple[str, str, str]]:
    """``(student, teacher, dataset)`` for each stage of the space that trained on data.

    A dataset no longer where the stage recorded it is looked for by its name beside ``near``
    (the dataset being evaluated: a project folder moved as a whole), and taken if it is the
    same data (:func:`geobind.data.pairs.data_identity`).
    """
    pairs, seen = [], set()
    for name, entry in space.entries.items():
        partner = (entry.aligned_to or {}).get("modality")
        recipe = entry.recipe or {}
        data = recipe.get("data")
        if not partner or not data or frozenset((name, partner)) in seen:
            continue
        seen.add(frozenset((name, partner)))
        pairs.append((name, partner, _moved(str(data), recipe.get("data_identity"), near)))
    return pairs


def _moved(data: str, identity: str | None, near: str | None) -> str:
    if near is None or identity is None or "://" in data or Path(data).exists():
        return data
    beside = Path(near).parent / Path(data).name
    return str(beside) if beside.is_dir() and data_identity(str(beside)) == identity else data


def fit_sample(rows: Sequence[int], fit_rows: int = FIT_ROWS, seed: int = 0) -> list[int]:
    """The training rows a floor is fitted on: all of ``rows``, or a seeded sample of
    ``fit_rows`` of them in their order."""
    import numpy as np

    if len(rows) <= fit_rows:
        return list(rows)
    rng = np.random.default_rng(seed)
    return sorted(int(r) for r in rng.choice(rows, fit_rows, replace=False))


def fit_space_floor(
    student: str, teacher: str, dataset_uri: str, fit_rows: int = FIT_ROWS, seed: int = 0
) -> Floor | str:
    """The floor of one trained pair, fitted on (a seeded sample of) its dataset's training
    split; a string saying why when it cannot be fitted."""
    registry = get_registry()
    mods = [registry.modality(m) for m in (student, teacher)]
    first, second = mods[0].features, mods[1].features
    if first is None or second is None:
        missing = [m.name for m in mods if m.features is None]
        return f"no simple features for {', '.join(missing)}"
    try:
        ds = open_pairs(dataset_uri)
    except Exception as exc:  # the stage's data may have moved since it trained
        return f"its training data is not readable ({exc})"
    rows = fit_sample(split_rows(ds, "train"), fit_rows, seed)
    if len(rows) < 10:
        return f"only {len(rows)} training rows in {dataset_uri}"
    values = (read_inputs(ds, mods[0].inputs, rows), read_inputs(ds, mods[1].inputs, rows))
    return fit_floor((student, teacher), values, (first, second), dataset_uri)


def floor_table(
    space: Any,
    dataset_uri: str,
    rows: Sequence[int],
    ks: Sequence[int],
    convention: str = "standard",
    learned: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Retrieval of each trained pair through its floor, on ``rows`` of the dataset.

    Returns ``{"retrieval": [rows like retrieval_table's], "skipped": {pair: why}}``; pairs
    whose columns the dataset lacks are left out. Given the space's own embeddings of the same
    rows (``learned``), each row also holds ``x_floor_95``: for each ``R@k``, the 95% interval
    of learned R@k over floor R@k (:func:`~geobind.eval.retrieval.ratio_interval`; ``None``
    where the floor has no hit).
    """
    ds = open_pairs(dataset_uri)
    registry, out, skipped = get_registry(), [], {}
    for student, teacher, data in trained_pairs(space, near=dataset_uri):
        modalities = [registry.modality(m) for m in (student, teacher)]
        if not all(c in ds.schema.names for m in modalities for c in m.input_columns):
            continue
        floor = fit_space_floor(student, teacher, data)
        if isinstance(floor, str):
            skipped[f"{student} <-> {teacher}"] = floor
            continue
        z = {m.name: floor.embed(m.name, read_inputs(ds, m.inputs, rows)) for m in modalities}
        for q, g in ((student, teacher), (teacher, student)):
            rank = ranks(z[q], z[g])
            row = {
                "query": q,
                "gallery": g,
                "fitted_on": data,
                "fit_rows": floor.rows,
                **recall_metrics(rank, ks, convention),
            }
            if learned is not None and q in learned and g in learned:
                mine = ranks(learned[q], learned[g])  # seeded: the learned table's own ranks
                intervals = {
                    k: ratio_interval(mine, rank, k, convention) for k in ks if k <= len(rank)
                }
                row["x_floor_95"] = {
                    f"R@{k}": None if v is None else list(v) for k, v in intervals.items()
                }
            out.append(row)
    return {"retrieval": out, "skipped": skipped}


#: The label column whose per-class fractions define the oracle ceiling.
LABEL_COLUMN = "landcover"
#: Above this many rows the oracle's all-pairs distances are not computed.
CEILING_ROWS = 5000


def label_ceiling(dataset_uri: str, rows: Sequence[int], ks: Sequence[int]) -> dict[str, Any]:
    """What an oracle that knows each place's label fractions (the world's land covers)
    reaches: places matched by the L1 distance of their fractions, ties broken at random.

    The ceiling of any retrieval whose only shared signal is the labels. Returns ``R@k`` for
    each k, or ``{"skipped": why}`` when the dataset has no usable label column.
    """
    import numpy as np

    ds = open_pairs(dataset_uri)
    if LABEL_COLUMN not in ds.schema.names:
        return {"skipped": f"the dataset has no {LABEL_COLUMN!r} column"}
    if len(rows) > CEILING_ROWS:
        return {"skipped": f"{len(rows)} rows: the oracle stops at {CEILING_ROWS}"}
    values = ds.take(list(rows), columns=[LABEL_COLUMN]).column(LABEL_COLUMN).to_pylist()
    if any(v is None for v in values):
        return {"skipped": f"some rows have no {LABEL_COLUMN!r}"}
    fractions = np.asarray(values, dtype=np.float64)
    return {
        "label_column": LABEL_COLUMN,
        **{
            f"R@{k}": oracle_recall_at_k(fractions, k, gallery=len(rows))
            for k in ks
            if k <= len(rows)
        },
    }
