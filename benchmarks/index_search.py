"""Vector search of geobind.search.index: Lance's vector index against exact search, same run.

    python benchmarks/index_search.py [--sizes 100000 1000000] [--dims 64] [--queries 100]

Synthetic clustered unit vectors (a gallery drawn around ``rows / 100`` random centres, queries
drawn the same way but not in the gallery), written by ``geobind.search.index.write_vectors`` and
indexed by ``geobind.search.index.add_vector_index``, exactly as ``geobind index build`` does. 64 is
the demo space's ``embed_dim``; 512 is ViT-B/32's. For each size: the index build time,
recall@10 of the vector index against exact search, and the latency of one query at a time and
of a batch, for the index and for exact search (one matmul + top-k over vectors in memory).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geobind.search.index import (
    CANDIDATES_PER_RESULT,
    TARGET_PARTITION_SIZE,
    SearchIndex,
    add_vector_index,
    write_vectors,
)

K = 10


def clustered(
    rows: int, dim: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 0.6
) -> np.ndarray:
    """Unit vectors around random centres (``spread`` sets how loose a cluster is)."""
    out = np.empty((rows, dim), np.float32)
    for start in range(0, rows, 100_000):  # in chunks: 1M x 512 x float64 would be 4 GB
        n = min(100_000, rows - start)
        pick = centres[rng.integers(0, len(centres), n)]
        noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        part = pick + noise
        out[start : start + n] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def batches(vectors: np.ndarray, size: int = 65_536):
    for start in range(0, len(vectors), size):
        part = vectors[start : start + size]
        ids = [f"v{i}" for i in range(start, start + len(part))]
        zeros = [0.0] * len(part)
        yield ids, zeros, zeros, part


def timed(fn, repeat: int = 1):
    started = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - started) / repeat


def recall(ann: list[list[dict]], exact: list[list[dict]]) -> float:
    hits = [len({h["id"] for h in a} & {h["id"] for h in e}) / len(e) for a, e in zip(ann, exact)]
    return float(np.mean(hits))


def run(
    rows: int, dim: int, queries: int, seed: int, target: int, candidates: list[int]
) -> list[dict]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(10, rows // 100), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    gallery = clustered(rows, dim, centres, rng)
    q = torch.from_numpy(clustered(queries, dim, centres, rng))
    with tempfile.TemporaryDirectory(prefix="geobind-index-bench-") as tmp:
        uri = Path(tmp) / "vectors.lance"
        _, write_s = timed(lambda g=gallery: write_vectors(uri, batches(g), dim))
        del gallery
        gc.collect()
        ds = __import__("lance").dataset(str(uri))
        built = add_vector_index(ds, target_partition_size=target)
        index = SearchIndex(uri, {}, __import__("lance").dataset(str(uri)))
        _, load_s = timed(index.vectors)
        exact, exact_batch_s = timed(lambda: index.query(q, K, exact=True), 3)
        _, exact_one_s = timed(lambda: [index.query(v, K, exact=True) for v in q[:20]])
        index.query(q[:2], K, exact=False)  # warm the index cache
        out = []
        for c in candidates:
            ann, ann_batch_s = timed(lambda c=c: index.query(q, K, exact=False, candidates=c))
            _, ann_one_s = timed(
                lambda c=c: [index.query(v, K, exact=False, candidates=c) for v in q]
            )
            out.append(
                {
                    "rows": rows,
                    "dim": dim,
                    "partitions": built["num_partitions"],
                    "candidates": c,
                    "write_s": write_s,
                    "build_s": built["seconds"],
                    "recall@10": recall(ann, exact),
                    "ann_ms_one": 1000 * ann_one_s / len(q),
                    "ann_ms_batch": 1000 * ann_batch_s / len(q),
                    "exact_ms_one": 1000 * exact_one_s / 20,
                    "exact_ms_batch": 1000 * exact_batch_s / len(q),
                    "load_s": load_s,
                }
            )
            print(row_text(out[-1]), flush=True)
    return out


HEADER = (
    "rows",
    "dim",
    "parts",
    "cand",
    "write s",
    "build s",
    "recall@10",
    "ANN ms/q (1)",
    "ANN ms/q (batch)",
    "exact ms/q (1)",
    "exact ms/q (batch)",
    "load s",
)


def row_text(r: dict) -> str:
    cells = (
        f"{r['rows']:,}",
        r["dim"],
        r["partitions"],
        r["candidates"],
        f"{r['write_s']:.1f}",
        f"{r['build_s']:.1f}",
        f"{r['recall@10']:.3f}",
        f"{r['ann_ms_one']:.2f}",
        f"{r['ann_ms_batch']:.2f}",
        f"{r['exact_ms_one']:.2f}",
        f"{r['exact_ms_batch']:.3f}",
        f"{r['load_s']:.2f}",
    )
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[64])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-partition-size", type=int, default=TARGET_PARTITION_SIZE)
    parser.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=[CANDIDATES_PER_RESULT],
        help="ANN candidates fetched per result, re-scored exactly",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{args.queries} queries, k={K}, torch threads {torch.get_num_threads()}")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for dim in args.dims:
        for rows in args.sizes:
            run(rows, dim, args.queries, args.seed, args.target_partition_size, args.candidates)


if __name__ == "__main__":
    main()
