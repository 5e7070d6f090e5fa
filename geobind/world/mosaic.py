"""Top-down rendering of the land-cover rasters into one RGB mosaic (the satellite view)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from geobind.world.noise import smooth_noise, upsample_int
from geobind.world.terrain import (
    CONIFER,
    FARM,
    FARM_HEDGE,
    FARM_STRIPE,
    FOREST,
    GRASS,
    LAKE,
    ROAD,
    ROCK,
    SAND,
    STREET,
    URBAN,
    WATER,
    YARD,
    Terrain,
)

__all__ = ["render_mosaic", "CROP_COLOURS", "ROOF_COLOURS"]

CROP_COLOURS = np.array(
    [
        (196, 178, 108),  # ripe wheat
        (112, 150, 70),  # green crop
        (128, 100, 72),  # ploughed soil
        (150, 172, 96),  # young crop
        (182, 160, 112),  # stubble
        (88, 126, 60),  # maize
    ],
    np.float32,
)
ROOF_COLOURS = np.array(
    [
        (152, 150, 148),
        (176, 166, 152),
        (122, 114, 110),
        (166, 96, 78),
        (198, 198, 192),
        (98, 98, 104),
        (140, 122, 104),
        (184, 122, 96),
    ],
    np.float32,
)


def render_mosaic(t: Terrain, seed: int) -> np.ndarray:
    """The RGB mosaic (``H x W x 3`` uint8) of a terrain: each land cover painted with its own
    texture, then relief and shadows."""
    rng = np.random.default_rng([seed, 0x5A7])
    H, W = t.labels.shape
    grain = _Grain.draw(rng, (H, W))
    rgb = np.zeros((H, W, 3), np.float32)
    for cover, paint in _PAINTERS:
        m = t.labels == cover
        rgb[m] = paint(t, grain, m)
    _relief(rgb, t)
    _shadows(rgb, t)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@dataclass
class _Grain:
    """Random texture fields over the whole mosaic: per-pixel grain, tree-crown sized blobs,
    and a field-scale tint."""

    fine: np.ndarray
    blob: np.ndarray
    broad: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, shape: tuple[int, int]) -> _Grain:
        H, W = shape
        hm, wm = -(-H // 4), -(-W // 4)
        fine = rng.standard_normal((H, W), dtype=np.float32)
        blob = ndimage.uniform_filter(fine, 3)
        broad = upsample_int(smooth_noise(rng, (hm, wm), 6.0), 4, (H, W))
        return cls(fine, blob, broad)


def _water(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Depth tint, lighter shallows, wave streaks; lakes darker and still."""
    H, W = t.labels.shape
    shore = upsample_int(t.shore_dist, 4, (H, W))[m]
    depth = np.clip(1.0 - np.exp(-shore / 28.0) + 0.08 * g.broad[m], 0.0, 1.0)[:, None]
    deep, shallow = np.array((22, 50, 88), np.float32), np.array((54, 112, 128), np.float32)
    col = shallow + (deep - shallow) * depth
    col = np.where((t.aux[m] == LAKE)[:, None], np.array((38, 72, 82), np.float32) + 0.0 * col, col)
    ys, xs = np.nonzero(m)
    ca, sa = np.cos(t.wave_angle), np.sin(t.wave_angle)
    waves = np.sin((xs * ca + ys * sa) * 1.3 + 2.5 * g.broad[m]) * (
        0.5 + 0.5 * np.sin(g.blob[m] * 2.0)
    )
    return col * (1.0 + 0.07 * waves + 0.03 * g.fine[m])[:, None]


def _sand(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    return (
        np.array((214, 198, 158), np.float32)
        * (1.0 + 0.04 * g.fine[m] + 0.03 * g.broad[m])[:, None]
    )


def _grassland(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Green to dry, mottled."""
    g0, g1 = np.array((104, 140, 70), np.float32), np.array((156, 160, 96), np.float32)
    mix = np.clip(0.5 + 0.35 * g.broad[m], 0, 1)[:, None]
    return (g0 + (g1 - g0) * mix) * (1.0 + 0.05 * g.fine[m] + 0.06 * g.blob[m])[:, None]


def _farmland(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Per-field crop colour, row stripes, darker hedgerows."""
    a = t.aux[m]
    col = (
        CROP_COLOURS[a & 7]
        * (1.0 + 0.07 * ((a & FARM_STRIPE) > 0) - 0.035 + 0.03 * g.fine[m])[:, None]
    )
    hedge = (a & FARM_HEDGE) > 0
    col[hedge] = col[hedge] * 0.45 + np.array((60, 84, 46), np.float32) * 0.55
    return col


def _forest(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Bumpy canopy with crown shadows; conifers darker."""
    con = (t.aux[m] == CONIFER)[:, None]
    base = np.where(con, np.array((34, 66, 40), np.float32), np.array((54, 90, 44), np.float32))
    return base * (1.0 + 0.28 * g.blob[m] + 0.08 * g.fine[m] + 0.05 * g.broad[m])[:, None]


def _urban(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Roofs, and yards between them from grey to green."""
    a = t.aux[m]
    yard = a == YARD
    col = ROOF_COLOURS[a & 7] * (1.0 + 0.05 * g.fine[m])[:, None]
    ygrey = np.array((150, 148, 140), np.float32)
    ygreen = np.array((112, 134, 88), np.float32)
    yt = np.clip(0.5 + 0.6 * g.broad[m], 0, 1)[:, None]
    col[yard] = (ygrey + (ygreen - ygrey) * yt[yard]) * (1.0 + 0.06 * g.fine[m][yard])[:, None]
    return col


def _roads(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Highways darker asphalt, streets lighter."""
    col = np.where(
        (t.aux[m] == STREET)[:, None],
        np.array((74, 74, 78), np.float32),
        np.array((92, 92, 96), np.float32),
    )
    return col * (1.0 + 0.03 * g.fine[m])[:, None]


def _rock(t: Terrain, g: _Grain, m: np.ndarray) -> np.ndarray:
    """Grey-brown, strongly shaded, snow on the highest peaks."""
    r0, r1 = np.array((128, 120, 110), np.float32), np.array((160, 150, 136), np.float32)
    mix = np.clip(0.5 + 0.4 * g.broad[m] + 0.5 * g.blob[m], 0, 1)[:, None]
    col = (r0 + (r1 - r0) * mix) * (1.0 + 0.1 * g.fine[m])[:, None]
    if m.any():
        hr = t.height[m]
        snow = hr + 0.6 * g.blob[m] > np.quantile(hr, 0.975)
        col[snow] = np.array((232, 234, 238), np.float32) * (1.0 + 0.02 * g.fine[m][snow])[:, None]
    return col


#: Each land cover and its painter, in painting order.
_PAINTERS = (
    (WATER, _water),
    (SAND, _sand),
    (GRASS, _grassland),
    (FARM, _farmland),
    (FOREST, _forest),
    (URBAN, _urban),
    (ROAD, _roads),
    (ROCK, _rock),
)


def _relief(rgb: np.ndarray, t: Terrain) -> None:
    """Hillshade on land (strong on rock)."""
    land = t.labels != WATER
    k = np.where(t.labels == ROCK, 1.0, 0.45).astype(np.float32)
    rgb[land] *= (t.shade[land] ** k[land])[:, None]


def _shadows(rgb: np.ndarray, t: Terrain) -> None:
    """Buildings darken the ground right below and right of them; trees at forest edges."""
    labels, aux = t.labels, t.aux
    bldg = (labels == URBAN) & (aux != YARD)
    ground = ~bldg & ((labels == URBAN) | (labels == ROAD))
    cast = np.zeros_like(bldg)
    cast[1:, 1:] = bldg[:-1, :-1]
    cast[1:, :] |= bldg[:-1, :]
    rgb[cast & ground] *= 0.62
    tree = labels == FOREST
    tcast = np.zeros_like(tree)
    tcast[1:, 1:] = tree[:-1, :-1]
    rgb[tcast & ~tree & (labels != WATER)] *= 0.75
