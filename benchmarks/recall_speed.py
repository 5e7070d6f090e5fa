"""Recall@k on an n x n similarity problem: geobind's ranks + recall_metrics vs torchmetrics.

    python benchmarks/recall_speed.py [--n 10000] [--dim 64] [--ks 1,5,10,100] [--limit 180]

Queries are random unit vectors; each gallery row is its query plus noise, renormalised, so the
recalls are well above chance. Each method runs in its own process (same seed, same data), so
its peak resident memory (``ru_maxrss``) is its own. torchmetrics gets one ``RetrievalRecall``
per k over the flattened ``n * n`` scores, shifted by +2 because torchmetrics counts a relevant
item only when its score is > 0. When torchmetrics runs past ``--limit`` seconds it is stopped
and measured at ``--fallback-n`` instead, its time and memory extrapolated by ``(n / m)^2``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def problem(n: int, dim: int):
    """The same queries and gallery in every process."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    query = F.normalize(torch.randn(n, dim, generator=gen), dim=-1)
    gallery = F.normalize(
        query + 3.0 * F.normalize(torch.randn(n, dim, generator=gen), dim=-1), dim=-1
    )
    return query, gallery


def run_geobind(query, gallery, ks):
    from geobind.eval.retrieval import ranks, recall_metrics

    metrics = recall_metrics(ranks(query, gallery), ks)
    return {f"R@{k}": metrics[f"R@{k}"] for k in ks}


def run_torchmetrics(query, gallery, ks):
    import torch
    from torchmetrics.retrieval import RetrievalRecall

    n = len(query)
    preds = (query @ gallery.T + 2).flatten()
    target = torch.eye(n, dtype=torch.bool).flatten()
    indexes = torch.arange(n)[:, None].expand(n, n).flatten()
    out = {}
    for k in ks:
        metric = RetrievalRecall(top_k=k)
        metric.update(preds, target, indexes)
        out[f"R@{k}"] = float(metric.compute())
        del metric
    return out


def child(method: str, n: int, dim: int, ks: list[int]) -> None:
    """Measure one method here and print a JSON line."""
    import geobind.eval.retrieval  # noqa: F401  imports stay out of the time and the memory

    if method == "torchmetrics":
        import torchmetrics.retrieval  # noqa: F401

    query, gallery = problem(n, dim)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    metrics = (run_geobind if method == "geobind" else run_torchmetrics)(query, gallery, ks)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "method": method,
                "n": n,
                "seconds": seconds,
                "metrics": metrics,
                "peak_mb": peak / 1024,
                "extra_mb": (peak - base) / 1024,
            }
        )
    )


def measure(method: str, n: int, dim: int, ks: list[int], limit: float | None) -> dict | None:
    """Run ``child`` in a fresh process; None when it ran past ``limit`` seconds."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--n",
        str(n),
        "--dim",
        str(dim),
        "--ks",
        ",".join(map(str, ks)),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--ks", default="1,5,10,100")
    parser.add_argument(
        "--limit", type=float, default=180.0, help="seconds torchmetrics may take at full size"
    )
    parser.add_argument("--fallback-n", type=int, default=2000)
    parser.add_argument("--child", choices=("geobind", "torchmetrics"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if args.child:
        return child(args.child, args.n, args.dim, ks)

    rows = [measure("geobind", args.n, args.dim, ks, None)]
    theirs = measure("torchmetrics", args.n, args.dim, ks, args.limit)
    if theirs is None:  # compare at the fallback size, extrapolate torchmetrics' cost
        small = args.fallback_n
        rows += [
            measure("geobind", small, args.dim, ks, None),
            measure("torchmetrics", small, args.dim, ks, None),
        ]
        scale = (args.n / small) ** 2
        rows.append(
            {
                **rows[-1],
                "n": args.n,
                "seconds": rows[-1]["seconds"] * scale,
                "extra_mb": rows[-1]["extra_mb"] * scale,
                "peak_mb": float("nan"),
                "metrics": {},
                "method": "torchmetrics*",
            }
        )
    else:
        rows.append(theirs)
    ours, ref = (rows[0], rows[1]) if theirs else (rows[1], rows[2])
    diff = max(abs(ours["metrics"][m] - ref["metrics"][m]) for m in ours["metrics"])

    print(
        f"Recall@k, k in {args.ks}: n queries against n gallery rows, dim {args.dim}; "
        f"one process per method"
    )
    print(f"{'method':14s}{'n':>7s}{'seconds':>10s}{'extra MB':>10s}{'peak RSS MB':>13s}  recalls")
    for r in rows:
        recalls = "  ".join(f"{m} {100 * v:.2f}%" for m, v in r["metrics"].items())
        print(
            f"{r['method']:14s}{r['n']:7d}{r['seconds']:10.2f}{r['extra_mb']:10.0f}"
            f"{r['peak_mb']:13.0f}  {recalls}"
        )
    big = rows[-1]
    print(
        f"at n={args.n}: geobind x{big['seconds'] / rows[0]['seconds']:.0f} faster; largest "
        f"|difference| of Recall@k between the two (n={ours['n']}): {diff:.2e}"
    )
    if theirs is None:
        print(
            f"* torchmetrics ran past {args.limit:.0f} s at n={args.n}: measured at "
            f"n={args.fallback_n}, its time and extra memory extrapolated x(n/m)^2"
        )


if __name__ == "__main__":
    main()
