"""Retrieval broken down by each place's dominant class (the world's land covers): where a
space works and where it does not.

Each query is counted under the class that dominates its place's label fractions (the
``landcover`` column); the gallery is always the whole dataset, so a class's Recall@k says how
often a place of that kind finds itself among all places.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from geobind.data.pairs import label_classes, open_pairs
from geobind.eval.floor import LABEL_COLUMN
from geobind.eval.retrieval import ranks
from geobind.eval.tables import percent

__all__ = ["BREAKDOWN_PAIRS", "format_breakdown", "recall_by_class", "retrieval_by_class"]

#: The pairs broken down by default: the two trained against the anchor, and text queries.
BREAKDOWN_PAIRS = (("satellite", "ground"), ("satellite", "audio"), ("text", "satellite"))


def recall_by_class(
    rank: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], k: int
) -> dict[str, dict[str, float]]:
    """``{class: {"places": n, "R@k": share of its queries with rank <= k}}`` for each class
    some query has (ranks 1-based, as :func:`geobind.eval.retrieval.ranks` gives them)."""
    out = {}
    for i, name in enumerate(classes):
        mine = labels == i
        if mine.any():
            share = float((rank[mine] <= k).float().mean())
            out[name] = {"places": int(mine.sum()), f"R@{k}": share}
    return out


def retrieval_by_class(
    embeddings: dict[str, torch.Tensor],
    dataset_uri: str,
    rows: Sequence[int],
    pairs: Sequence[tuple[str, str]],
    k: int = 10,
) -> dict[str, Any]:
    """Recall@k of each ``(query, gallery)`` pair, per dominant class of the query's place.

    ``embeddings`` hold the dataset's ``rows`` in order (as :func:`geobind.eval.embed.
    embed_columns` returns them). Returns ``{"classes": [...], "k": k, "pairs": {"q -> g":
    recall_by_class(...)}}`` or ``{"skipped": why}`` without a named label column.
    """
    ds = open_pairs(dataset_uri)
    classes, _ = label_classes(ds, LABEL_COLUMN)
    if not classes:
        return {"skipped": f"the dataset has no {LABEL_COLUMN!r} column naming its classes"}
    values = ds.take(list(rows), columns=[LABEL_COLUMN]).column(LABEL_COLUMN).to_pylist()
    labels = torch.tensor(values, dtype=torch.float32).argmax(dim=1)
    table = {
        f"{q} -> {g}": recall_by_class(ranks(embeddings[q], embeddings[g]), labels, classes, k)
        for q, g in pairs
        if q in embeddings and g in embeddings
    }
    return {"classes": list(classes), "k": k, "pairs": table}


def format_breakdown(result: dict[str, Any]) -> str:
    """One row per class: its number of places and each pair's Recall@k."""
    if "skipped" in result:
        return f"Retrieval by dominant land cover: skipped ({result['skipped']})"
    k, pairs = result["k"], result["pairs"]
    head = f"{'dominant cover':16s}{'places':>7s}" + "".join(f"{p:>22s}" for p in pairs)
    lines = [f"Retrieval by the query place's dominant land cover (R@{k}):", head, "-" * len(head)]
    for name in result["classes"]:
        cells = [pairs[p].get(name) for p in pairs]
        places = next((c["places"] for c in cells if c), 0)
        if not places:
            continue
        lines.append(
            f"{name:16s}{places:7d}"
            + "".join(f"{percent(c[f'R@{k}'] if c else None):>22s}" for c in cells)
        )
    return "\n".join(lines)
