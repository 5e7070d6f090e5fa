"""One static HTML page about a space: encoders, training curves, retrieval, queries, maps.

Everything is inline (tables as HTML, curves as SVG, pictures as PNG data URIs), so the page is
a single file that opens anywhere, offline. A small script marks the page ready once every
image has loaded, which lets a headless browser check it.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from geobind.encoders.weights import atomic_write
from geobind.eval.breakdown import BREAKDOWN_PAIRS, retrieval_by_class
from geobind.eval.embed import embed_columns
from geobind.eval.evaluate import baselines, evaluate_space, headline_k
from geobind.eval.tables import interval_text
from geobind.eval.zeroshot import unlearned_note, zeroshot_landcover
from geobind.search.index import build_index, search
from geobind.search.maps import query_label, render_hits, similarity_map
from geobind.space import last_run, load_space, log_records

__all__ = ["DEFAULT_QUERIES", "write_report"]

DEFAULT_QUERIES = (
    "waves on a sandy beach",
    "a busy street in town",
    "a dense forest",
    "farm fields",
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}figure{margin:0 0 1.5em}figcaption{color:#555}
.curves{display:flex;flex-wrap:wrap;gap:1em}code{background:#f5f5f5;padding:0 3px}
"""

READY = """
<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.images = images.length;
  document.body.dataset.imagesLoaded = loaded.length;
  document.body.dataset.tables = document.querySelectorAll('table').length;
  document.body.dataset.ready = 'yes';
});
</script>
"""


def _table(rows: Sequence[dict], columns: Sequence[str], formats: dict | None = None) -> str:
    formats = formats or {}

    def cell(row: dict, col: str) -> str:
        value = row.get(col)
        if value is None or value == "":
            return "–"  # a pair with no floor, a cut-off beyond the gallery
        fmt = formats.get(col)
        return html.escape(fmt(value) if fmt else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r, c)}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _svg_curve(
    points: Sequence[tuple[float, float]], title: str, width: int = 320, height: int = 180
) -> str:
    """A line chart as inline SVG (no plotting library needed for one polyline)."""
    if len(points) < 2:
        return ""
    xs, ys = zip(*points)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def sx(x: float) -> float:
        return 40 + (x - x0) / ((x1 - x0) or 1) * (width - 50)

    def sy(y: float) -> float:
        return height - 25 - (y - y0) / ((y1 - y0) or 1) * (height - 45)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="40" y="14" font-size="12">{html.escape(title)}</text>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>'
        f'<text x="2" y="{sy(y1) + 4:.0f}" font-size="10">{y1:.3g}</text>'
        f'<text x="2" y="{sy(y0) + 4:.0f}" font-size="10">{y0:.3g}</text>'
        f'<text x="40" y="{height - 8}" font-size="10">step {x0:.0f}</text>'
        f'<text x="{width - 60}" y="{height - 8}" font-size="10">{x1:.0f}</text></svg>'
    )


def _curves(space_path: Path) -> str:
    charts = []
    for log in sorted((space_path / "logs").glob("*.jsonl")):
        records = last_run(log_records(log.read_text()))
        steps = [r for r in records if "loss" in r]
        charts.append(_svg_curve([(r["step"], r["loss"]) for r in steps], f"{log.stem}: loss"))
        val = [
            (r["step"], r["val_s2t_R@10"])
            for r in records
            if "val_s2t_R@10" in r and not r.get("final")
        ]
        charts.append(_svg_curve(val, f"{log.stem}: val R@10 (student->teacher)"))
    return '<div class="curves">' + "".join(c for c in charts if c) + "</div>"


def _encoders(space: Any) -> str:
    rows = [
        {
            "modality": name,
            "plugin": f"{e.plugin} {e.version}",
            "stage": e.stage,
            "aligned to": e.aligned_to["modality"] if e.aligned_to else "-",
            "sha256": e.sha256[:12],
            "embed_dim": e.config.get("embed_dim", ""),
        }
        for name, e in space.entries.items()
    ]
    return _table(rows, ["modality", "plugin", "stage", "aligned to", "embed_dim", "sha256"])


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _retrieval(results: dict) -> str:
    ks = [k for k in (1, 5, 10, 100) if any(f"R@{k}" in r for r in results["retrieval"])]
    k = headline_k(ks)
    floors = {(r["query"], r["gallery"]): r for r in results.get("floor", {}).get("retrieval", [])}
    ceiling = results.get("ceiling", {}).get(f"R@{k}")
    columns = (
        ["pair"]
        + [f"R@{k}" for k in ks]
        + ["median_rank", f"floor R@{k}", "x floor", "x floor, 95%", f"ceiling R@{k}"]
        + [f"chance@{k}" for k in ks]
        + ["gallery_size"]
    )
    rows = []
    for r in results["retrieval"]:
        floor_row = floors.get((r["query"], r["gallery"]), {})
        floor = floor_row.get(f"R@{k}")
        interval = floor_row.get("x_floor_95", {}).get(f"R@{k}")
        rows.append(
            {
                **r,
                "pair": f"{r['query']} -> {r['gallery']}",
                f"floor R@{k}": floor,
                "x floor": r[f"R@{k}"] / floor if floor else None,
                "x floor, 95%": interval_text(interval) if interval else None,
                f"ceiling R@{k}": ceiling,
            }
        )
    formats = {
        **{f"R@{k}": _pct for k in ks},
        **{f"chance@{k}": _pct for k in ks},
        f"floor R@{k}": _pct,
        f"ceiling R@{k}": _pct,
        "x floor": lambda v: f"{v:.1f}x",
        "median_rank": lambda v: f"{v:.0f}",
        "gallery_size": lambda v: f"{v:.0f}",
    }
    return _table(rows, columns, formats)


def _breakdown(result: dict) -> str:
    if "skipped" in result:
        return f"<p>No breakdown: {html.escape(result['skipped'])}</p>"
    k, pairs = result["k"], result["pairs"]
    rows = []
    for name in result["classes"]:
        cells = {p: v.get(name) for p, v in pairs.items()}
        places = next((c["places"] for c in cells.values() if c), 0)
        if places:
            rows.append(
                {
                    "dominant cover": name,
                    "places": places,
                    **{p: c[f"R@{k}"] if c else None for p, c in cells.items()},
                }
            )
    return _table(rows, ["dominant cover", "places", *pairs], {p: _pct for p in pairs})


def _costs(stages: list[dict]) -> str:
    rows = [
        {
            **s,
            "trains": f"{s['student']} against {s['teacher']}",
            "parameters (M)": s["parameters"] / 1e6,
        }
        for s in stages
    ]
    return _table(
        rows,
        [
            "stage",
            "trains",
            "steps",
            "seconds",
            "samples_per_s",
            "parameters (M)",
            "peak_memory_mb",
        ],
        {
            "seconds": lambda v: f"{v:.0f}",
            "samples_per_s": lambda v: f"{v:.0f}",
            "parameters (M)": lambda v: f"{v:.2f}",
            "peak_memory_mb": lambda v: f"{v:.0f}",
        },
    )


def _zeroshot(result: dict) -> str:
    if result.get("skipped"):
        return f"<p>No zero-shot evaluation: {html.escape(result['skipped'])}</p>"
    rows = [{"modality": m, **v} for m, v in result["modalities"].items()]
    table = _table(
        rows,
        ["modality", "accuracy", "chance", "majority", "majority_class", "places"],
        {"accuracy": _pct, "chance": _pct, "majority": _pct},
    )
    if not result.get("unlearned_words"):
        return table
    return table + f"<p>{html.escape(unlearned_note(result['unlearned_words']))}</p>"


def write_report(
    space_path: str | Path,
    out: str | Path,
    data: str | Path | None = None,
    queries: Iterable[str | tuple[str, Any]] = DEFAULT_QUERIES,
    top: int = 8,
    embeddings: dict | None = None,
    results: dict | None = None,
) -> Path:
    """Write the report of a space (and, with ``data``, its evaluation, queries and maps).

    ``queries`` are texts, or ``(modality, value)`` pairs of any modality the space holds
    (``("location", "40.5,-74.0")``, ``("audio", "rain.flac")``). ``embeddings`` (from
    :func:`geobind.eval.embed.embed_columns` on ``data``) saves embedding the dataset again
    when the caller already has them; ``results`` (the demo's: retrieval, floor, ceiling,
    zero-shot, breakdown and per-stage costs) saves evaluating it again.
    """
    space_path, out = Path(space_path), Path(out)
    space = load_space(space_path)
    parts = [
        f"<h1>geobind space <code>{html.escape(str(space_path))}</code></h1>",
        "<h2>Encoders</h2>",
        _encoders(space),
        "<h2>Training</h2>",
        _curves(space_path),
    ]
    if data is not None:
        parts += _data_sections(space, str(data), list(queries), top, embeddings, results)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>geobind report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}{READY}</body></html>"
    )
    atomic_write(out, page.encode())
    return out


def _data_sections(
    space: Any,
    data: str,
    queries: list[str | tuple[str, Any]],
    top: int,
    embeddings: dict | None,
    results: dict | None,
) -> list[str]:
    embeddings = embeddings or embed_columns(space, data)
    results = results or _evaluate(space, data, embeddings)
    if "zeroshot" not in results:
        results["zeroshot"] = zeroshot_landcover(space, data, embeddings=embeddings)
    parts = [
        f"<h2>Retrieval on <code>{html.escape(data)}</code></h2>",
        "<p>Each query's own place is the one right answer; chance is k / gallery. The floor "
        "of a trained pair is simple features (colour histograms, band energies, a bag of "
        "words) and linear CCA fitted on that stage's training pairs; the ceiling, places "
        "matched by their true land-cover fractions. A pair no stage trained has no floor: it "
        "emerges through the anchor.</p>",
        _retrieval(results),
        "<h2>Where it works: retrieval by dominant land cover</h2>",
        _breakdown(results["breakdown"]),
        "<h2>Zero-shot land cover from text prompts</h2>",
        _zeroshot(
            results.get("zeroshot") or zeroshot_landcover(space, data, embeddings=embeddings)
        ),
    ]
    if results.get("stages"):
        parts += ["<h2>What each modality cost</h2>", _costs(results["stages"])]
    parts.append("<h2>Example queries</h2>")
    index = build_index(space, data)
    with tempfile.TemporaryDirectory() as tmp:
        for i, query in enumerate(queries):
            modality, value = ("text", query) if isinstance(query, str) else query
            label = query_label(modality, value)
            hits = search(space, modality, [value], top=top, index=index)[0]
            grid = render_hits(hits, data, Path(tmp) / f"hits{i}.png", title=label)
            drawn = similarity_map(space, data, modality, value, Path(tmp) / f"map{i}.png")
            parts.append(
                f"<h3>{html.escape(label)}</h3>"
                f"<figure><img alt='top tiles for {html.escape(label)}' "
                f"src='{_file_uri(grid)}'><figcaption>the {top} best tiles"
                f"</figcaption></figure><figure><img alt='map for "
                f"{html.escape(label)}' src='{_file_uri(drawn.path)}'><figcaption>"
                f"similarity over the map, beside the satellite mosaic</figcaption>"
                f"</figure>"
            )
    return parts


def _evaluate(space: Any, data: str, embeddings: dict) -> dict:
    """Retrieval, floor and ceiling, breakdown and zero-shot of a space on a dataset."""
    results = evaluate_space(space, data, embeddings=embeddings)
    results.update(baselines(space, data, None, results["ks"], embeddings=embeddings))
    rows = range(results["places"])
    results["breakdown"] = retrieval_by_class(embeddings, data, rows, BREAKDOWN_PAIRS)
    results["zeroshot"] = zeroshot_landcover(space, data, embeddings=embeddings)
    return results


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
