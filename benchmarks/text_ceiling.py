"""What captions say about a tile through the anchor, read by models trained on them directly.

    python benchmarks/text_ceiling.py [--space geobind-demo/space] [--world geobind-demo/world]

Text -> satellite is never trained: the text tower learned against ground panoramas (the CLIP
stage), the anchor against those panoramas' embeddings, and text finds tiles through the
anchor. How far could it go? This trains two readers of the captions *directly* against the
frozen anchor's embeddings of the same places' tiles (the CLIP stage's training captions,
their tiles from the anchor stage's dataset), and ranks the held-out places with each:

- a linear ridge map from the floor's bag of words (the ridge chosen on the validation rows);
- a two-layer MLP on the same words trained with InfoNCE against every training tile (dropout
  0.3, the epoch chosen on the validation rows);

beside the space's own text tower, which never saw a tile. A reader trained on 8,100 caption
and tile pairs is a generous reference for a tower that saw none; what it reaches says how much
the world's captions tell one tile from another through this anchor (many of them are as plain
as "cropland").
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from readers import infonce_reader, recall, ridge_reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="geobind-demo/space")
    parser.add_argument("--world", default="geobind-demo/world")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import torch.nn.functional as F

    from geobind.data.pairs import open_pairs, read_inputs, read_values
    from geobind.plugins import get_registry
    from geobind.space import load_space

    paths = [Path(args.world, f"{n}.lance") for n in ("captions", "ground", "heldout")]
    if not all(p.is_dir() for p in paths) or not Path(args.space, "manifest.json").is_file():
        raise SystemExit(
            f"text_ceiling: need a synthetic world ({', '.join(map(str, paths))}) and a space "
            f"({args.space}); run `make demo` first or pass --world and --space"
        )
    space = load_space(args.space)
    for modality in ("text", "satellite"):
        if modality not in space.modalities:
            raise SystemExit(f"text_ceiling: the space {args.space} has no {modality} encoder")
    captions, ground, held = (open_pairs(p) for p in paths)
    rows = captions.to_table(columns=["id", "split"]).to_pylist()
    where = {i: k for k, i in enumerate(ground.to_table(columns=["id"]).column("id").to_pylist())}
    split = {
        s: [k for k, r in enumerate(rows) if r["split"] == s and r["id"] in where]
        for s in ("train", "val")
    }
    if not split["train"] or not split["val"]:
        raise SystemExit(
            "text_ceiling: the captions share no training or validation place with the tiles"
        )

    def unit(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1)

    def tiles(ds, indices: list[int]) -> torch.Tensor:
        return unit(space.embed("satellite", list(read_inputs(ds, "satellite", indices)), 256))

    anchor = {
        s: tiles(ground, [where[rows[k]["id"]] for k in split[s]]).numpy() for s in ("train", "val")
    }
    texts = {s: read_values(captions, "text", split[s]) for s in ("train", "val")}
    everyone = list(range(held.count_rows()))
    anchor["held"] = tiles(held, everyone).numpy()
    texts["held"] = read_values(held, "text", everyone)
    words = get_registry().modality("text").features().fit(texts["train"])
    x = {s: words.transform(v) for s, v in texts.items()}

    def score(q: np.ndarray, g: np.ndarray) -> float:
        return recall(q, g)[0]

    mlp, _ = infonce_reader(x, anchor, score, seed=args.seed, standardise=False)
    ridge, _ = ridge_reader(
        x, anchor, score, scales=(None,), ridges=(1e-4, 1e-3, 1e-2), standardise=False
    )
    results = {
        "bag of words, linear ridge map": ridge,
        "bag of words, MLP trained with InfoNCE": mlp,
        "the space's text tower (never saw a tile)": unit(
            space.embed("text", texts["held"], 256)
        ).numpy(),
    }
    print(
        f"R@10 on {len(everyone)} held-out places (chance {1000 / len(everyone):.1f}%); readers "
        f"trained on {len(split['train'])} caption and tile pairs"
    )
    print(f"{'text side':45s} {'text->sat':>10s} {'sat->text':>10s}")
    for name, q in results.items():
        t2s, s2t = recall(q, anchor["held"])
        print(f"{name:45s} {t2s:9.1f}% {s2t:9.1f}%")


if __name__ == "__main__":
    main()
