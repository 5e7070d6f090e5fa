"""What any satellite anchor could reach against the space's frozen ground tower.

    python benchmarks/anchor_ceiling.py [--space geobind-demo/space] [--world geobind-demo/world]
        [--renders 8] [--places 1000]

The anchor sees a tile, never the moment its ground picture was taken, so against a frozen
ground tower it can at best predict that tower's *mean* embedding of a place over the pictures
the place might have. This re-renders each held-out place of the synthetic world (other visits:
time of day, weather, the exact spot) and prints, as R@10 over the held-out places:

- the ground tower's own place identity: a picture of a place retrieves another picture of the
  same place, taken under the same conditions (only the spot differs) and under other ones;
- the ceiling of satellite -> ground: the mean embedding of ``--renders`` other pictures of each
  place retrieves its held-out picture (what a perfect anchor would do);
- the learned satellite -> ground of the space, for comparison.

Only the synthetic world can show a place again; with real data the first line is what to
measure (two photos of one place, taken at different times).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="geobind-demo/space")
    parser.add_argument("--world", default="geobind-demo/world")
    parser.add_argument("--renders", type=int, default=8)
    parser.add_argument("--places", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lance
    import torch

    from geobind.data.pairs import read_values
    from geobind.data.synthetic import open_world
    from geobind.errors import GeobindError
    from geobind.eval.retrieval import ranks, recall_metrics
    from geobind.space import load_space
    from geobind.world.world import place_id

    stamp = Path(args.world, "world.json")
    if not stamp.is_file() or not Path(args.space, "manifest.json").is_file():
        raise SystemExit(
            f"anchor_ceiling: need a synthetic world ({stamp} not found) and a space "
            f"({args.space}); run `make demo` first or pass --world and --space"
        )
    try:
        world = open_world(args.world)
    except GeobindError as exc:
        raise SystemExit(f"anchor_ceiling: {exc}") from exc
    space = load_space(args.space)
    ds = lance.dataset(str(Path(args.world, "heldout.lance")))
    ids = ds.to_table(columns=["id"]).column("id").to_pylist()[: args.places]
    index = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert all(place_id(world.config.seed, k) == i for k, i in zip(index, ids))
    rows = list(range(len(ids)))

    def embed(modality: str, values: list) -> torch.Tensor:
        return space.embed(modality, values, batch_size=256)

    def pictures(tag: int, seen: list | None = None) -> torch.Tensor:
        return embed(
            "ground",
            [
                world.place(
                    k,
                    rng=np.random.default_rng([tag, k]),
                    modalities=("ground",),
                    seen=None if seen is None else seen[n],
                ).ground
                for n, k in enumerate(index)
            ],
        )

    def r10(query: torch.Tensor, gallery: torch.Tensor) -> str:
        m = recall_metrics(ranks(query, gallery), ks=(1, 10))
        r1, r10, med = 100 * m["R@1"], 100 * m["R@10"], m["median_rank"]
        return f"R@10 {r10:5.1f}%  (R@1 {r1:4.1f}%, median rank {med:.0f})"

    held = embed("ground", read_values(ds, "ground", rows))
    # a space whose anchor stage has not run yet (a CLIP stage alone) still has a ceiling
    learned = space.anchor in space.modalities
    sat = embed(space.anchor, read_values(ds, space.anchor, rows)) if learned else None
    first = [world.place(k, rng=np.random.default_rng([1, k]), modalities=()) for k in index]
    same = [(p.conditions.time_of_day, p.conditions.weather) for p in first]
    a, b, c = pictures(1), pictures(2, same), pictures(3)
    mean = torch.zeros_like(held)
    for k in range(args.renders):
        mean += pictures(100 + k)
    mean = torch.nn.functional.normalize(mean, dim=-1)
    print(f"{len(ids)} held-out places of {args.world}, the ground tower of {args.space}:")
    print(f"  picture -> picture, same conditions, another spot:  {r10(a, b)}")
    print(f"  picture -> picture, another visit:                  {r10(a, c)}")
    print(f"  ceiling: mean of {args.renders} other pictures -> held-out:   {r10(mean, held)}")
    if sat is not None:
        print(f"  learned: {space.anchor} -> ground:                 {r10(sat, held)}")
    else:
        print(f"  learned: none ({args.space} holds no {space.anchor} encoder yet)")


if __name__ == "__main__":
    main()
