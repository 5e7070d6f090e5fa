"""Readers the ceiling benchmarks fit from one side's features onto the frozen anchor.

Each takes ``x`` and ``anchor``, dicts of ``train``, ``val`` and ``held`` rows (features, and
the anchor's unit embeddings of the same places' tiles), fits on ``train``, picks its setting
or epoch by ``score(prediction, anchor)`` on ``val`` (higher is better), and returns its
prediction for ``held`` with what it chose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Score = Callable[[np.ndarray, np.ndarray], float]


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
