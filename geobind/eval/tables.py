"""Plain-text and Markdown tables of retrieval results, and the percentages in them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_comparison", "format_table", "interval_text", "markdown_table", "percent"]


def format_table(
    table: list[dict[str, Any]],
    ks: Sequence[int] = (1, 10),
    pairs: Sequence[tuple[str, str]] | None = None,
    chance_row: bool = False,
) -> str:
    """A plain-text retrieval table with chance levels.

    By default each row carries its own chance@k columns. ``chance_row=True`` (for tables whose
    pairs share one gallery size) adds the mean rank and prints chance once, as a last row;
    its median and mean are those of a random ranking, ``(n + 1) / 2``.
    """
    by_pair = {(r["query"], r["gallery"]): r for r in table}
    rows = table if pairs is None else [by_pair[p] for p in pairs if p in by_pair]
    recalls = "".join(f"{'R@' + str(k):>8s}" for k in ks)
    if chance_row:
        head = f"{'query -> gallery':24s}{recalls}{'median':>8s}{'mean':>8s}{'gallery':>9s}"
    else:
        chances = "".join(f"{'chance@' + str(k):>10s}" for k in ks)
        head = f"{'query -> gallery':24s}{recalls}{'median':>8s}{chances}{'gallery':>9s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['query'] + ' -> ' + r['gallery']:24s}" + _percents(r, "R@", ks, 8)
        if chance_row:
            line += f"{r['median_rank']:8.1f}{r['mean_rank']:8.1f}"
        else:
            line += f"{r['median_rank']:8.0f}" + _percents(r, "chance@", ks, 10)
        lines.append(line + f"{r['gallery_size']:9.0f}")
    if chance_row and rows:
        n = rows[0]["gallery_size"]
        lines.append(
            f"{'chance':24s}"
            + _percents(rows[0], "chance@", ks, 8)
            + f"{(n + 1) / 2:8.1f}{(n + 1) / 2:8.1f}{n:9.0f}"
        )
    return "\n".join(lines)


def _percents(row: dict[str, Any], prefix: str, ks: Sequence[int], width: int) -> str:
    return "".join(_percent(row.get(f"{prefix}{k}"), width) for k in ks)


def _percent(value: float | None, width: int) -> str:
    """A percentage right-aligned in ``width``, or '-' where k exceeds the gallery."""
    return f"{'-':>{width}s}" if value is None else f"{100 * value:{width - 1}.1f}%"


def markdown_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table; every column but the first right-aligned."""
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def percent(value: float | None, missing: str = "-") -> str:
    """A share as a percentage with one decimal, or ``missing`` where there is none."""
    return missing if value is None else f"{100 * value:.1f}%"


def format_comparison(
    table: list[dict[str, Any]],
    floor: list[dict[str, Any]],
    ceiling: dict[str, Any],
    k: int = 10,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The learned R@k of each pair beside its floor (simple features + CCA fitted on the
    stage's training pairs), their ratio with its 95% interval over the places (where the floor
    rows carry ``x_floor_95``), and the ceiling (a label oracle).

    Pairs no stage trained have no floor ('-'): they emerge through the anchor.
    """
    floors = {(r["query"], r["gallery"]): r for r in floor}
    by_pair = {(r["query"], r["gallery"]): r for r in table}
    rows = table if pairs is None else [by_pair[p] for p in pairs if p in by_pair]
    key = f"R@{k}"
    head = (
        f"{'query -> gallery':24s}{'R@1':>8s}{key:>8s}{'median':>8s}"
        f"{'floor':>8s}{'x floor':>9s}{'95%':>12s}{'ceiling':>9s}"
    )
    lines = [head, "-" * len(head)]
    top = ceiling.get(key)
    for r in rows:
        floor_row = floors.get((r["query"], r["gallery"]), {})
        base = floor_row.get(key)
        ratio = f"{r[key] / base:8.1f}x" if base else f"{'-':>9s}"
        lines.append(
            f"{r['query'] + ' -> ' + r['gallery']:24s}"
            + _percent(r.get("R@1"), 8)
            + _percent(r.get(key), 8)
            + f"{r['median_rank']:8.0f}"
            + _percent(base, 8)
            + ratio
            + f"{interval_text(floor_row.get('x_floor_95', {}).get(key)):>12s}"
            + _percent(top, 9)
        )
    return "\n".join(lines)


def interval_text(interval: Sequence[float] | None) -> str:
    """``[lo, hi]`` of a ratio as ``0.95-1.24`` (``inf`` where a resample had no hit of the
    base), or ``-`` where there is none."""
    if not interval:
        return "-"
    return "-".join("inf" if v == float("inf") else f"{v:.2f}" for v in interval)
