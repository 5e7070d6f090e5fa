"""Retrieval metrics: 1-based ranks, Recall@k in two conventions, one table row per pair.

Ranks are computed directly, one matmul and a count per query chunk, rather than with
torchmetrics' retrieval metrics, which loop over queries in Python (minutes and many GB on a
10k x 10k matrix, against about a second here: ``benchmarks/recall_speed.py``); the tests
check both agree.

Ranks and the two Recall@k conventions
--------------------------------------
A rank is 1-based: rank 1 means the true match scored highest of the whole gallery. A true
match tied with other rows takes a random place among them (seeded: the same embeddings always
give the same ranks). With trained embeddings ties hardly happen, but counting them in the
query's favour would hand an encoder that collapsed to one output for every input a perfect
score; Sun et al. (ACL 2020, "A Re-evaluation of Knowledge Graph Completion Methods") found
published results inflated in just that way, and recommend the random placement used here.
Embeddings holding NaN or infinity are refused: every comparison with NaN is false, which would
rank such a match first. Median and mean rank are the same in both conventions; only Recall@k
differs, by exactly one position:

- ``standard``: Recall@k is the share of queries with ``rank <= k``: the true match is among
  the top k. Chance is ``k / n``. This is what CLIP-style papers (Sat2Cap, GeoBind) report,
  and torchmetrics' ``RetrievalRecall(top_k=k)`` given positive scores (it ignores a relevant
  item scoring <= 0, which a cosine can).
- ``geoclap``: Recall@k is the share with ``rank < k``: the true match is among the top
  ``k - 1``. GeoCLAP's and SoundingEarth's evaluation code rank with pandas'
  ``Series.rank()``, which is 1-based, then count ``rank < k``. So geoclap R@k equals standard
  R@(k-1), geoclap R@1 is always 0, and chance is ``(k - 1) / n``. (pandas gives tied rows
  their average rank; that matters only when scores tie.)

Both are decided in one place, :func:`last_hit_rank`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from geobind.errors import GeobindError

__all__ = [
    "CONVENTIONS",
    "KS",
    "last_hit_rank",
    "parse_ks",
    "ranks",
    "ratio_interval",
    "recall_metrics",
    "retrieval_table",
]

KS = (1, 5, 10, 100)

#: Recall@k conventions -> what counts as a hit at k (see the module docstring).
CONVENTIONS = {"standard": "rank <= k", "geoclap": "rank < k"}


def last_hit_rank(k: int, convention: str = "standard") -> int:
    """The largest 1-based rank that counts as a hit for Recall@k under ``convention``."""
    if convention not in CONVENTIONS:
        raise GeobindError(
            f"unknown recall convention {convention!r}: use one of "
            f"{', '.join(CONVENTIONS)} (see geobind.eval.retrieval)"
        )
    return k if convention == "standard" else k - 1


def parse_ks(ks: str | Sequence[int]) -> tuple[int, ...]:
    """Recall cut-offs from ``"1,5,10"`` or a sequence: positive integers, sorted, unique."""
    try:
        values = [int(k) for k in (ks.split(",") if isinstance(ks, str) else ks)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise GeobindError(
            f"recall cut-offs (--ks): expected positive integers separated by "
            f"commas, like 1,5,10,100; got {ks!r}"
        )
    return tuple(sorted(set(values)))


def ranks(
    query: torch.Tensor, gallery: torch.Tensor, chunk: int = 4096, seed: int = 0
) -> torch.Tensor:
    """The 1-based rank of ``gallery[i]`` among all gallery rows for ``query[i]``.

    A true match tied with ``t`` other rows takes one of its ``t + 1`` possible ranks at random
    (from ``seed``; see the module docstring). ``gallery`` may hold more rows than ``query``
    (the extra rows are distractors only). Raises ``ValueError`` for NaN or infinite values.
    """
    if len(query) > len(gallery):
        raise ValueError(
            f"ranks: {len(query)} queries but only {len(gallery)} gallery rows; "
            f"query i is matched with gallery row i"
        )
    for name, x in (("query", query), ("gallery", gallery)):
        bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(dim=1).sum()) if len(x) else 0
        if bad:
            raise ValueError(f"ranks: {bad} of {len(x)} {name} rows hold NaN or infinite values")
    generator = torch.Generator().manual_seed(seed)
    gallery_t = gallery.float().T
    out = []
    for start in range(0, len(query), chunk):
        sims = query[start : start + chunk].float() @ gallery_t
        rows = torch.arange(len(sims))
        # the true score is read from the same matmul, so rounding cannot make it beat itself
        true = sims[rows, rows + start][:, None]
        above = (sims > true).sum(dim=1)
        tied = (sims == true).sum(dim=1) - 1  # other rows scoring exactly the true score
        place = (torch.rand(len(sims), generator=generator) * (tied + 1)).long()
        out.append(above + 1 + place)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def recall_metrics(
    rank: torch.Tensor, ks: Sequence[int] = KS, convention: str = "standard"
) -> dict[str, float]:
    """Recall@k and chance@k for each ``k <= n``, median and mean rank, gallery size.

    ``rank`` holds 1-based ranks from :func:`ranks`; ``convention`` says what counts as a hit
    (``standard``: rank <= k, ``geoclap``: rank < k). Chance is the expected Recall@k of
    random scores, ``last_hit_rank(k) / n``.
    """
    n = len(rank)
    metrics: dict[str, float] = {"gallery_size": n}
    for k in ks:
        last = last_hit_rank(k, convention)
        if k <= n:
            metrics[f"R@{k}"] = float((rank <= last).float().mean())
            metrics[f"chance@{k}"] = last / n
    metrics["median_rank"] = _median(rank) if n else float("nan")
    metrics["mean_rank"] = float(rank.float().mean()) if n else float("nan")
    return metrics


def ratio_interval(
    rank: torch.Tensor,
    base: torch.Tensor,
    k: int,
    convention: str = "standard",
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A ``level`` interval of R@k from ``rank`` over R@k from ``base``, the same queries
    ranked two ways (a learned space and its floor): a paired percentile bootstrap over the
    queries, each resample drawing the queries again with replacement and scoring both on them.

    One held-out set of 1,000 places measures R@k = 10% to about +-2 points (95%), so a ratio
    near 1 can be chance; when the interval holds 1 the two are level on these places. ``None``
    when ``base`` has no hit at k (the ratio has no finite value). Seeded: the same ranks give
    the same interval. Written out rather than taken from scipy's ``bootstrap`` (scipy is no
    dependency of the project); a resample is one gather and two sums.
    """
    if rank.shape != base.shape or rank.dim() != 1 or len(rank) == 0:
        raise ValueError(
            f"ratio_interval: need two non-empty rank vectors of one length, got "
            f"{list(rank.shape)} and {list(base.shape)}"
        )
    if not 0 < level < 1:
        raise ValueError(f"ratio_interval: level must lie between 0 and 1, got {level}")
    last = last_hit_rank(k, convention)
    hits = torch.stack([rank <= last, base <= last]).to(torch.int32)
    if int(hits[1].sum()) == 0:
        return None
    generator = torch.Generator().manual_seed(seed)
    n, ratios = len(rank), []
    chunk = max(1, 2_000_000 // n)  # bounds the gathered resamples to ~16 MB
    for start in range(0, resamples, chunk):
        draw = torch.randint(n, (min(chunk, resamples - start), n), generator=generator)
        sums = hits[:, draw].sum(dim=2).double()  # [2, resamples]
        ratios.append(sums[0] / sums[1])  # a resample without a base hit: inf, sorted last
    values = torch.cat(ratios)
    values = values[~values.isnan()].sort().values  # 0 / 0: neither side hit; no ratio
    if len(values) == 0:
        return None
    tail = (1 - level) / 2
    lo = values[int(tail * (len(values) - 1))]
    hi = values[int(round((1 - tail) * (len(values) - 1)))]
    return float(lo), float(hi)


def _median(values: torch.Tensor) -> float:
    """The median, averaging the two middle values of an even count (as numpy and pandas do;
    ``torch.median`` returns the lower one)."""
    s = values.float().sort().values
    return float((s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2)


def retrieval_table(
    embeddings: dict[str, torch.Tensor], ks: Sequence[int] = KS, convention: str = "standard"
) -> list[dict[str, Any]]:
    """One row per ordered pair of modalities: query -> gallery metrics."""
    return [
        {
            "query": q,
            "gallery": g,
            **recall_metrics(ranks(embeddings[q], embeddings[g]), ks, convention),
        }
        for q in embeddings
        for g in embeddings
        if q != g
    ]
