"""geobind-location: where a place is, bound to the satellite anchor.

Registers the modality ``location``: a place's latitude and longitude, read together from the
``lat`` and ``lon`` columns every pair dataset carries, so it needs no column of its own. One
convention throughout: ``(lat, lon)`` in degrees, latitude in -90..90 and longitude in
-180..180 (both ends included); anything else is rejected, never wrapped. A query typed on the
command line is ``"LAT,LON"`` (``geobind search SPACE --query location=40.5,-74.0``).

This module imports nothing heavy; torch loads when an encoder or a preprocessing function is
used (:mod:`geobind_location.model`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobind import InputError, Modality, hookimpl

if TYPE_CHECKING:
    from geobind_location.model import LocationEncoder, UnitVector

__all__ = [
    "LocationConfig",
    "LocationFeatures",
    "build_encoder",
    "build_preprocess",
    "check",
    "geobind_register_modalities",
    "location_modality",
    "parse",
]

__version__ = "0.1.0"


@dataclass
class LocationConfig:
    """The encoder: GeoCLIP's multi-scale random Fourier features and MLPs, on the sphere.

    Each scale ``sigma`` draws ``frequencies`` random directions with a standard deviation of
    ``sigma`` per unit of the unit sphere, so its waves are about ``57 / sigma`` degrees long:
    the defaults reach from continents (sigma 1: ~57 degrees) down to ~6 km (1024), which
    covers a world as small as the demo's (about one degree across) and the whole Earth alike.
    On the demo world, finer scales (2048, 4096) fitted noise: location -> satellite R@10 fell
    from 22% to 18-19% on its 1,000 held-out places.
    """

    #: the width of the embeddings; a recipe that leaves it out takes the anchor's
    embed_dim: int = 64
    sigmas: list[float] = field(default_factory=lambda: [1.0, 8.0, 64.0, 256.0, 1024.0])
    #: random frequencies per scale (each gives a sine and a cosine feature)
    frequencies: int = 64
    #: width of each scale's MLP, and its number of hidden layers
    hidden: int = 256
    layers: int = 2
    #: seed of the random frequencies (they are stored with the weights)
    seed: int = 0


class LocationFeatures:
    """The floor's features of a place (:attr:`geobind.Modality.features`): untrained random
    Fourier features of its point on the sphere, at the encoder's default scales, so the floor
    is what one linear map from position alone reaches."""

    def __init__(self, frequencies: int = 32, seed: int = 0) -> None:
        self.frequencies = int(frequencies)
        self.seed = int(seed)

    def fit(self, values: Sequence[Any]) -> LocationFeatures:
        return self

    def transform(self, values: Sequence[Any]) -> Any:
        """``[len(values), 2 * frequencies * scales]`` cosines and sines."""
        import numpy as np

        rng = np.random.default_rng(self.seed)
        scales = LocationConfig().sigmas
        directions = [rng.standard_normal((3, self.frequencies)) * s for s in scales]
        for value in values:
            check(value)
        radians = np.radians(np.asarray([(v[0], v[1]) for v in values], dtype=np.float64))
        lat, lon = radians.reshape(-1, 2).T
        points = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
        phase = 2 * np.pi * points @ np.concatenate(directions, axis=1)
        return np.concatenate([np.cos(phase), np.sin(phase)], axis=1)


def parse(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` in degrees (as typed on the command line) -> ``(lat, lon)``."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise InputError(f"location: expected LAT,LON in degrees, got {text!r}")
    try:
        value = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise InputError(f"location: expected LAT,LON in degrees, got {text!r}") from None
    check(value)
    return value


def check(value: Any) -> None:
    """Raise :class:`geobind.InputError` unless ``value`` is ``(lat, lon)`` in range."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InputError(f"location: expected (lat, lon) in degrees, got {value!r}")
    for name, number, bound in (("lat", value[0], 90.0), ("lon", value[1], 180.0)):
        if isinstance(number, bool) or not isinstance(number, numbers.Real):
            raise InputError(f"location: {name} must be a number, got {number!r}")
        if not math.isfinite(number) or abs(float(number)) > bound:
            raise InputError(
                f"location: {name} {number!r} is out of range (-{bound:g}..{bound:g} degrees)"
            )


def build_encoder(config: LocationConfig, weights: Path | None = None) -> LocationEncoder:
    """The location encoder for ``config``, optionally from a local weights file."""
    from geobind_location.model import build_location_encoder

    return build_location_encoder(config, weights)


def build_preprocess(config: LocationConfig, train: bool) -> UnitVector:
    """``(lat, lon)`` in degrees -> the place as a unit vector ``[3]`` (float64)."""
    from geobind_location.model import UnitVector

    return UnitVector()


def location_modality() -> Modality:
    """The ``location`` modality as this plugin registers it."""
    return Modality(
        name="location",
        config=LocationConfig,
        build_encoder=build_encoder,
        build_preprocess=build_preprocess,
        check=check,
        storage="string",
        columns=("lat", "lon"),
        parse=parse,
        recipe="geobind_location:recipe.yaml",
        features=LocationFeatures,
        description="(lat, lon) in degrees through multi-scale random Fourier features",
    )


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the ``location`` modality."""
    register(location_modality())
