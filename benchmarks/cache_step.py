"""A training step of the anchor stage with and without the frozen-embedding cache.

    python benchmarks/cache_step.py WORLD_DIR SPACE [--steps 10]

WORLD_DIR is a world made by `geobind world make` (or the demo's geobind-demo/world) and SPACE
a space holding the CLIP ground tower (the demo's geobind-demo/space). Both variants run the
same batches in the same process: with the cache the teacher's embeddings are looked up; without
it the frozen teacher runs on every batch.
"""

from __future__ import annotations

import argparse
import time

import torch

from geobind.data.pairs import read_values
from geobind.space import Space
from geobind.train import load_recipe
from geobind.train.distributed import Dist
from geobind.train.stage import StageRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world")
    parser.add_argument("space")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    recipe = load_recipe("world/anchor", [f"space={args.space}", f"data_dir={args.world}"])
    run = StageRun("anchor", recipe.stages["anchor"], Space(args.space), Dist())
    run.frozen_teacher_embeddings()
    batches = [next(run.batches()) for _ in range(args.steps)]
    teacher_column = run.teacher.modality.column
    teacher_prep = run.teacher.preprocess(False)

    def step(batch, cached: bool) -> None:
        z = (
            run.teacher_z[batch["row"]]
            if cached
            else run.teacher(
                torch.stack(
                    [
                        teacher_prep(v)
                        for v in read_values(
                            run.data.dataset, teacher_column, batch["row"].tolist()
                        )
                    ]
                )
            )
        )
        loss = run.model.loss(run.student(batch["satellite"]), z)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()

    timings = {}
    for cached in (True, False, True, False):
        start = time.perf_counter()
        for batch in batches:
            step(batch, cached)
        timings.setdefault(cached, []).append((time.perf_counter() - start) / len(batches))
    with_cache, without = min(timings[True]), min(timings[False])
    print(
        f"anchor step, batch {recipe.stages['anchor'].batch_size}: with cache "
        f"{with_cache * 1000:.0f} ms, without {without * 1000:.0f} ms, "
        f"ratio {without / with_cache:.2f}x"
    )


if __name__ == "__main__":
    main()
