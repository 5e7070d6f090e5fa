"""The land-cover map of a world: elevation, coasts, lakes, mountains, settlements, roads,
fields and forests, as full-resolution label and attribute rasters (numpy + scipy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from geobind.world.config import LAND_COVERS, WorldConfig
from geobind.world.noise import fractal_noise, smooth_noise, upsample_int

__all__ = [
    "Terrain",
    "build_terrain",
    "WATER",
    "SAND",
    "GRASS",
    "FARM",
    "FOREST",
    "URBAN",
    "ROAD",
    "ROCK",
]

WATER, SAND, GRASS, FARM, FOREST, URBAN, ROAD, ROCK = range(8)
assert LAND_COVERS[ROCK] == "rock" and LAND_COVERS[ROAD] == "road"

#: aux codes
SEA, LAKE = 0, 1  # water
HIGHWAY, STREET = 0, 1  # road
YARD = 255  # urban pixel between buildings
N_CROPS = 6
FARM_HEDGE, FARM_STRIPE = 16, 32  # farmland aux bits (low bits: crop type)
CONIFER = 1  # forest aux


@dataclass
class Terrain:
    """Full-resolution rasters of a world (``H x W``)."""

    labels: np.ndarray  # uint8, index into LAND_COVERS
    aux: np.ndarray  # uint8, per-cover variant (crop type, building style, sea/lake, ...)
    height: np.ndarray  # float32, terrain height in mosaic pixels (negative under water)
    shade: np.ndarray  # float32, hillshade factor around 1
    sea_dist: np.ndarray  # float32, distance to open sea in pixels (0 on the sea), /4 res
    shore_dist: np.ndarray  # float32, distance from water to land in pixels (0 on land), /4 res
    settlements: np.ndarray  # (K, 2) float x, y of town centres
    wave_angle: float  # direction of wave crests on water, radians


def _lut(rng: np.random.Generator, size: int = 1 << 16) -> np.ndarray:
    return rng.random(size, dtype=np.float32)


def _cell_key(owner: object, a: object, b: object) -> np.ndarray:
    """A cheap 16-bit key of (region, cell a, cell b) for lookup tables."""
    with np.errstate(over="ignore"):
        key = (
            np.asarray(owner).astype(np.int32) * np.int32(7919)
            + np.asarray(a).astype(np.int32) * np.int32(73856093)
            + np.asarray(b).astype(np.int32) * np.int32(19349663)
        )
        return (key ^ (key >> 16)) & 0xFFFF


def _segment_points(x0: float, y0: float, x1: float, y1: float, step: float = 0.5) -> np.ndarray:
    n = max(2, int(np.hypot(x1 - x0, y1 - y0) / step) + 1)
    t = np.linspace(0.0, 1.0, n)
    return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t], axis=1)


def _wiggle(
    rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, levels: int = 4
) -> np.ndarray:
    """A polyline from p0 to p1 bent by midpoint displacement (roads curve)."""
    pts = np.stack([p0, p1])
    amp = 0.12 * float(np.hypot(*(p1 - p0)))
    for _ in range(levels):
        mids = 0.5 * (pts[:-1] + pts[1:])
        d = pts[1:] - pts[:-1]
        normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
        mids = mids + normal * rng.normal(0.0, amp, size=(len(mids), 1))
        out = np.empty((len(pts) + len(mids), 2))
        out[0::2], out[1::2] = pts, mids
        pts, amp = out, amp * 0.5
    return pts


def build_terrain(cfg: WorldConfig) -> Terrain:
    """The land-cover map of ``cfg``, from one random stream in a fixed order of steps.

    Three resolutions: low (/8) for landscape fields, mid (/4) for coasts and scores, and full.
    Elevation and water come first, then towns, then where forest, grass and farms prefer to
    be; the full-resolution labels are then painted cover by cover, roads last.
    """
    H, W = cfg.mosaic_shape
    rng = np.random.default_rng([cfg.seed, 0x7E7A])
    grid = _Grid(H, W)
    land = _landscape(rng, grid)
    towns = _settlements(rng, grid, land)
    fg_mid, farm_pref = _vegetation_scores(rng, grid, land, towns)
    return _full_resolution(cfg, rng, grid, land, towns, fg_mid, farm_pref)


@dataclass(frozen=True)
class _Grid:
    """The three resolutions of a ``H x W`` mosaic: low (/8), mid (/4) and full."""

    H: int
    W: int

    @property
    def mid(self) -> tuple[int, int]:
        return -(-self.H // 4), -(-self.W // 4)

    @property
    def low(self) -> tuple[int, int]:
        hm, wm = self.mid
        return -(-hm // 2), -(-wm // 2)

    def up_mid(self, a: np.ndarray) -> np.ndarray:
        """A low-resolution field at mid resolution."""
        return upsample_int(a, 2, self.mid)


@dataclass
class _Landscape:
    """Elevation, sea, mountains and lakes at mid resolution, and the low-resolution fields
    that later steps read."""

    e_mid: np.ndarray
    sea_level: float
    sea_mid: np.ndarray
    mount: np.ndarray
    height_mid: np.ndarray
    lake_mid: np.ndarray
    water_mid: np.ndarray
    sea_dist: np.ndarray
    water_dist: np.ndarray
    shore_dist: np.ndarray
    hill: np.ndarray
    moist_low: np.ndarray
    agri_low: np.ndarray
    beach_low: np.ndarray


def _landscape(rng: np.random.Generator, grid: _Grid) -> _Landscape:
    """Elevation, sea, mountains, lakes (mid resolution)."""
    (hl, wl), mid = grid.low, grid.mid
    up_mid = grid.up_mid
    e_low = fractal_noise(rng, (hl, wl), (40.0, 20.0, 10.0, 5.0), roughness=0.5)
    ang = rng.uniform(0, 2 * np.pi)
    yl, xl = np.mgrid[0:hl, 0:wl].astype(np.float32)
    grad = ((xl - wl / 2) * np.cos(ang) + (yl - hl / 2) * np.sin(ang)) / (0.5 * max(hl, wl))
    e_low = e_low + 1.4 * grad
    mass_low = smooth_noise(rng, (hl, wl), 14.0)  # where mountain ranges rise
    ridge_low = 1.0 - np.abs(smooth_noise(rng, (hl, wl), 4.0))  # ridged detail
    moist_low = fractal_noise(rng, (hl, wl), (18.0, 9.0, 4.0), roughness=0.6)
    agri_low = smooth_noise(rng, (hl, wl), 10.0)
    lake_low = smooth_noise(rng, (hl, wl), 3.0)
    beach_low = smooth_noise(rng, (hl, wl), 6.0)

    e_mid = up_mid(e_low) + 0.06 * smooth_noise(rng, mid, 1.5) + 0.03 * smooth_noise(rng, mid, 0.7)
    sea_level = float(np.quantile(e_mid, 0.2))
    sea_mid = e_mid < sea_level
    land_h = np.maximum(e_mid - sea_level, 0.0)
    mount = np.clip(up_mid(mass_low) - 0.9, 0.0, None) * (0.55 + 0.9 * up_mid(ridge_low))
    mount *= np.clip(land_h * 4.0, 0.0, 1.0)  # no mountains standing in the sea
    # sharp ridges and peaks on the massifs (ridged noise, two octaves)
    peaks = 0.6 * (1.0 - np.abs(smooth_noise(rng, mid, 5.0))) + 0.4 * (
        1.0 - np.abs(smooth_noise(rng, mid, 2.0))
    )
    height_mid = np.where(
        sea_mid, (e_mid - sea_level) * 6.0, 2.0 * land_h + 7.0 * mount * (0.3 + 0.7 * peaks**2)
    )
    lake_mid = (
        (up_mid(lake_low) + 0.25 * smooth_noise(rng, mid, 1.0) > 2.3) & ~sea_mid & (mount < 0.05)
    )
    water_mid = sea_mid | lake_mid
    sea_dist = ndimage.distance_transform_edt(~sea_mid).astype(np.float32) * 4.0
    water_dist = ndimage.distance_transform_edt(~water_mid).astype(np.float32) * 4.0
    shore_dist = ndimage.distance_transform_edt(water_mid).astype(np.float32) * 4.0
    land_q = np.quantile(land_h[~sea_mid], 0.95) if (~sea_mid).any() else 1.0
    hill = np.clip(land_h / (land_q + 1e-6), 0.0, 1.0)
    return _Landscape(
        e_mid,
        sea_level,
        sea_mid,
        mount,
        height_mid,
        lake_mid,
        water_mid,
        sea_dist,
        water_dist,
        shore_dist,
        hill,
        moist_low,
        agri_low,
        beach_low,
    )


@dataclass
class _Towns:
    """Cities and villages: centres (full-resolution pixels), street-grid and field settings,
    and how built-up each mid-resolution cell is."""

    sx: np.ndarray
    sy: np.ndarray
    is_city: np.ndarray
    k_ang: np.ndarray
    block: np.ndarray
    bsize: np.ndarray
    parcel_w: np.ndarray
    parcel_h: np.ndarray
    urban_mid: np.ndarray
    near_mid: np.ndarray
    urban_score: np.ndarray


def _settlements(rng: np.random.Generator, grid: _Grid, land: _Landscape) -> _Towns:
    """Where towns stand (dry, flat, near the coast and farmland), and their settings."""
    H, W, (_, wm), mid = grid.H, grid.W, grid.mid, grid.mid
    area = H * W
    n_city = max(1, int(round(area / 640.0**2)))
    n_village = max(3, int(round(area / 210.0**2)))
    weight = (~land.water_mid & (land.mount < 0.02)).astype(np.float64)
    weight *= 1.0 + 3.0 * np.exp(-land.sea_dist / 160.0) * (land.sea_dist > 6)
    weight *= np.exp(-2.5 * land.hill)
    weight *= np.exp(1.2 * grid.up_mid(land.agri_low))
    flat = weight.ravel() / weight.sum()
    picks = rng.choice(flat.size, size=n_city + n_village, replace=False, p=flat)
    sy, sx = np.divmod(picks, wm)
    sx = (sx + rng.random(len(picks))) * 4.0
    sy = (sy + rng.random(len(picks))) * 4.0
    nset = len(picks)
    is_city = np.zeros(nset, bool)
    is_city[:n_city] = True
    sigma = np.where(is_city, rng.uniform(35, 110, nset), rng.uniform(6, 15, nset))
    k_ang = rng.uniform(0, np.pi / 2, nset)
    block = np.where(is_city, rng.uniform(11, 16, nset), rng.uniform(12, 20, nset))
    bsize = np.where(is_city, rng.uniform(3.0, 4.6, nset), rng.uniform(3.0, 4.0, nset))
    parcel_w = rng.uniform(13, 26, nset)
    parcel_h = rng.uniform(8, 17, nset)
    urban_mid, near_mid = _town_fields(sx, sy, sigma, mid)
    urban_score = (
        urban_mid * (1.0 + 0.6 * smooth_noise(rng, mid, 1.5))
        + 0.12 * smooth_noise(rng, mid, 1.0)
        - 0.35
    )
    return _Towns(
        sx, sy, is_city, k_ang, block, bsize, parcel_w, parcel_h, urban_mid, near_mid, urban_score
    )


def _town_fields(
    sx: np.ndarray, sy: np.ndarray, sigma: np.ndarray, mid: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians around each town: how built-up (``urban``) and how near a town (``near``)."""
    hm, wm = mid
    urban_mid = np.zeros(mid, np.float32)
    near_mid = np.zeros(mid, np.float32)
    for x, y, s in zip(sx / 4.0, sy / 4.0, sigma / 4.0):
        for field, ss in ((urban_mid, s), (near_mid, 4.0 * s)):
            r = int(3 * ss) + 2
            y0, y1 = max(0, int(y) - r), min(hm, int(y) + r + 1)
            x0, x1 = max(0, int(x) - r), min(wm, int(x) + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            gy, gx = np.ogrid[y0:y1, x0:x1]
            field[y0:y1, x0:x1] += np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * ss * ss)).astype(
                np.float32
            )
    return urban_mid, np.clip(near_mid, 0, 1.5)


def _vegetation_scores(
    rng: np.random.Generator, grid: _Grid, land: _Landscape, towns: _Towns
) -> tuple[np.ndarray, np.ndarray]:
    """Forest against grass, and how much farmland is preferred (mid resolution)."""
    mid, up_mid, hill = grid.mid, grid.up_mid, land.hill
    score_forest = (
        0.9 * up_mid(land.moist_low)
        + 1.4 * hill
        + 0.35 * smooth_noise(rng, mid, 2.0)
        - 0.6 * towns.near_mid
        - 0.1
    )
    score_farm = 0.8 * up_mid(land.agri_low) + 1.5 * towns.near_mid - 1.8 * hill - 0.05
    score_grass = (
        0.35 * smooth_noise(rng, mid, 3.0) + 1.0 * np.exp(-land.sea_dist / 60.0) + 0.3 * hill
    )
    fg_mid = score_forest - score_grass + 0.25 * smooth_noise(rng, mid, 0.8)  # forest vs grass
    farm_pref = score_farm - np.maximum(score_forest, score_grass)
    return fg_mid, farm_pref


@dataclass
class _Canvas:
    """The full-resolution rasters being painted, padded to ``(4 * hm, 4 * wm)``; ``lab4`` and
    ``aux4`` are ``(hm, 4, wm, 4)`` views, so that per-town settings held at mid resolution
    broadcast over each cell's pixels for free."""

    labels: np.ndarray
    aux: np.ndarray
    lab4: np.ndarray
    aux4: np.ndarray
    mid: tuple[int, int]

    def up_full(self, a: np.ndarray) -> np.ndarray:
        """A mid-resolution field at full resolution."""
        height, width = self.labels.shape
        return upsample_int(a, 4, (height, width))


def _b4(a: np.ndarray) -> np.ndarray:
    """A mid-resolution array, broadcast over the pixels of each cell."""
    return a[:, None, :, None]


def _full_resolution(
    cfg: WorldConfig,
    rng: np.random.Generator,
    grid: _Grid,
    land: _Landscape,
    towns: _Towns,
    fg_mid: np.ndarray,
    farm_pref: np.ndarray,
) -> Terrain:
    """Every pixel's label and variant: vegetation, fields, forest, towns, rock and beaches,
    roads, water; then cropped to the mosaic and shaded."""
    hm, wm = grid.mid
    padded = (4 * hm, 4 * wm)
    labels = np.full(padded, GRASS, np.uint8)
    aux = np.zeros(padded, np.uint8)
    canvas = _Canvas(labels, aux, labels.reshape(hm, 4, wm, 4), aux.reshape(hm, 4, wm, 4), grid.mid)
    height = canvas.up_full(land.height_mid)
    sea = canvas.up_full(land.e_mid - land.sea_level) < 0
    water = sea | (canvas.up_full(land.lake_mid.astype(np.float32)) > 0.5)
    owner, ca, sa, u, v = _street_grids(towns, grid.mid)
    lut = _lut(rng)
    lut2 = _lut(rng)
    labels[canvas.up_full(fg_mid) > 0] = FOREST
    _paint_farmland(canvas, towns, owner, ca, sa, u, v, lut, lut2, farm_pref)
    _paint_conifers(canvas, rng, land.hill)
    _paint_towns(canvas, towns, owner, u, v, lut, lut2, water)
    del u, v
    _paint_rock_and_beaches(canvas, rng, grid, land, water)
    # roads between settlements: a minimum spanning tree plus links between nearby towns
    _draw_roads(
        cfg, labels, aux, water, sea, land.water_mid, land.mount, towns.sx, towns.sy, towns.is_city
    )
    labels[water & (labels != ROAD)] = WATER
    wmask = labels == WATER
    aux[wmask] = np.where(sea, SEA, LAKE)[wmask]
    H, W = grid.H, grid.W
    labels, aux, height = labels[:H, :W].copy(), aux[:H, :W].copy(), height[:H, :W].copy()
    return Terrain(
        labels=labels,
        aux=aux,
        height=height,
        shade=_hillshade(height),
        sea_dist=land.sea_dist,
        shore_dist=land.shore_dist,
        settlements=np.stack([towns.sx, towns.sy], 1),
        wave_angle=float(rng.uniform(0, np.pi)),
    )


def _street_grids(towns: _Towns, mid: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Which town owns each mid-resolution cell, the cosine and sine of its grid's angle there,
    and every pixel's coordinates ``(u, v)`` in its owner's street grid (``(hm, 4, wm, 4)``)."""
    hm, wm = mid
    sx, sy = towns.sx, towns.sy
    grid = np.stack(np.meshgrid((np.arange(wm) + 0.5) * 4, (np.arange(hm) + 0.5) * 4), -1).reshape(
        -1, 2
    )
    owner = cKDTree(np.stack([sx, sy], 1)).query(grid)[1].reshape(mid).astype(np.int32)
    del grid
    f32 = np.float32
    ca = np.cos(towns.k_ang).astype(f32)[owner]  # mid res
    sa = np.sin(towns.k_ang).astype(f32)[owner]
    X = (np.arange(wm, dtype=f32)[:, None] * 4 + np.arange(4, dtype=f32))[None, None]
    Y = (np.arange(hm, dtype=f32)[:, None] * 4 + np.arange(4, dtype=f32))[:, :, None, None]
    dx = X - _b4(sx.astype(f32)[owner])  # (hm, 4, wm, 4) after broadcasting
    dy = Y - _b4(sy.astype(f32)[owner])
    u = dx * _b4(ca) + dy * _b4(sa)  # the owner town's street-grid coordinates
    v = dy * _b4(ca) - dx * _b4(sa)
    return owner, ca, sa, u, v


def _paint_farmland(
    canvas: _Canvas,
    towns: _Towns,
    owner: np.ndarray,
    ca: np.ndarray,
    sa: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lut: np.ndarray,
    lut2: np.ndarray,
    farm_pref: np.ndarray,
) -> None:
    """Farmland per parcel of each town's field grid (straight field edges), where preferred."""
    hm, wm = canvas.mid
    f32 = np.float32
    o4 = _b4(owner)
    sx, sy = towns.sx, towns.sy
    pw, ph = _b4(towns.parcel_w.astype(f32)[owner]), _b4(towns.parcel_h.astype(f32)[owner])
    pv = np.floor(v / ph)
    rkey = _cell_key(o4, pv, -7)  # each row of fields has its own field widths and offset
    pw = pw * (0.55 + 0.9 * lut[rkey])
    shift = lut2[rkey] * pw
    del rkey
    pu = np.floor((u + shift) / pw)
    cu, cv = (pu + 0.5) * pw - shift, (pv + 0.5) * ph  # the field's centre
    cx = _b4(sx.astype(f32)[owner]) + cu * _b4(ca) - cv * _b4(sa)
    cy = _b4(sy.astype(f32)[owner]) + cu * _b4(sa) + cv * _b4(ca)
    farm = (
        farm_pref[
            np.clip((cy * 0.25).astype(np.int32), 0, hm - 1),
            np.clip((cx * 0.25).astype(np.int32), 0, wm - 1),
        ]
        > 0
    )
    del cu, cv, cx, cy
    pkey = _cell_key(o4, pu, pv)
    kind = lut[pkey]
    stripe_v = lut[(pkey * 31 + 7) & 0xFFFF] < 0.5
    period = 2.0 + 1.6 * lut2[(pkey * 17 + 3) & 0xFFFF]
    stripe_on = np.mod(np.where(stripe_v, v, u), period) < 0.5 * period
    del stripe_v, period
    hedge = ((u + shift - pu * pw) < 0.9) | ((v - pv * ph) < 0.9)
    del pu, pv, pw, ph, shift
    crop = np.where(kind < 0.06, FOREST, np.where(kind < 0.14, GRASS, FARM)).astype(np.uint8)
    canvas.lab4[farm] = crop[farm]
    canvas.aux4[farm] = (
        (lut2[pkey] * N_CROPS).astype(np.uint8) + FARM_STRIPE * stripe_on + FARM_HEDGE * hedge
    )[farm]


def _paint_conifers(canvas: _Canvas, rng: np.random.Generator, hill: np.ndarray) -> None:
    """Forest variety: conifers up the hills."""
    conifer = canvas.up_full(hill + 0.4 * smooth_noise(rng, canvas.mid, 4.0)) > 0.6
    forest = canvas.labels == FOREST
    canvas.aux[forest] = 0
    canvas.aux[forest & conifer] = CONIFER


def _paint_towns(
    canvas: _Canvas,
    towns: _Towns,
    owner: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lut: np.ndarray,
    lut2: np.ndarray,
    water: np.ndarray,
) -> None:
    """Urban: blocks of buildings (style and height per block) between streets."""
    f32 = np.float32
    urban = (canvas.up_full(towns.urban_score) > 0) & ~water
    idx = np.flatnonzero(urban)
    u, v = u.reshape(-1)[idx], v.reshape(-1)[idx]
    y, x = np.divmod(idx, canvas.labels.shape[1])
    o = owner[y >> 2, x >> 2]
    bw = towns.block.astype(f32)[o]
    street = (np.mod(u, bw) < 1.25) | (np.mod(v, bw) < 1.25)
    bs = towns.bsize.astype(f32)[o]
    bu, bv = np.floor(u / bs), np.floor(v / bs)
    bkey = _cell_key(o, bu + 1000, bv + 2000)
    density = np.clip(towns.urban_mid[y >> 2, x >> 2], 0, 1.6)
    gap = (u - bu * bs < 0.75) | (v - bv * bs < 0.75) | (lut[bkey] > 0.3 + 0.5 * density)
    style = (lut2[bkey] * 8).astype(np.uint8)
    tall = np.clip(density * 2.2 * (0.4 + lut[(bkey * 13 + 5) & 0xFFFF]), 0, 3).astype(np.uint8)
    canvas.labels.reshape(-1)[idx] = np.where(street, ROAD, URBAN).astype(np.uint8)
    canvas.aux.reshape(-1)[idx] = np.where(
        street, STREET, np.where(gap, YARD, style + 8 * tall)
    ).astype(np.uint8)


def _paint_rock_and_beaches(
    canvas: _Canvas, rng: np.random.Generator, grid: _Grid, land: _Landscape, water: np.ndarray
) -> None:
    """Bare rock on the mountains, and sand along the sea (narrower along lake shores)."""
    rock = (canvas.up_full(land.mount + 0.08 * smooth_noise(rng, grid.mid, 0.7)) > 0.32) & ~water
    canvas.labels[rock] = ROCK
    beach_w = np.clip(6.5 + 5.5 * grid.up_mid(land.beach_low), 0, 14)
    beach_mid = np.minimum(
        land.sea_dist - beach_w, 4.0 * (land.water_dist - 0.3 * beach_w)
    )  # narrow lake shores
    sand = (canvas.up_full(beach_mid) < 0) & ~water & ~rock
    canvas.labels[sand] = SAND


def _hillshade(height: np.ndarray) -> np.ndarray:
    """Shading of the height field, light from the north-west (a factor around 1)."""
    gy, gx = np.gradient(height)
    shade = 1.0 + 0.9 * (-gx - gy) / np.sqrt(1.0 + gx * gx + gy * gy)
    return np.clip(shade, 0.4, 1.6).astype(np.float32)


def _draw_roads(cfg, labels, aux, water, sea, water_mid, mount, sx, sy, is_city) -> None:
    H, W = labels.shape
    hm, wm = water_mid.shape
    n = len(sx)
    pts = np.stack([sx, sy], 1)
    k = min(n - 1, 7)
    if k < 1:
        return
    dist, nbr = cKDTree(pts).query(pts, k + 1)
    ii = np.repeat(np.arange(n), k)
    jj = nbr[:, 1:].ravel()
    length = dist[:, 1:].ravel()
    t = np.linspace(0.0, 1.0, 24)[None, :]
    qx = np.clip(((sx[ii, None] + (sx[jj] - sx[ii])[:, None] * t) / 4).astype(int), 0, wm - 1)
    qy = np.clip(((sy[ii, None] + (sy[jj] - sy[ii])[:, None] * t) / 4).astype(int), 0, hm - 1)
    wet = water_mid[qy, qx].mean(1) + 0.5 * (mount[qy, qx] > 0.2).mean(1)
    ok = wet < 0.2
    cost = np.zeros((n, n))
    cost[ii[ok], jj[ok]] = length[ok] * (1.0 + 25.0 * wet[ok]) + 1e-6
    cost = np.maximum(cost, cost.T)
    mst = minimum_spanning_tree(cost).tocoo()
    edges = {(min(a, b), max(a, b)) for a, b in zip(mst.row.tolist(), mst.col.tolist())}
    cities = np.flatnonzero(is_city)
    for i in cities:  # extra links between cities
        d = np.hypot(sx[cities] - sx[i], sy[cities] - sy[i])
        for j in cities[np.argsort(d)[1:3]]:
            a, b = min(i, j), max(i, j)
            qx = np.clip((np.linspace(sx[a], sx[b], 24) / 4).astype(int), 0, wm - 1)
            qy = np.clip((np.linspace(sy[a], sy[b], 24) / 4).astype(int), 0, hm - 1)
            if water_mid[qy, qx].mean() < 0.12:
                edges.add((int(a), int(b)))
    road_rng = np.random.default_rng([cfg.seed, 0x40AD])
    major_pts: list[np.ndarray] = []
    minor_pts: list[np.ndarray] = []
    for i, j in sorted(edges):
        line = _wiggle(road_rng, pts[i], pts[j])
        dots = np.concatenate(
            [_segment_points(*line[m], *line[m + 1]) for m in range(len(line) - 1)]
        )
        (major_pts if (is_city[i] and is_city[j]) else minor_pts).append(dots)
    for group, radius in ((minor_pts, 0.5), (major_pts, 1.0)):
        if not group:
            continue
        dots = np.concatenate(group)
        offs = np.arange(-radius, radius + 0.01, 0.5)
        for ox in offs:
            for oy in offs:
                px = np.clip(np.round(dots[:, 0] + ox).astype(np.int64), 0, W - 1)
                py = np.clip(np.round(dots[:, 1] + oy).astype(np.int64), 0, H - 1)
                labels[py, px] = ROAD  # over water: a bridge
                aux[py, px] = HIGHWAY
