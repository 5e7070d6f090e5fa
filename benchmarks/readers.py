"""Readers the ceiling benchmarks fit from one side's features onto the frozen anchor, and the
places they read.

Each reader takes ``x`` and ``anchor``, dicts of ``train``, ``val`` and ``held`` rows (features,
and the anchor's unit embeddings of the same places' tiles), fits on ``train``, picks its
setting or epoch by ``score(prediction, anchor)`` on ``val`` (higher is better), and returns its
prediction for ``held`` with what it chose. :func:`open_places` reads the command line they
share (``--space``, ``--world``) and the rows they split.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Score = Callable[[np.ndarray, np.ndarray], float]

#: The splits every reader fits, chooses and is measured on.
SPLITS = ("train", "val", "held")


@dataclass
class Places:
    """A space and the audio stage's pairs of its synthetic world, by split: the training and
    validation rows of ``audio.lance`` and every held-out place of ``heldout.lance``."""

    space: Any
    world: Path
    sets: dict[str, Any]
    rows: dict[str, list[int]]

    def unit(self, x: Any) -> np.ndarray:
        """Rows of a tensor made unit length, as numpy."""
        import torch

        return torch.nn.functional.normalize(x.float(), dim=1).numpy()

    def read(self, split: str, inputs: str) -> list:
        """``inputs``' raw values of ``split``'s rows."""
        from geobind.data.pairs import read_inputs

        return list(read_inputs(self.sets[split], inputs, self.rows[split]))

    def column(self, split: str, name: str) -> np.ndarray:
        """A numeric column (or a column of lists: ``landcover``) of ``split``'s rows."""
        values = self.sets[split].take(self.rows[split], columns=[name]).column(name)
        return np.asarray(values.to_pylist(), dtype=np.float64)

    def anchor(self) -> dict[str, np.ndarray]:
        """The anchor's unit embeddings of every split's tiles."""
        return {
            k: self.unit(self.space.embed("satellite", self.read(k, "satellite"), 256))
            for k in SPLITS
        }


def open_places(name: str, doc: str | None) -> Places:
    """Read ``--space`` and ``--world`` (the demo's by default) from the command line, check
    that they are there (or exit naming what is missing), and open them."""
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--space", default="geobind-demo/space")
    parser.add_argument("--world", default="geobind-demo/world")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from geobind.data.pairs import open_pairs
    from geobind.data.reader import split_rows
    from geobind.space import load_space

    pairs, heldout = Path(args.world, "audio.lance"), Path(args.world, "heldout.lance")
    if (
        not pairs.is_dir()
        or not heldout.is_dir()
        or not Path(args.space, "manifest.json").is_file()
    ):
        raise SystemExit(
            f"{name}: need a synthetic world ({pairs} and {heldout}) and a space "
            f"({args.space}); run `make demo` first or pass --world and --space"
        )
    ds, ho = open_pairs(pairs), open_pairs(heldout)
    return Places(
        space=load_space(args.space),
        world=Path(args.world),
        sets={"train": ds, "val": ds, "held": ho},
        rows={
            "train": split_rows(ds, "train"),
            "val": split_rows(ds, "val"),
            "held": list(range(ho.count_rows())),
        },
    )


def world_index(name: str, world: Any, world_dir: Path, ids: Sequence[str]) -> list[int]:
    """Each row id's place index in ``world`` (generated into ``world_dir``); stops, naming the
    row, at an id that is no place of it."""
    from geobind.world.world import place_id

    out = []
    for pid in ids:
        tail = pid.rsplit("-", 1)[-1]
        index = int(tail) if tail.isdigit() else -1
        if index < 0 or place_id(world.config.seed, index) != pid:
            raise SystemExit(f"{name}: row {pid!r} is no place of the world {world_dir}")
        out.append(index)
    return out


def source_matrix(traces: Sequence[dict], columns: Sequence[str]) -> np.ndarray:
    """Clips as what went into them (``Place.sources``), one column per source: levels
    (0.01-1.4) and counts (0-30) on one footing; a source not in ``columns`` is dropped."""
    x = np.array([[t.get(k, 0.0) for k in columns] for t in traces], np.float64)
    return np.log1p(10.0 * x)


def fourier(x: np.ndarray, scale: float, dims: int = 1024, seed: int = 0) -> np.ndarray:
    """Random Fourier features of standardised rows (a Gaussian kernel of width 1/scale).

    Six lines rather than scikit-learn's ``RBFSampler``: scikit-learn is no dependency of the
    project (it arrives only through laion_clap's)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, scale, (x.shape[1], dims))
    b = rng.uniform(0.0, 2 * np.pi, dims)
    return np.cos(x @ w + b) * np.sqrt(2.0 / dims)


def recall(q: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """R@10 in percent of ``q[i] -> g[i]`` and of ``g[i] -> q[i]`` (``q`` made unit length;
    ``g`` is the anchor's or a tower's unit embeddings), ties broken as the project's eval does."""
    import torch

    from geobind.eval.retrieval import ranks, recall_metrics

    q_t = torch.nn.functional.normalize(torch.from_numpy(q).float(), dim=1)
    g_t = torch.from_numpy(g).float()
    there, back = (
        100 * recall_metrics(ranks(a, b), (10,))["R@10"] for a, b in ((q_t, g_t), (g_t, q_t))
    )
    return there, back


def _moments(x: np.ndarray, standardise: bool) -> tuple[np.ndarray | float, np.ndarray | float]:
    """What the rows are centred and scaled by: the training rows' mean and spread, or nothing
    (a bag of words' 0/1 columns: scaled to unit spread, its rarest words would weigh most)."""
    if not standardise:
        return 0.0, 1.0
    return x.mean(0), x.std(0) + 1e-6


def ridge_reader(
    x: dict[str, np.ndarray],
    anchor: dict[str, np.ndarray],
    score: Score,
    scales: Sequence[float | None] = (0.05, 0.1, 0.3, 1.0, 3.0),
    ridges: Sequence[float] = (1e-5, 1e-3, 1e-1),
    standardise: bool = True,
) -> tuple[np.ndarray, str]:
    """A ridge regression onto the anchor, in closed form, from random Fourier features of
    the standardised rows (``scale`` None: from the standardised rows themselves)."""
    mean, std = _moments(x["train"], standardise)
    best: tuple[float, np.ndarray, str] | None = None
    for scale in scales:
        feats = {
            k: (v - mean) / std if scale is None else fourier((v - mean) / std, scale)
            for k, v in x.items()
        }
        a = feats["train"]
        for ridge in ridges:
            w = np.linalg.solve(
                a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ anchor["train"]
            )
            got = score(feats["val"] @ w, anchor["val"])
            if best is None or got > best[0]:
                kind = "linear" if scale is None else f"scale {scale:g}"
                best = (got, feats["held"] @ w, f"{kind}, ridge {ridge:g}")
    assert best is not None
    return best[1], best[2]


def infonce_reader(
    x: dict[str, np.ndarray],
    anchor: dict[str, np.ndarray],
    score: Score,
    epochs: int = 40,
    width: int = 512,
    dropout: float = 0.3,
    temperature: float = 0.07,
    seed: int = 0,
    standardise: bool = True,
) -> tuple[np.ndarray, str]:
    """A two-layer MLP trained as the stages train: InfoNCE of each row against every training
    row's anchor embedding (a bank), AdamW at 1e-3, batches of 128; the epoch chosen on val."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    mean, std = _moments(x["train"], standardise)
    t = {k: torch.from_numpy((v - mean) / std).float() for k, v in x.items()}
    bank = torch.from_numpy(anchor["train"]).float()
    net = torch.nn.Sequential(
        torch.nn.Dropout(dropout),
        torch.nn.Linear(t["train"].shape[1], width),
        torch.nn.GELU(),
        torch.nn.Linear(width, bank.shape[1]),
    )
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    best: tuple[float, np.ndarray, str] | None = None
    for epoch in range(epochs):
        net.train()
        for batch in torch.randperm(len(t["train"])).split(128):
            logits = F.normalize(net(t["train"][batch]), dim=1) @ bank.T / temperature
            loss = F.cross_entropy(logits, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            got = score(net(t["val"]).numpy(), anchor["val"])
            if best is None or got > best[0]:
                best = (got, net(t["held"]).numpy(), f"epoch {epoch + 1}")
    assert best is not None
    return best[1], best[2]
