"""Random fields and integer hashes: the raw material of the world (numpy + scipy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["hash_u01", "hash_u64", "smooth_noise", "fractal_noise", "upsample", "upsample_int"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wrap-around is intended)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash_u64(*keys: object) -> np.ndarray:
    """A well-mixed uint64 hash of integer keys (scalars or broadcastable arrays)."""
    with np.errstate(over="ignore"):
        h = np.atleast_1d(np.asarray(0x2545F4914F6CDD1D, dtype=np.uint64))
        for key in keys:
            k = np.atleast_1d(np.asarray(key)).astype(np.int64).astype(np.uint64)
            h = _mix(h ^ (k + _GOLD + (h << np.uint64(6)) + (h >> np.uint64(2))))
    return h


def hash_u01(*keys: object) -> np.ndarray:
    """Uniform floats in [0, 1) from integer keys, deterministic."""
    return (hash_u64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, zero mean and unit standard deviation (float32)."""
    field = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma, mode="wrap") if sigma > 0 else field
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sigmas: tuple[float, ...],
    roughness: float = 0.55,
) -> np.ndarray:
    """A sum of smooth noises from coarse to fine, each octave ``roughness`` times weaker."""
    total = np.zeros(shape, np.float32)
    weight = 1.0
    for sigma in sigmas:
        total += weight * smooth_noise(rng, shape, sigma)
        weight *= roughness
    total -= total.mean()
    total /= total.std() + 1e-12
    return total


def _up_axis(a: np.ndarray, factor: int, axis: int) -> np.ndarray:
    n = a.shape[axis]
    pos = (np.arange(n * factor, dtype=np.float64) + 0.5) / factor - 0.5
    base = np.floor(pos)
    t = (pos - base).astype(np.float32)
    i0 = np.clip(base.astype(np.int64), 0, n - 1)
    i1 = np.clip(base.astype(np.int64) + 1, 0, n - 1)
    shape = [1] * a.ndim
    shape[axis] = -1
    a0 = np.take(a, i0, axis=axis)
    a1 = np.take(a, i1, axis=axis)
    a1 -= a0
    a1 *= t.reshape(shape)
    a0 += a1
    return a0


def upsample_int(low: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel-centre aligned), cropped to ``shape``."""
    low = np.asarray(low, dtype=np.float32)
    cols = _up_axis(low, factor, 1)[:, : shape[1]]
    return _up_axis(cols, factor, 0)[: shape[0]]


def upsample(low: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a field to exactly ``shape`` (bilinear by default)."""
    zoom = (shape[0] / low.shape[0], shape[1] / low.shape[1])
    out = ndimage.zoom(low, zoom, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # rounding guard
        out = out[: shape[0], : shape[1]]
        if out.shape != tuple(shape):
            out = np.pad(
                out, [(0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])], mode="edge"
            )
    return out
