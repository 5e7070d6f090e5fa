"""How hard retrieval in a world is: the recall of an oracle that knows the land covers."""

from __future__ import annotations

import numpy as np

__all__ = ["oracle_recall_at_k"]


def oracle_recall_at_k(
    fractions: np.ndarray,
    k: int = 10,
    *,
    gallery: int = 1000,
    resolution: float | None = None,
    metric: str = "l1",
    seed: int = 0,
) -> float:
    """Recall@k of matching places by their true land-cover fraction vectors.

    Each place in a gallery (the first ``gallery`` rows, or a seeded sample of that many when
    there are more) is a query; the gallery is ranked by distance between fraction vectors
    (``"l1"`` or ``"cosine"``) and the query's own place is the one right answer. Ties, such as
    the many all-sea or all-forest tiles, are broken at random (seeded), so this is the
    ceiling of any retrieval whose only shared signal is the land covers.

    :param resolution: quantise fractions to this step first (e.g. ``0.1``) for the ceiling
        of a modality that conveys the mix only that precisely; ``None`` keeps them exact.
    :returns: recall in [0, 1]; chance is ``k / gallery``.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"fractions must be a non-empty [n, C] array, got shape {f.shape}")
    rng = np.random.default_rng(seed)
    if len(f) > gallery:
        f = f[np.sort(rng.choice(len(f), size=gallery, replace=False))]
    if resolution is not None:
        if resolution <= 0:
            raise ValueError("resolution must be > 0")
        f = np.round(f / resolution) * resolution
    if metric == "l1":
        dist = np.abs(f[:, None, :] - f[None, :, :]).sum(-1)
    elif metric == "cosine":
        unit = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)
        dist = 1.0 - unit @ unit.T
    else:
        raise ValueError(f"metric must be 'l1' or 'cosine', got {metric!r}")
    dist = np.round(dist, 9)  # exact ties stay ties despite float noise
    n = len(f)
    own = np.diag(dist)[:, None]
    closer = (dist < own).sum(1)  # strictly better candidates always rank above
    tied = (dist == own).sum(1) - 1  # others at the same distance: a random share ranks above
    above = closer + np.floor(rng.random(n) * (tied + 1)).astype(np.int64)
    return float(np.mean(above < k))
