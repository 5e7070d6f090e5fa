"""The evaluation of a space on a dataset (``geobind eval``): retrieval of every ordered pair of
modalities and zero-shot land cover, printed and written as JSON and Markdown."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from geobind.data.pairs import open_pairs
from geobind.encoders.weights import atomic_write
from geobind.errors import GeobindError
from geobind.eval.embed import embed_columns, row_indices
from geobind.eval.floor import floor_table, label_ceiling
from geobind.eval.retrieval import CONVENTIONS, KS, last_hit_rank, parse_ks, retrieval_table
from geobind.eval.tables import format_comparison, format_table, markdown_table, percent
from geobind.eval.zeroshot import format_zeroshot, markdown_zeroshot, zeroshot_landcover
from geobind.space import Space, load_space

__all__ = [
    "baselines",
    "evaluate_space",
    "format_baselines",
    "format_report",
    "headline_k",
    "markdown_report",
    "run_eval",
]


def evaluate_space(
    space: Any,
    dataset_uri: str,
    ks: Sequence[int] = KS,
    convention: str = "standard",
    rows: int | Sequence[int] | None = None,
    embeddings: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Retrieval of every ordered pair of modalities the dataset carries and the space embeds.

    Each row of the dataset is one place; for each query the right answer is the gallery row
    of the same place. ``space`` is a :class:`~geobind.space.Space` or its path; ``embeddings``
    (from :func:`embed_columns`) skips embedding again. Returns the dataset, convention and
    cut-offs, the modalities evaluated (and those whose plugin is missing, and those aligned to
    weights the space no longer holds: ``stale``, with the reason) and ``retrieval``: one
    row per (query, gallery) with ``R@k``, ``chance@k``, ``median_rank``, ``mean_rank`` and
    ``gallery_size``.
    """
    ks = parse_ks(ks)
    last_hit_rank(1, convention)  # an unknown convention fails before anything is embedded
    space = space if isinstance(space, Space) else load_space(space, allow_stale=True)
    if embeddings is None:
        embeddings = embed_columns(space, dataset_uri, rows)
    if not embeddings:
        raise GeobindError(
            f"dataset {dataset_uri} has no column of a modality the space "
            f"{space.path} can embed ({', '.join(space.modalities) or 'none'})"
        )
    return {
        "dataset": str(dataset_uri),
        "space": str(space.path),
        "places": len(next(iter(embeddings.values()))),
        "convention": convention,
        "hit": CONVENTIONS[convention],
        "ks": list(ks),
        "modalities": list(embeddings),
        "unavailable": space.unavailable,
        "stale": space.stale(),
        "retrieval": retrieval_table(embeddings, ks, convention),
    }


def run_eval(
    space_path: str | Path,
    dataset_uri: str,
    ks: str | Sequence[int] = KS,
    convention: str = "standard",
    out: str | Path | None = None,
    rows: int | None = None,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
    floor: bool = True,
) -> dict:
    """Retrieval (every ordered pair) and zero-shot land cover of a space on a dataset, each
    trained pair beside its floor and the label ceiling.

    Prints the tables through ``say`` and writes ``OUT/eval.json`` and ``OUT/eval.md``
    (default ``OUT``: :func:`results_folder`). ``rows`` limits it to the first N rows;
    ``floor=False`` skips fitting the floors (see :mod:`geobind.eval.floor`).
    """
    start = time.perf_counter()
    ks = parse_ks(ks)
    last_hit_rank(1, convention)
    space = load_space(space_path, allow_stale=True)  # the consistent modalities are evaluated
    open_pairs(dataset_uri)  # a wrong path fails here, naming it
    embeddings = embed_columns(space, dataset_uri, rows)
    result = evaluate_space(space, dataset_uri, ks, convention, rows, embeddings=embeddings)
    result["zeroshot"] = zeroshot_landcover(space, dataset_uri, rows=rows, embeddings=embeddings)
    result.update(baselines(space, dataset_uri, rows, ks, convention, floor, embeddings))
    result["seconds"] = time.perf_counter() - start
    result["dataset_path"] = _where(dataset_uri)
    folder = Path(out) if out else results_folder(space.path, dataset_uri)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "eval.json", json.dumps(result, indent=2).encode())
    atomic_write(folder / "eval.md", markdown_report(result).encode())
    say(format_report(result) + f"\n\nwritten: {folder / 'eval.json'}, {folder / 'eval.md'}")
    return result


def _where(dataset_uri: str) -> str:
    """A dataset's path made absolute (a URI such as ``s3://...`` as it is), to tell two
    datasets of one name apart."""
    text = str(dataset_uri).rstrip("/")
    return text if "://" in text else str(Path(text).resolve())


def results_folder(space_path: Path, dataset_uri: str) -> Path:
    """Where ``geobind eval`` writes a dataset's results by default: ``SPACE/eval/<dataset
    stem>``, unless that folder holds the results of another dataset of the same name
    (``city-a/heldout.lance`` and ``city-b/heldout.lance``) or results it cannot read; then
    ``SPACE/eval/<stem>-<8 hex digits of the dataset's path>``, so that no earlier results
    are overwritten."""
    import hashlib

    where = _where(dataset_uri)
    stem = Path(where).stem  # of a URI too: Path reads "s3://b/x.lance" as "s3:/b/x.lance"
    folder = Path(space_path) / "eval" / stem
    try:
        saved = json.loads((folder / "eval.json").read_text())
        # results written before "dataset_path" was kept: their path as given, from here
        if isinstance(saved, dict) and where == saved.get(
            "dataset_path", _where(str(saved.get("dataset", "")))
        ):
            return folder
    except FileNotFoundError:
        return folder
    except (OSError, ValueError):
        pass  # unreadable: kept as it is
    return folder.with_name(f"{stem}-{hashlib.sha1(where.encode()).hexdigest()[:8]}")


def baselines(
    space: Space,
    dataset_uri: str,
    rows: int | Sequence[int] | None,
    ks: Sequence[int],
    convention: str = "standard",
    floor: bool = True,
    embeddings: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """``floor`` (each trained pair through simple features and CCA) and ``ceiling`` (the
    label oracle) on the same rows as the learned table; with the learned table's
    ``embeddings``, each floor row also holds the 95% interval of learned / floor."""
    indices = row_indices(open_pairs(dataset_uri), rows)
    floors = (
        floor_table(space, dataset_uri, indices, ks, convention, learned=embeddings)
        if floor
        else {"retrieval": [], "skipped": {"all pairs": "not asked for (--no-floor)"}}
    )
    return {"floor": floors, "ceiling": label_ceiling(dataset_uri, indices, ks)}


def headline_k(ks: Sequence[int]) -> int:
    """The cut-off the comparison with the floor is read at: 10 if computed, else the
    largest."""
    return 10 if 10 in ks else max(ks)


def format_baselines(result: dict[str, Any], pairs: Sequence[tuple[str, str]] | None = None) -> str:
    """The learned table beside its floor and ceiling, with what each of them is."""
    floor, ceiling = result.get("floor"), result.get("ceiling", {})
    if not floor or not result["retrieval"]:
        return ""
    k = headline_k(result["ks"])
    lines = [
        f"Learned against the floor and the ceiling (R@{k}):",
        format_comparison(result["retrieval"], floor["retrieval"], ceiling, k, pairs),
    ]
    fitted = sorted({(r["fitted_on"], r["fit_rows"]) for r in floor["retrieval"]})
    lines += [
        f"floor: simple features + linear CCA, fitted on {n} training pairs of {data}"
        for data, n in fitted
    ]
    lines += [f"floor of {pair}: none ({why})" for pair, why in floor["skipped"].items()]
    lines.append(
        f"ceiling: places matched by their true {ceiling['label_column']!r} fractions"
        if "label_column" in ceiling
        else f"ceiling: none ({ceiling.get('skipped', 'not computed')})"
    )
    if any("x_floor_95" in r for r in floor["retrieval"]):
        lines.append(
            "95%: learned / floor over bootstrap draws of these places (paired); "
            "an interval holding 1.00 is level with the floor"
        )
    lines.append("-: a pair no stage trained together has no floor; it emerges through the anchor")
    return "\n".join(lines)


def format_report(result: dict[str, Any]) -> str:
    """The retrieval and zero-shot tables of :func:`run_eval` as plain text."""
    lines = [
        f"Retrieval on {result['places']} places of {result['dataset']} (each query's own "
        f"place is the one right answer; {result['convention']} convention: a hit at k "
        f"is {result['hit']})"
    ]
    if result["retrieval"]:
        lines.append(format_table(result["retrieval"], ks=result["ks"], chance_row=True))
    else:
        lines.append(f"(one modality only: {', '.join(result['modalities'])}; no pairs)")
    if result.get("unavailable"):
        lines.append(
            "not evaluated, plugin missing: "
            + ", ".join(f"{m} (pip install {d})" for m, d in result["unavailable"].items())
        )
    lines += [f"not evaluated, stale: {reason}" for reason in result.get("stale", {}).values()]
    comparison = format_baselines(result)
    if comparison:
        lines += ["", comparison]
    if "zeroshot" in result:
        lines += ["", format_zeroshot(result["zeroshot"])]
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    """The report of :func:`run_eval` as Markdown tables."""
    ks = result["ks"]
    head = ["query → gallery", *(f"R@{k}" for k in ks), "median rank", "mean rank"]
    body = [
        [
            f"{r['query']} → {r['gallery']}",
            *(percent(r.get(f"R@{k}"), "–") for k in ks),
            f"{r['median_rank']:.1f}",
            f"{r['mean_rank']:.1f}",
        ]
        for r in result["retrieval"]
    ]
    if body:
        n = result["places"]
        body.append(
            [
                "*chance*",
                *(percent(result["retrieval"][0].get(f"chance@{k}"), "–") for k in ks),
                f"{(n + 1) / 2:.1f}",
                f"{(n + 1) / 2:.1f}",
            ]
        )
    text = [
        f"# Evaluation of `{result['space']}` on `{result['dataset']}`",
        "",
        "## Retrieval",
        "",
        f"{result['places']} places; each query's own place is the one right answer. "
        f"Convention `{result['convention']}`: a hit at k is `{result['hit']}` "
        f"(1-based ranks, ties in the query's favour).",
        "",
        markdown_table(head, body),
    ]
    text += [f"\nNot evaluated, stale: {reason}" for reason in result.get("stale", {}).values()]
    comparison = format_baselines(result)
    if comparison:
        text += ["", "## Against the floor and the ceiling", "", "```", comparison, "```"]
    if "zeroshot" in result:
        text += ["", markdown_zeroshot(result["zeroshot"])]
    return "\n".join(text) + "\n"
