"""Top-down rendering of the land-cover rasters into one RGB mosaic (the satellite view)."""

from __future__ import annotations

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
    """The RGB mosaic (``H x W x 3`` uint8) of a terrain."""
    rng = np.random.default_rng([seed, 0x5A7])
    labels, aux = t.labels, t.aux
    H, W = labels.shape
    hm, wm = -(-H // 4), -(-W // 4)
    rgb = np.zeros((H, W, 3), np.float32)
    fine = rng.standard_normal((H, W), dtype=np.float32)  # per-pixel grain
    blob = ndimage.uniform_filter(fine, 3)  # tree-crown sized blobs
    broad = upsample_int(smooth_noise(rng, (hm, wm), 6.0), 4, (H, W))  # field-scale tint
    shade = t.shade

    def paint(mask: np.ndarray, colour: np.ndarray) -> None:
        rgb[mask] = colour

    # water: depth tint, lighter shallows, wave streaks
    m = labels == WATER
    shore = upsample_int(t.shore_dist, 4, (H, W))[m]
    depth = np.clip(1.0 - np.exp(-shore / 28.0) + 0.08 * broad[m], 0.0, 1.0)[:, None]
    deep, shallow = np.array((22, 50, 88), np.float32), np.array((54, 112, 128), np.float32)
    col = shallow + (deep - shallow) * depth
    col = np.where((aux[m] == LAKE)[:, None], np.array((38, 72, 82), np.float32) + 0.0 * col, col)
    ys, xs = np.nonzero(m)
    ca, sa = np.cos(t.wave_angle), np.sin(t.wave_angle)
    waves = np.sin((xs * ca + ys * sa) * 1.3 + 2.5 * broad[m]) * (0.5 + 0.5 * np.sin(blob[m] * 2.0))
    col *= (1.0 + 0.07 * waves + 0.03 * fine[m])[:, None]
    paint(m, col)
    del ys, xs, waves, depth, col, shore

    # sand
    m = labels == SAND
    paint(m, np.array((214, 198, 158), np.float32) * (1.0 + 0.04 * fine[m] + 0.03 * broad[m])[:, None])

    # grassland: green to dry, mottled
    m = labels == GRASS
    g0, g1 = np.array((104, 140, 70), np.float32), np.array((156, 160, 96), np.float32)
    mix = np.clip(0.5 + 0.35 * broad[m], 0, 1)[:, None]
    paint(m, (g0 + (g1 - g0) * mix) * (1.0 + 0.05 * fine[m] + 0.06 * blob[m])[:, None])

    # farmland: per-field crop colour, row stripes, darker hedgerows
    m = labels == FARM
    a = aux[m]
    col = CROP_COLOURS[a & 7] * (1.0 + 0.07 * ((a & FARM_STRIPE) > 0) - 0.035 + 0.03 * fine[m])[:, None]
    hedge = (a & FARM_HEDGE) > 0
    col[hedge] = col[hedge] * 0.45 + np.array((60, 84, 46), np.float32) * 0.55
    paint(m, col)
    del a, col, hedge

    # forest: bumpy canopy with crown shadows
    m = labels == FOREST
    con = (aux[m] == CONIFER)[:, None]
    base = np.where(con, np.array((34, 66, 40), np.float32), np.array((54, 90, 44), np.float32))
    paint(m, base * (1.0 + 0.28 * blob[m] + 0.08 * fine[m] + 0.05 * broad[m])[:, None])
    del con, base

    # urban: roofs, yards, shadows cast to the south-east
    m = labels == URBAN
    a = aux[m]
    yard = a == YARD
    col = ROOF_COLOURS[a & 7] * (1.0 + 0.05 * fine[m])[:, None]
    ygrey = np.array((150, 148, 140), np.float32)
    ygreen = np.array((112, 134, 88), np.float32)
    yt = np.clip(0.5 + 0.6 * broad[m], 0, 1)[:, None]
    col[yard] = (ygrey + (ygreen - ygrey) * yt[yard]) * (1.0 + 0.06 * fine[m][yard])[:, None]
    paint(m, col)
    del a, col, yard, yt

    # roads: highways darker asphalt, streets lighter
    m = labels == ROAD
    col = np.where((aux[m] == STREET)[:, None], np.array((74, 74, 78), np.float32), np.array((92, 92, 96), np.float32))
    paint(m, col * (1.0 + 0.03 * fine[m])[:, None])
    del col

    # rock: grey-brown, strongly shaded, snow on the highest peaks
    m = labels == ROCK
    r0, r1 = np.array((128, 120, 110), np.float32), np.array((160, 150, 136), np.float32)
    mix = np.clip(0.5 + 0.4 * broad[m] + 0.5 * blob[m], 0, 1)[:, None]
    col = (r0 + (r1 - r0) * mix) * (1.0 + 0.1 * fine[m])[:, None]
    if m.any():
        hr = t.height[m]
        snow = hr + 0.6 * blob[m] > np.quantile(hr, 0.975)
        col[snow] = np.array((232, 234, 238), np.float32) * (1.0 + 0.02 * fine[m][snow])[:, None]
    paint(m, col)
    del col

    # relief: hillshade on land (strong on rock)
    land = labels != WATER
    k = np.where(labels == ROCK, 1.0, 0.45).astype(np.float32)
    rgb[land] *= (shade[land] ** k[land])[:, None]

    # building shadows: ground right below / right of a building is darker
    bldg = (labels == URBAN) & (aux != YARD)
    ground = ~bldg & ((labels == URBAN) | (labels == ROAD))
    cast = np.zeros_like(bldg)
    cast[1:, 1:] = bldg[:-1, :-1]
    cast[1:, :] |= bldg[:-1, :]
    rgb[cast & ground] *= 0.62
    # tree shadows at forest edges
    tree = labels == FOREST
    tcast = np.zeros_like(tree)
    tcast[1:, 1:] = tree[:-1, :-1]
    rgb[tcast & ~tree & (labels != WATER)] *= 0.75
    return np.clip(rgb, 0, 255).astype(np.uint8)
