"""Retrieval metrics, and the evaluation of a space on a dataset (``geobind eval``).

Ranks are computed directly, one matmul and a count per query chunk, rather than with
torchmetrics' retrieval metrics, which loop over queries in Python (minutes and many GB on a
10k x 10k matrix, against about a second here: ``benchmarks/recall_speed.py``); the tests
check both agree.

Ranks and the two Recall@k conventions
--------------------------------------
A rank is 1-based: rank 1 means the true match scored highest of the whole gallery. Ties count
in the query's favour (the true match ranks above every other row with the same score; with
continuous embeddings ties do not happen). Median and mean rank are the same in both
conventions; only Recall@k differs, by exactly one position:

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

import json
import time
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import torch

from geobind.errors import GeobindError

__all__ = ["CONVENTIONS", "KS", "embed_columns", "evaluate_space", "format_report",
           "format_table", "last_hit_rank", "markdown_report", "parse_ks", "ranks",
           "recall_metrics", "retrieval_table", "row_indices", "run_eval"]

KS = (1, 5, 10, 100)

#: Recall@k conventions -> what counts as a hit at k (see the module docstring).
CONVENTIONS = {"standard": "rank <= k", "geoclap": "rank < k"}


def last_hit_rank(k: int, convention: str = "standard") -> int:
    """The largest 1-based rank that counts as a hit for Recall@k under ``convention``."""
    if convention not in CONVENTIONS:
        raise GeobindError(f"unknown recall convention {convention!r}: use one of "
                           f"{', '.join(CONVENTIONS)} (see geobind.evaluate)")
    return k if convention == "standard" else k - 1


def parse_ks(ks: str | Sequence[int]) -> tuple[int, ...]:
    """Recall cut-offs from ``"1,5,10"`` or a sequence: positive integers, sorted, unique."""
    try:
        values = [int(k) for k in (ks.split(",") if isinstance(ks, str) else ks)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise GeobindError(f"recall cut-offs (--ks): expected positive integers separated by "
                           f"commas, like 1,5,10,100; got {ks!r}")
    return tuple(sorted(set(values)))


def ranks(query: torch.Tensor, gallery: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The 1-based rank of ``gallery[i]`` among all gallery rows for ``query[i]``.

    Ties count in the query's favour. ``gallery`` may hold more rows than ``query`` (the extra
    rows are distractors only).
    """
    if len(query) > len(gallery):
        raise ValueError(f"ranks: {len(query)} queries but only {len(gallery)} gallery rows; "
                         f"query i is matched with gallery row i")
    gallery_t = gallery.float().T
    out = []
    for start in range(0, len(query), chunk):
        sims = query[start:start + chunk].float() @ gallery_t
        rows = torch.arange(len(sims))
        # the true score is read from the same matmul, so rounding cannot make it beat itself
        true = sims[rows, rows + start]
        out.append((sims > true[:, None]).sum(dim=1) + 1)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def recall_metrics(rank: torch.Tensor, ks: Sequence[int] = KS,
                   convention: str = "standard") -> dict[str, float]:
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


def _median(values: torch.Tensor) -> float:
    """The median, averaging the two middle values of an even count (as numpy and pandas do;
    ``torch.median`` returns the lower one)."""
    s = values.float().sort().values
    return float((s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2)


def row_indices(ds: Any, rows: int | Sequence[int] | None) -> list[int]:
    """Rows to evaluate: all (``None``), the first ``rows`` (an int), or the given indices."""
    count = ds.count_rows()
    if rows is None:
        return list(range(count))
    if isinstance(rows, int):
        if rows < 1:
            raise GeobindError(f"rows: expected a positive number, got {rows}")
        return list(range(min(rows, count)))
    return list(rows)


def embed_columns(space: Any, dataset_uri: str, rows: int | Sequence[int] | None = None,
                  batch_size: int = 128, only: Collection[str] | None = None,
                  read_chunk: int = 1024) -> dict[str, torch.Tensor]:
    """Embeddings of every modality column the dataset carries and the space can embed.

    ``rows`` as in :func:`row_indices`; ``only`` restricts the modalities. Raw values are
    read ``read_chunk`` rows at a time so a large dataset of sounds never sits in memory whole.
    """
    from geobind.data.pairs import open_pairs, read_values
    from geobind.plugins import get_registry

    ds = open_pairs(dataset_uri)
    rows = row_indices(ds, rows)
    if not rows:
        raise GeobindError(f"dataset {dataset_uri} has no rows to evaluate")
    registry, out = get_registry(), {}
    for name in space.modalities:
        column = registry.modality(name).column
        if column in ds.schema.names and (only is None or name in only):
            out[name] = torch.cat([
                space.embed(name, read_values(ds, column, rows[i:i + read_chunk]), batch_size)
                for i in range(0, len(rows), read_chunk)])
    return out


def retrieval_table(embeddings: dict[str, torch.Tensor], ks: Sequence[int] = KS,
                    convention: str = "standard") -> list[dict[str, Any]]:
    """One row per ordered pair of modalities: query -> gallery metrics."""
    return [{"query": q, "gallery": g, **recall_metrics(ranks(embeddings[q], embeddings[g]),
                                                        ks, convention)}
            for q in embeddings for g in embeddings if q != g]


def evaluate_space(space: Any, dataset_uri: str, ks: Sequence[int] = KS,
                   convention: str = "standard", rows: int | Sequence[int] | None = None,
                   embeddings: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Retrieval of every ordered pair of modalities the dataset carries and the space embeds.

    Each row of the dataset is one place; for each query the right answer is the gallery row
    of the same place. ``space`` is a :class:`~geobind.space.Space` or its path; ``embeddings``
    (from :func:`embed_columns`) skips embedding again. Returns the dataset, convention and
    cut-offs, the modalities evaluated (and those whose plugin is missing) and ``retrieval``: one
    row per (query, gallery) with ``R@k``, ``chance@k``, ``median_rank``, ``mean_rank`` and
    ``gallery_size``.
    """
    from geobind.space import Space, load_space

    ks = parse_ks(ks)
    last_hit_rank(1, convention)  # an unknown convention fails before anything is embedded
    space = space if isinstance(space, Space) else load_space(space)
    if embeddings is None:
        embeddings = embed_columns(space, dataset_uri, rows)
    if not embeddings:
        raise GeobindError(f"dataset {dataset_uri} has no column of a modality the space "
                           f"{space.path} can embed ({', '.join(space.modalities) or 'none'})")
    return {"dataset": str(dataset_uri), "space": str(space.path),
            "places": len(next(iter(embeddings.values()))), "convention": convention,
            "hit": CONVENTIONS[convention], "ks": list(ks), "modalities": list(embeddings),
            "unavailable": space.unavailable,
            "retrieval": retrieval_table(embeddings, ks, convention)}


def format_table(table: list[dict[str, Any]], ks: Sequence[int] = (1, 10),
                 pairs: Sequence[tuple[str, str]] | None = None, chance_row: bool = False) -> str:
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
        lines.append(f"{'chance':24s}" + _percents(rows[0], "chance@", ks, 8) +
                     f"{(n + 1) / 2:8.1f}{(n + 1) / 2:8.1f}{n:9.0f}")
    return "\n".join(lines)


def _percents(row: dict[str, Any], prefix: str, ks: Sequence[int], width: int) -> str:
    return "".join(_percent(row.get(f"{prefix}{k}"), width) for k in ks)


def _percent(value: float | None, width: int) -> str:
    """A percentage right-aligned in ``width``, or '-' where k exceeds the gallery."""
    return f"{'-':>{width}s}" if value is None else f"{100 * value:{width - 1}.1f}%"


# -- the report of `geobind eval` -----------------------------------------------------------
def run_eval(space_path: str | Path, dataset_uri: str, ks: str | Sequence[int] = KS,
             convention: str = "standard", out: str | Path | None = None,
             rows: int | None = None,
             say: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict:
    """Retrieval (every ordered pair) and zero-shot land cover of a space on a dataset.

    Prints both tables through ``say`` and writes ``OUT/eval.json`` and ``OUT/eval.md``
    (default ``OUT``: ``SPACE/eval/<dataset stem>``). ``rows`` limits it to the first N rows.
    """
    from geobind.data.pairs import open_pairs
    from geobind.space import load_space
    from geobind.zeroshot import zeroshot_landcover

    start = time.perf_counter()
    ks = parse_ks(ks)
    last_hit_rank(1, convention)
    space = load_space(space_path)
    open_pairs(dataset_uri)  # a wrong path fails here, naming it
    embeddings = embed_columns(space, dataset_uri, rows)
    result = evaluate_space(space, dataset_uri, ks, convention, rows, embeddings=embeddings)
    result["zeroshot"] = zeroshot_landcover(space, dataset_uri, rows=rows, embeddings=embeddings)
    result["seconds"] = time.perf_counter() - start
    folder = Path(out) if out else space.path / "eval" / Path(str(dataset_uri).rstrip("/")).stem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps(result, indent=2))
    (folder / "eval.md").write_text(markdown_report(result))
    say(format_report(result) + f"\n\nwritten: {folder / 'eval.json'}, {folder / 'eval.md'}")
    return result


def format_report(result: dict[str, Any]) -> str:
    """The retrieval and zero-shot tables of :func:`run_eval` as plain text."""
    from geobind.zeroshot import format_zeroshot

    lines = [f"Retrieval on {result['places']} places of {result['dataset']} (each query's own "
             f"place is the one right answer; {result['convention']} convention: a hit at k "
             f"is {result['hit']})"]
    if result["retrieval"]:
        lines.append(format_table(result["retrieval"], ks=result["ks"], chance_row=True))
    else:
        lines.append(f"(one modality only: {', '.join(result['modalities'])}; no pairs)")
    if result.get("unavailable"):
        lines.append("not evaluated, plugin missing: " + ", ".join(
            f"{m} (pip install {d})" for m, d in result["unavailable"].items()))
    if "zeroshot" in result:
        lines += ["", format_zeroshot(result["zeroshot"])]
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    """The report of :func:`run_eval` as Markdown tables."""
    from geobind.zeroshot import markdown_zeroshot

    ks = result["ks"]
    head = ["query → gallery", *(f"R@{k}" for k in ks), "median rank", "mean rank"]
    body = [[f"{r['query']} → {r['gallery']}", *(_md_percent(r.get(f"R@{k}")) for k in ks),
             f"{r['median_rank']:.1f}", f"{r['mean_rank']:.1f}"] for r in result["retrieval"]]
    if body:
        n = result["places"]
        body.append(["*chance*", *(_md_percent(result["retrieval"][0].get(f"chance@{k}"))
                                   for k in ks), f"{(n + 1) / 2:.1f}", f"{(n + 1) / 2:.1f}"])
    text = [f"# Evaluation of `{result['space']}` on `{result['dataset']}`", "",
            "## Retrieval", "",
            f"{result['places']} places; each query's own place is the one right answer. "
            f"Convention `{result['convention']}`: a hit at k is `{result['hit']}` "
            f"(1-based ranks, ties in the query's favour).", "", markdown_table(head, body)]
    if "zeroshot" in result:
        text += ["", markdown_zeroshot(result["zeroshot"])]
    return "\n".join(text) + "\n"


def markdown_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table; every column but the first right-aligned."""
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _md_percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
