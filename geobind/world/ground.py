"""Ground views: a small picture taken at a place, drawn from the land-cover rasters.

A height-field ray caster: every image column is a ray over the map in the viewing direction;
along it the land covers, the terrain and what stands on it (trees, buildings) are projected,
so a beach faces a sea horizon, a forest is a tree line, a city a skyline, mountains a ridge,
a road runs into the distance. Sky, light and haze follow the time of day and the weather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobind.world.attributes import Conditions
from geobind.world.noise import smooth_noise
from geobind.world.terrain import (
    CONIFER,
    FARM,
    FOREST,
    GRASS,
    ROAD,
    ROCK,
    SAND,
    SEA,
    URBAN,
    WATER,
    YARD,
    Terrain,
)

__all__ = ["GroundRenderer", "SKY"]

_F = np.float32

# sky (zenith, horizon) and light colour per time of day
SKY = {
    "dawn": ((92, 112, 168), (246, 186, 140), (0.92, 0.78, 0.68), 4.0),
    "morning": ((78, 134, 212), (188, 214, 236), (1.0, 0.98, 0.93), 25.0),
    "midday": ((56, 116, 208), (168, 202, 236), (1.06, 1.06, 1.06), 60.0),
    "afternoon": ((70, 124, 204), (200, 214, 230), (1.02, 0.96, 0.86), 35.0),
    "dusk": ((60, 58, 118), (244, 138, 84), (0.82, 0.6, 0.5), 3.0),
    "night": ((6, 10, 28), (24, 32, 58), (0.2, 0.22, 0.32), -20.0),
}
_VISIBILITY = {"clear": 260.0, "cloudy": 170.0, "overcast": 110.0, "rain": 40.0, "fog": 7.0}
_CLOUD_COVER = {"clear": 0.12, "cloudy": 0.5, "overcast": 1.0, "rain": 1.0, "fog": 1.0}

_CROPS = np.array(
    [(206, 182, 98), (104, 152, 58), (124, 94, 64), (140, 178, 84), (192, 168, 112), (78, 130, 50)],
    _F,
)
_WALLS = np.array(
    [
        (178, 170, 158),
        (150, 146, 140),
        (198, 188, 170),
        (164, 108, 88),
        (214, 210, 200),
        (118, 118, 126),
        (170, 150, 124),
        (188, 140, 110),
    ],
    _F,
)
_BUILDING_H = np.array([0.22, 0.45, 0.85, 1.5], _F)  # in mosaic pixels (~41 m each)


@dataclass
class _Light:
    """Sky colours, light and haze of one picture."""

    zenith: np.ndarray
    horizon: np.ndarray
    light: np.ndarray
    sun_elevation: float
    visibility: float
    weather: str
    night: bool


@dataclass
class _Rays:
    """Samples along each column's ray over the map: ``[samples, columns]`` arrays."""

    px: np.ndarray
    py: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    lab: np.ndarray
    aux: np.ndarray
    zg: np.ndarray  # ground height as drawn
    objh: np.ndarray  # what stands on the ground (trees, buildings)
    cam_z: float
    cos_t: np.ndarray  # [columns]
    sin_t: np.ndarray
    cx: float  # where the camera stands, mosaic pixels
    cy: float


@dataclass
class _Scene:
    """What each pixel sees: ``[rows, columns]`` arrays."""

    j: np.ndarray  # the ray sample hit
    sky: np.ndarray
    face: np.ndarray  # on a tree or a wall, not on the ground
    L: np.ndarray  # land cover
    A: np.ndarray  # its aux code
    dc: np.ndarray  # distance, interpolated between samples
    wx: np.ndarray  # where on the map
    wy: np.ndarray
    rr: np.ndarray  # row index
    cols: np.ndarray  # column index
    below: np.ndarray  # rows below the horizon
    r_top: np.ndarray  # [samples, columns]: the row each sample's top reaches


class GroundRenderer:
    """Draws ground pictures of one terrain, vectorised over the whole picture.

    A picture is a perspective photo (``fov_deg`` wide, square) or a 360-degree panorama
    (``panorama=True``: ``size / 2`` rows by ``2 * size`` columns, one column per equal step
    of compass direction, north in the middle, as street-level panoramas such as CVUSA's are
    stored). Every column is a ray over the map; along it the land covers, the terrain and
    what stands on it (trees, buildings) are projected, so a beach faces a sea horizon, a
    forest is a tree line, a city a skyline, mountains a ridge, a road runs into the
    distance. Sky, light and haze follow the time of day and the weather.
    """

    def __init__(
        self,
        terrain: Terrain,
        size: int,
        supersample: int,
        seed: int,
        fov_deg: float = 80.0,
        panorama: bool = False,
    ) -> None:
        self.t = terrain
        self.panorama = panorama
        rows, cols = (size // 2, 2 * size) if panorama else (size, size)
        self.out_shape = (rows, cols)
        self.ss = supersample
        self.R, self.C = rows * supersample, cols * supersample
        rng = np.random.default_rng([seed, 0x6E0])
        self.tex = smooth_noise(rng, (256, 256), 1.2)  # tileable texture, unit variance
        self.tex_fine = smooth_noise(rng, (256, 256), 0.5)
        self.clouds = smooth_noise(rng, (256, 256), 7.0)
        self.fov = math.radians(360.0 if panorama else fov_deg)
        u = (np.arange(self.C, dtype=np.float64) + 0.5) / self.C * 2 - 1  # -1 .. 1 across
        # a panorama steps evenly through the compass; a photo is a pinhole projection
        self.col_off = u * math.pi if panorama else np.arctan(u * math.tan(self.fov / 2))
        self.step = 1.09  # ratio of successive ray sample distances
        self.d = (0.04 * self.step ** np.arange(110)).astype(np.float64)  # ray sample distances, px
        self.d = self.d[self.d < 320.0]
        # the vertical mapping is logarithmic in the angle from the horizon beyond these (in
        # degrees): below the horizon it spreads near and far ground over the rows, above it
        # keeps trees, buildings and mountains at a natural size
        self.alpha0_dn = 0.6
        self.alpha0_up = 3.0
        self.alpha_max = 50.0
        self.rows = np.arange(self.R, dtype=_F)
        labels = terrain.labels
        rock_h = terrain.height[labels == ROCK]
        self.snow_z = float(np.quantile(rock_h, 0.9)) if rock_h.size else 1e9
        self.map_h, self.map_w = labels.shape

    # angle (degrees, signed) -> rows away from the horizon
    def _rows(self, alpha: np.ndarray, span_up: float, span_dn: float) -> np.ndarray:
        """Angle above the horizon (degrees, signed) -> rows above the horizon (signed)."""
        up = alpha > 0
        a0 = np.where(up, self.alpha0_up, self.alpha0_dn)
        k = np.where(up, span_up, span_dn) / np.log1p(self.alpha_max / a0)
        return np.sign(alpha) * k * np.log1p(np.abs(alpha) / a0)

    def _alpha(self, rows: np.ndarray, span_up: float, span_dn: float) -> np.ndarray:
        """Inverse of :meth:`_rows`."""
        up = rows > 0
        a0 = np.where(up, self.alpha0_up, self.alpha0_dn)
        k = np.where(up, span_up, span_dn) / np.log1p(self.alpha_max / a0)
        return np.sign(rows) * a0 * np.expm1(np.abs(rows) / k)

    @staticmethod
    def _z(h: Any) -> Any:
        """Terrain height as drawn: lowland relief flattened, mountains kept."""
        h = np.maximum(h, 0.0)
        return h * np.clip(h / 6.0, 0.2, 1.0)

    def _tex(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return field[y.astype(np.int64) & 255, x.astype(np.int64) & 255]

    def render(self, cx: float, cy: float, cond: Conditions, rng: np.random.Generator):
        """The picture (``rows x columns x 3`` uint8) and the land-cover counts of its pixels.

        A photo faces ``cond.heading_deg``; a panorama always has north in its middle.
        """
        light = self._light(cond, rng)
        horizon = self.R * float(rng.uniform(0.42, 0.6))
        span_dn, span_up = self.R - horizon, horizon
        heading = 0.0 if self.panorama else cond.heading_deg
        theta = math.radians(heading - 90.0) + self.col_off  # image coords: 0 = +x
        rays = self._cast(cx, cy, theta)
        scene = self._visible(rays, horizon, span_up, span_dn)
        img, emissive = self._paint(rays, scene, light, horizon, span_up, span_dn)
        img = self._atmosphere(img, emissive, rays, scene, light)
        skycol = self._sky(scene, light, horizon, span_dn, rng)
        img = np.where(scene.sky[..., None], skycol, img)
        img = self._weather(img, light, rng)
        if self.ss > 1:
            rows, cols = self.out_shape
            img = img.reshape(rows, self.ss, cols, self.ss, 3).mean(axis=(1, 3))
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        counts = np.bincount(scene.L[~scene.sky], minlength=8).astype(np.float64)
        return out, counts

    def covers(self, cx: float, cy: float, heading_deg: float = 0.0, horizon: float = 0.5):
        """The land cover each pixel of a picture shows (``LAND_COVERS`` index; -1: sky),
        before supersampling, with the horizon at ``horizon`` of the height."""
        h = self.R * horizon
        theta = math.radians((0.0 if self.panorama else heading_deg) - 90.0) + self.col_off
        scene = self._visible(self._cast(cx, cy, theta), h, h, self.R - h)
        return np.where(scene.sky, -1, scene.L)

    # -- the steps of a picture ----------------------------------------------------------
    def _light(self, cond: Conditions, rng: np.random.Generator) -> _Light:
        """Sky colours, light and visibility for the time of day and the weather."""
        zenith, horizon, tint, sun_el = SKY[cond.time_of_day]
        zen, hor, light = np.array(zenith, _F), np.array(horizon, _F), np.array(tint, _F)
        weather = cond.weather
        night = cond.time_of_day == "night"
        if weather in ("overcast", "rain", "fog"):
            lum = float(hor.mean() / 200.0) if not night else 0.15
            grey = {"overcast": 168.0, "rain": 128.0, "fog": 200.0}[weather] * min(1.0, 0.35 + lum)
            zen = zen * 0.2 + grey * 0.8 * np.array((0.96, 0.98, 1.02), _F)
            hor = hor * 0.25 + (grey + 14) * 0.75 * np.array((0.98, 0.99, 1.0), _F)
            light = light * 0.72 + 0.1 * light.mean()
        vis = _VISIBILITY[weather] * float(rng.uniform(0.7, 1.3))
        return _Light(zen, hor, light, sun_el, vis, weather, night)

    def _cast(self, cx: float, cy: float, theta: np.ndarray) -> _Rays:
        """Sample the map along each column's ray: covers, ground and what stands on it."""
        t, d = self.t, self.d
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        px = cx + d[:, None] * cos_t[None, :]
        py = cy + d[:, None] * sin_t[None, :]
        ix = np.clip(np.rint(px).astype(np.int64), 0, self.map_w - 1)
        iy = np.clip(np.rint(py).astype(np.int64), 0, self.map_h - 1)
        lab = t.labels[iy, ix]
        aux = t.aux[iy, ix]
        zg = self._z(t.height[iy, ix])
        zg[(lab == WATER) & (aux == SEA)] = 0.0
        tx = self._tex(self.tex, px * 6.0, py * 6.0)
        objh = np.zeros_like(zg)
        fm = lab == FOREST
        objh[fm] = np.where(aux[fm] == CONIFER, 0.55, 0.42) + 0.1 * tx[fm]
        um = (lab == URBAN) & (aux != YARD)
        objh[um] = _BUILDING_H[(aux[um] >> 3) & 3] * (0.8 + 0.08 * (aux[um] & 7))
        objh *= np.clip((d[:, None] - 0.9) / 1.6, 0.0, 1.0)  # the camera stands in a clearing
        ci = (
            int(np.clip(round(cy), 0, self.map_h - 1)),
            int(np.clip(round(cx), 0, self.map_w - 1)),
        )
        z0 = float(self._z(t.height[ci])) if t.labels[ci] != WATER or t.aux[ci] != SEA else 0.0
        return _Rays(px, py, ix, iy, lab, aux, zg, objh, z0 + 0.06, cos_t, sin_t, cx, cy)

    def _visible(self, rays: _Rays, horizon: float, span_up: float, span_dn: float) -> _Scene:
        """For each pixel, the first ray sample whose top reaches above its row."""
        R, C, d = self.R, self.C, self.d
        J = len(d)
        ztop = rays.zg + rays.objh
        a_top = np.degrees(np.arctan2(ztop - rays.cam_z, d[:, None]))
        a_gnd = np.degrees(np.arctan2(rays.zg - rays.cam_z, d[:, None]))
        r_top = horizon - self._rows(a_top, span_up, span_dn)
        r_gnd = horizon - self._rows(a_gnd, span_up, span_dn)
        reach = np.minimum.accumulate(r_top, axis=0)  # highest row covered so far, per column
        # one searchsorted over all columns at once (each column's keys offset into its band)
        band = np.float64(4 * R + 8)
        keys = (np.clip(-reach, -2.0 * R - 2, 2.0 * R + 2) + band * np.arange(C)[None, :]).T.ravel()
        probe = -(self.rows[:, None].astype(np.float64) + 0.5) + band * np.arange(C)[None, :]
        hit = (
            np.searchsorted(keys, probe.ravel(), side="left").reshape(R, C)
            - J * np.arange(C)[None, :]
        )
        sky = hit >= J
        j = np.minimum(hit, J - 1)
        cols = np.broadcast_to(np.arange(C), (R, C))
        rr = np.broadcast_to(self.rows[:, None], (R, C))
        face = (rr + 0.5 < r_gnd[j, cols]) & (rays.objh[j, cols] > 0) & ~sky
        # distance of each pixel, interpolated between the samples bounding it in its column,
        # so textures stay continuous in perspective (on flat ground and on slopes)
        dj = d[j]
        prev_reach = np.vstack([np.full((1, C), float(R)), reach[:-1]])
        rp = prev_reach[j, cols]
        rt = r_top[j, cols]
        frac = np.clip((rp - rr - 0.5) / np.maximum(rp - rt, 1e-3), 0.0, 1.0)
        dprev = dj / self.step
        dc = np.where(face, dj, dprev + frac * (dj - dprev))
        wx = rays.cx + dc * rays.cos_t[None, :]
        wy = rays.cy + dc * rays.sin_t[None, :]
        return _Scene(
            j,
            sky,
            face,
            rays.lab[j, cols],
            rays.aux[j, cols],
            dc,
            wx,
            wy,
            rr,
            cols,
            rr - horizon,
            r_top,
        )

    def _paint(
        self, rays: _Rays, sc: _Scene, lt: _Light, horizon: float, span_up: float, span_dn: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The colour of every visible land-cover pixel, before light and haze."""
        t = self.t
        L, A, j, cols, rr, face, wx, wy, dc = (
            sc.L,
            sc.A,
            sc.j,
            sc.cols,
            sc.rr,
            sc.face,
            sc.wx,
            sc.wy,
            sc.dc,
        )
        sky, below, r_top, hor = sc.sky, sc.below, sc.r_top, lt.horizon
        img = np.zeros((self.R, self.C, 3), _F)
        tf = self._tex(self.tex_fine, wx * 40.0, wy * 40.0)
        tb = self._tex(self.tex, wx * 3.0, wy * 3.0)
        emissive = np.zeros((self.R, self.C), bool)

        def put(mask: np.ndarray, colour: np.ndarray) -> None:
            img[mask] = colour

        m = (L == WATER) & ~sky
        if m.any():
            near = np.clip(below[m] / max(span_dn, 1.0), 0.0, 1.0)
            wcol = np.where(
                (A[m] == SEA)[:, None], np.array((38, 86, 118), _F), np.array((44, 78, 80), _F)
            )
            refl = (0.75 - 0.55 * near)[:, None]
            col = wcol * (1 - refl) + hor * refl
            ripple = np.sin(wx[m] * 37.0 + wy[m] * 23.0 + 2.0 * tb[m]) * np.exp(-dc[m] / 3.0)
            streak = self._tex(
                self.tex_fine, cols[m] * (12.0 / self.C) + rr[m] * 0.1, rr[m] * (300.0 / self.R)
            )
            col = col * (1.0 + 0.1 * ripple + 0.05 * streak * (1.0 - near))[:, None]
            prev = rays.lab[np.maximum(j[m] - 1, 0), cols[m]]
            foam = (prev == SAND) | (prev == ROCK)
            col[foam] = col[foam] * 0.35 + np.array((236, 240, 242), _F) * 0.65
            put(m, col)
        m = L == SAND
        put(m, np.array((224, 206, 162), _F) * (1.0 + 0.05 * tf[m] + 0.03 * tb[m])[:, None])
        m = L == GRASS
        mix = np.clip(0.5 + 0.3 * tb[m], 0, 1)[:, None]
        col = np.array((92, 138, 58), _F) * (1 - mix) + np.array((150, 158, 86), _F) * mix
        put(m, col * (1.0 + 0.16 * tf[m])[:, None])
        m = L == FARM
        if m.any():
            a = A[m]
            ang = np.where((a & 32) > 0, 0.0, 1.5708) + (a & 7) * 0.4
            rows_pat = np.sin((wx[m] * np.cos(ang) + wy[m] * np.sin(ang)) * 70.0)
            put(m, _CROPS[a & 7] * (1.0 + 0.13 * rows_pat + 0.06 * tf[m])[:, None])
        m = L == FOREST
        if m.any():
            con = (A[m] == CONIFER)[:, None]
            col = np.where(con, np.array((30, 62, 38), _F), np.array((50, 88, 40), _F))
            fm = face[m]
            lx = np.where(
                fm, rays.px[j[m], cols[m]] * 9.0 + cols[m] * (90.0 / self.C), wx[m] * 25.0
            )
            ly = np.where(fm, rays.py[j[m], cols[m]] * 9.0 + rr[m] * (90.0 / self.R), wy[m] * 25.0)
            leaf = self._tex(self.tex, lx, ly)
            put(
                m,
                col
                * (1.0 + 0.22 * leaf + 0.1 * tf[m])[:, None]
                * np.where(face[m], 1.0, 0.8)[:, None],
            )
        m = L == URBAN
        if m.any():
            wall = face[m]
            a = A[m]
            col = np.where(wall[:, None], _WALLS[a & 7], np.array((142, 140, 134), _F))
            top = r_top[j[m], cols[m]]
            win = wall & (((rr[m] - top) % 4.0) > 1.6) & ((cols[m] % 3) != 0) & (rr[m] - top > 1.0)
            if lt.night:
                lit = self._tex(self.tex_fine, cols[m] * 7.0, rr[m] * 5.0) > 0.2
                col[win & lit] = np.array((252, 214, 130), _F) * 3.0  # survives the dark light
                em = np.zeros(int(m.sum()), bool)
                em[win & lit] = True
                emissive[m] = em
            else:
                col[win] = col[win] * 0.45 + np.array((70, 84, 104), _F) * 0.55
            put(m, col * (1.0 + 0.04 * tf[m])[:, None])
        m = L == ROAD
        put(m, np.array((74, 74, 78), _F) * (1.0 + 0.05 * tf[m])[:, None])
        m = L == ROCK
        if m.any():
            sy_ = np.clip(np.rint(wy[m]).astype(np.int64), 0, self.map_h - 1)
            sx_ = np.clip(np.rint(wx[m]).astype(np.int64), 0, self.map_w - 1)
            sh = t.shade[sy_, sx_]
            # height of each rock pixel, for strata and crags that run across slopes
            up = horizon - rr[m]
            a = np.radians(self._alpha(up, span_up, span_dn))
            zp = rays.cam_z + dc[m] * np.tan(np.clip(a, -1.2, 1.2))
            strata = self._tex(self.tex, wx[m] * 4.0 + wy[m] * 4.0, zp * 28.0)
            crag = self._tex(self.tex_fine, wx[m] * 30.0 + zp * 9.0, wy[m] * 30.0 + zp * 31.0)
            col = (
                np.array((142, 132, 120), _F)
                * (sh**0.7 * (1.0 + 0.22 * strata + 0.12 * crag))[:, None]
            )
            snow = zp > self._z(self.snow_z) + 0.4 * tb[m]
            col[snow] = (
                np.array((226, 230, 238), _F)
                * (sh[snow] ** 0.7 * (1.0 + 0.08 * strata[snow] + 0.05 * crag[snow]))[:, None]
            )
            put(m, col)
        return img, emissive

    def _atmosphere(
        self, img: np.ndarray, emissive: np.ndarray, rays: _Rays, sc: _Scene, lt: _Light
    ) -> np.ndarray:
        """Relief shading, the light of the hour, and aerial perspective (haze with distance)."""
        land = ~sc.sky & (sc.L != WATER) & (sc.L != ROCK)
        jl, cl = sc.j[land], sc.cols[land]
        img[land] *= np.sqrt(self.t.shade[rays.iy[jl, cl], rays.ix[jl, cl]])[:, None]
        img *= lt.light
        haze = lt.horizon.copy()
        fog = np.exp(-sc.dc / lt.visibility)[..., None]
        img = np.where(sc.sky[..., None], 0.0, img * fog + haze * (1.0 - fog))
        if lt.night:
            img = np.where(emissive[..., None], img / 3.0 * 0.9 * fog + haze * (1 - fog), img)
        return img

    def _sky(
        self, sc: _Scene, lt: _Light, horizon: float, span_dn: float, rng: np.random.Generator
    ) -> np.ndarray:
        """The sky of every pixel: gradient, clouds, the sun's glow, stars."""
        R, C, cols, rr = self.R, self.C, sc.cols, sc.rr
        zen, hor, weather = lt.zenith, lt.horizon, lt.weather
        ts = np.clip((horizon - rr) / max(horizon, 1.0), 0.0, 1.0) ** 0.6
        skycol = hor * (1 - ts[..., None]) + zen * ts[..., None]
        cover = _CLOUD_COVER[weather]
        if cover > 0:
            ox, oy = rng.integers(0, 256, size=2)
            step = 48.0 / R
            cl = self._tex(self.clouds, cols * step + ox, rr * step * 2.2 + oy)
            cl = cl + 0.35 * self._tex(self.tex, cols * 0.7 + oy, rr * 1.5 + ox)
            amount = np.clip((cl - (1.2 - 2.4 * cover)) * 0.8, 0.0, 1.0) * (0.5 + 0.5 * ts)
            ccol = hor * 0.4 + np.array((235, 235, 238), _F) * 0.6 * float(
                min(1.0, hor.mean() / 150.0)
            )
            if weather in ("overcast", "rain", "fog"):
                ccol = hor * 0.9
            skycol = skycol * (1 - amount[..., None]) + ccol * amount[..., None]
        if lt.sun_elevation > -2 and weather in ("clear", "cloudy"):
            # the sun somewhere ahead-ish (or outside a photo); anywhere around a panorama
            sun_az = float(rng.uniform(-1.2, 1.2)) * (math.pi / 1.2 if self.panorama else 1.0)
            sc_col = (sun_az / (self.fov / 2) + 1) * C / 2
            sr = horizon - self._rows(np.array(max(lt.sun_elevation, 1.0)), horizon, span_dn)
            dist2 = ((cols - sc_col) ** 2 + (rr - sr) ** 2) / (R * 0.06) ** 2
            glow = np.exp(-dist2)[..., None] * (np.array((255, 236, 190), _F) - skycol) * 0.85
            glow += np.exp(-dist2 / 12.0)[..., None] * np.array((40, 30, 10), _F)
            skycol = skycol + glow
        if lt.night and weather == "clear":
            stars = rng.random((R, C)) < 0.004
            skycol[stars] = np.array((230, 230, 240), _F)
        return skycol

    def _weather(self, img: np.ndarray, lt: _Light, rng: np.random.Generator) -> np.ndarray:
        """Rain streaks and a veil of fog over the whole picture."""
        R, C = self.R, self.C
        if lt.weather == "rain":
            drops = rng.random((R, C)) < 0.01
            streak = np.zeros((R, C), _F)
            for k in range(int(R * 0.06) + 2):
                streak += np.roll(np.roll(drops, k, axis=0), k // 3, axis=1)
            rain = np.clip(streak, 0, 1)[..., None]
            img = img * (1 - 0.3 * rain) + 0.3 * rain * np.array((200, 205, 214), _F)
        if lt.weather == "fog":
            img = img * 0.8 + lt.horizon * 0.2
        return img
