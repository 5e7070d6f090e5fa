"""The location encoder, in the style of GeoCLIP's (Vivanco Cepeda, Nayak and Shah, "GeoCLIP:
Clip-Inspired Alignment between Locations and Images for Effective Worldwide
Geo-localization", NeurIPS 2023, arXiv 2309.16020): for each of several scales, random Fourier
features (Tancik et al., NeurIPS 2020) of the location feed a small ReLU MLP, and the scales'
outputs are summed.

One change from GeoCLIP: the features are taken of the place as a point on the unit sphere
(x, y, z) rather than of its Equal Earth projection, which tears at the antimeridian (longitude
180 and -180 land at opposite edges) and stretches each pole into a line; on the sphere both
are as continuous as anywhere else (the argument of Mai et al., "Sphere2Vec", ISPRS 2023).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geobind import ConfigError, load_into, read_state_dict
from geobind_location import LocationConfig, check

__all__ = ["LocationEncoder", "UnitVector", "build_location_encoder", "unit_vector"]


def unit_vector(lat: float, lon: float) -> torch.Tensor:
    """The point at ``(lat, lon)`` degrees on the unit sphere, ``[3]`` float64."""
    phi, lam = math.radians(lat), math.radians(lon)
    return torch.tensor(
        [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)],
        dtype=torch.float64,
    )


class UnitVector:
    """The preprocessing: a checked ``(lat, lon)`` -> its unit vector (picklable)."""

    def __call__(self, value: Any) -> torch.Tensor:
        check(value)
        return unit_vector(float(value[0]), float(value[1]))


def _mlp(features: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    parts: list[nn.Module] = []
    width = features
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*parts, nn.Linear(width, out))


class LocationEncoder(nn.Module):
    """Unit vectors ``[batch, 3]`` -> ``[batch, embed_dim]``: one MLP per scale, summed."""

    def __init__(self, config: LocationConfig) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(config.seed)
        directions = torch.randn(len(config.sigmas), 3, config.frequencies, generator=generator)
        sigmas = torch.tensor(config.sigmas, dtype=torch.float32)[:, None, None]
        # a buffer, so the frequencies are stored with the weights and a loaded encoder is whole
        self.register_buffer("frequencies", directions * sigmas)
        self.scales = nn.ModuleList(
            _mlp(2 * config.frequencies, config.hidden, config.layers, config.embed_dim)
            for _ in config.sigmas
        )

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """``[scales, batch, 2 * frequencies]`` cosines and sines, computed in float64."""
        # autocast off: at fine scales (sigma 1024 and up) a phase needs float64 to stay exact
        with torch.autocast(points.device.type, enabled=False):
            turns = torch.einsum("bi,sif->sbf", points.double(), self.frequencies.double())
            phase = 2 * math.pi * turns
            return torch.cat([phase.cos(), phase.sin()], dim=-1).float()

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        features = self.features(points)
        return torch.stack([mlp(f) for mlp, f in zip(self.scales, features)]).sum(0)


def build_location_encoder(config: LocationConfig, weights: Path | None = None) -> LocationEncoder:
    """A location encoder, from a local weights file (a state dict of this encoder) if given."""
    if not config.sigmas or any(s <= 0 for s in config.sigmas):
        raise ConfigError(f"location: sigmas must be positive numbers, got {config.sigmas}")
    if config.frequencies < 1 or config.hidden < 1 or config.layers < 0:
        raise ConfigError(
            f"location: frequencies and hidden must be >= 1 and layers >= 0, got "
            f"{config.frequencies}, {config.hidden}, {config.layers}"
        )
    encoder = LocationEncoder(config)
    if weights is not None:
        load_into(encoder, read_state_dict(weights), str(weights))
    return encoder
