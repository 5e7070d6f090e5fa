"""The synthetic world: a map, and places on it seen from above, from the ground, by ear and
in words."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from geobind.world.attributes import TIMES_OF_DAY, WEATHERS, Conditions, draw_conditions
from geobind.world.audio import SoundBank, describe_sound, encode_audio
from geobind.world.caption import write_caption
from geobind.world.config import LAND_COVERS, WorldConfig
from geobind.world.ground import GroundRenderer
from geobind.world.mosaic import render_mosaic
from geobind.world.noise import hash_u01
from geobind.world.terrain import (
    CONIFER,
    FARM,
    FOREST,
    ROAD,
    SEA,
    WATER,
    Terrain,
    build_terrain,
)

__all__ = ["MODALITIES", "Place", "World", "generate", "places_digest"]

#: What a place can record besides its satellite tile, which is always cut.
MODALITIES = ("ground", "audio", "caption")
#: How far sound carries, in mosaic pixels (about 41 m each at the default size): the distance
#: over which ground, vegetation and air take away a further 1/e of it, beyond spherical
#: spreading (:meth:`World.heard_cover`). Surf, traffic and wind carry about 1 km ...
REACH_FAR_PX = 24.0
#: ... birds, frogs and insects about 330 m.
REACH_NEAR_PX = 8.0
#: The nearest a patch of ground's sound comes to the recorder on average (one pixel, ~41 m):
#: it keeps the recorder's own pixel from drowning out the rest.
NEAREST_PX = 1.0


#: The kinds of field and forest whose sounds differ (:data:`geobind.world.audio.KINDS`), by
#: the crop codes of the terrain's farmland (``aux & 7``: ripe wheat, green crop,
#: ploughed soil, young crop, stubble, maize; the mosaic's ``CROP_COLOURS``) and its conifers.
CROP_KINDS = {0: "ripe_wheat", 2: "ploughed", 3: "young_crop", 4: "stubble", 5: "maize"}


class HeardCover(NamedTuple):
    """Land-cover shares as heard at a place (:meth:`World.heard_cover`): ``far`` weighted by
    how far loud sources carry, ``near`` by how far birds, frogs and insects do, the sea's
    share of the water heard far, and ``kinds``: the shares heard near of the kinds of field
    and forest whose sounds differ (conifers; ploughed soil, young crops, stubble, ripe wheat,
    maize)."""

    far: np.ndarray
    near: np.ndarray
    sea_share: float
    kinds: dict[str, float]


_PLASTIC = 1.32471795724474602596  # R2 low-discrepancy sequence constant


@dataclass
class Place:
    """One place of the world and everything recorded there.

    :param id: stable identifier (``w{seed}-{index:06d}``, or from lat/lon for ad-hoc places).
    :param satellite: PNG bytes, ``tile_size`` square, a crop of the world's mosaic.
    :param ground: PNG bytes, the picture from the ground: a panorama ``ground_size / 2`` by
        ``2 * ground_size`` pixels, or a photo ``ground_size`` square (``ground_view``).
    :param audio: FLAC or WAV bytes (16-bit mono, ``sample_rate``, ``clip_seconds``).
    :param caption: one English sentence.
    :param fractions: float32 ``[len(LAND_COVERS)]``, the true land-cover fractions of the tile.
    :param conditions: time of day, weather and viewing direction of the picture (and caption).
    :param view_fractions: float32, the land-cover share of the ground view's non-sky pixels.
    :param heard: time of day, weather and level of the sound's own visit.
    :param sources: what went into ``audio``, source by source (``SoundBank.render``'s
        trace: each steady source's level, each kind of event's count); empty when no audio
        was rendered.
    """

    id: str
    index: int | None
    lat: float
    lon: float
    satellite: bytes
    ground: bytes
    audio: bytes
    caption: str
    fractions: np.ndarray
    conditions: Conditions
    view_fractions: np.ndarray = field(repr=False)
    heard: Conditions | None = field(default=None, repr=False)
    sources: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def sound_caption(self) -> str:
        """What is heard in ``audio`` (:func:`~geobind.world.audio.describe_sound` of its
        ``sources``); empty when no audio was rendered."""
        return describe_sound(self.sources) if self.audio else ""

    @property
    def dominant(self) -> str:
        """The land cover with the largest fraction."""
        return LAND_COVERS[int(np.argmax(self.fractions))]

    @property
    def attributes(self) -> dict:
        """Conditions and fractions as plain values (for dataset columns)."""
        out = self.conditions.as_dict()
        if self.heard is not None:  # the sound's own visit
            out.update(
                sound_time_of_day=self.heard.time_of_day,
                sound_weather=self.heard.weather,
                loudness_db=round(float(self.heard.loudness_db), 2),
            )
        out.update({f"frac_{name}": float(v) for name, v in zip(LAND_COVERS, self.fractions)})
        return out


def place_id(seed: int, index: int) -> str:
    """The id of the world's place ``index``: the same in every dataset it is dealt to."""
    return f"w{seed}-{index:06d}"


#: The rasters of the last world built: ``((seed, mosaic shape), (terrain, mosaic))``.
_last_rasters: tuple[tuple[int, tuple[int, int]], tuple[Terrain, np.ndarray]] | None = None


def _rasters(cfg: WorldConfig) -> tuple[Terrain, np.ndarray]:
    """The terrain and mosaic of a world, which follow from its seed and mosaic size alone.

    They take most of a world's build (about 7 s on two cores). The last ones are kept, so a
    process that opens the same world again (an export replaying the world it trained on for
    each tower, a world grown by more places) builds them once; kept by hand rather than by
    ``functools.lru_cache``, whose key would be the whole config, places and all. The arrays
    are made read-only: every World of those settings shares them.
    """
    global _last_rasters
    key = (cfg.seed, cfg.mosaic_shape)
    if _last_rasters is None or _last_rasters[0] != key:
        _last_rasters = None  # the old rasters go before the new ones are built
        terrain = build_terrain(cfg)
        rgb = render_mosaic(terrain, cfg.seed)
        for array in (*vars(terrain).values(), rgb):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
        _last_rasters = key, (terrain, rgb)
    return _last_rasters[1]


class World:
    """A synthetic world built deterministically from ``config.seed``.

    Building takes a few seconds (the rasters and the mosaic; a second world of the same seed
    and mosaic size in a process shares the first one's); places are then made on
    demand, each from its own random stream, so ``place(i)`` is the same whatever else is
    generated, in whatever order.
    """

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = cfg = config if config is not None else WorldConfig()
        self.terrain, self.rgb = _rasters(cfg)
        self.height_px, self.width_px = self.terrain.labels.shape
        self._ground = GroundRenderer(
            self.terrain,
            cfg.ground_size,
            cfg.ground_supersample,
            cfg.seed,
            panorama=cfg.ground_view == "panorama",
        )
        self._sound: SoundBank | None = None
        self._locations: list[tuple[float, float]] = []
        self._candidates = 0  # R2 points examined so far

    # ---- geometry -------------------------------------------------------------------------
    def latlon_to_pixel(self, lat, lon):
        """Mosaic pixel coordinates ``(x, y)`` (floats; pixel ``i`` spans ``[i, i+1)``)."""
        c = self.config
        x = (np.asarray(lon, np.float64) - c.lon_min) / (c.lon_max - c.lon_min) * self.width_px
        y = (c.lat_max - np.asarray(lat, np.float64)) / (c.lat_max - c.lat_min) * self.height_px
        return (float(x), float(y)) if np.ndim(x) == 0 else (x, y)

    def pixel_to_latlon(self, x, y):
        """Inverse of :meth:`latlon_to_pixel`: ``(lat, lon)``."""
        c = self.config
        lon = c.lon_min + np.asarray(x, np.float64) / self.width_px * (c.lon_max - c.lon_min)
        lat = c.lat_max - np.asarray(y, np.float64) / self.height_px * (c.lat_max - c.lat_min)
        return (float(lat), float(lon)) if np.ndim(lat) == 0 else (lat, lon)

    def _window(self, lat: float, lon: float) -> tuple[int, int]:
        """Top-left pixel of the tile centred on (lat, lon), kept inside the mosaic."""
        x, y = self.latlon_to_pixel(lat, lon)
        T = self.config.tile_size
        x0 = int(np.clip(round(x - T / 2), 0, self.width_px - T))
        y0 = int(np.clip(round(y - T / 2), 0, self.height_px - T))
        return x0, y0

    def tile(self, lat: float, lon: float) -> np.ndarray:
        """The satellite tile at (lat, lon): ``tile_size x tile_size x 3`` uint8 (a view)."""
        x0, y0 = self._window(lat, lon)
        T = self.config.tile_size
        return self.rgb[y0 : y0 + T, x0 : x0 + T]

    def fractions(self, lat, lon) -> np.ndarray:
        """Land-cover fractions in the tile's footprint: ``[C]`` float32 (``[n, C]`` for
        arrays)."""
        if np.ndim(lat) > 0:
            return np.stack([self.fractions(a, b) for a, b in zip(np.ravel(lat), np.ravel(lon))])
        x0, y0 = self._window(float(lat), float(lon))
        T = self.config.tile_size
        counts = np.bincount(
            self.terrain.labels[y0 : y0 + T, x0 : x0 + T].ravel(), minlength=len(LAND_COVERS)
        )
        return (counts / counts.sum()).astype(np.float32)

    def heard_cover(self, lat: float, lon: float) -> HeardCover:
        """The land cover that a recorder standing at (lat, lon) hears, near and far: each
        pixel of the tile weighted by how much of its sound reaches the recorder.

        A patch of ground at distance ``r`` reaches the recorder with an intensity that falls as
        ``1 / r**2`` (spherical spreading, 6 dB for each doubling of distance) and by
        ``exp(-r / reach)`` for what ground, vegetation and air absorb on the way (the excess
        attenuation of ISO 9613-2, a few dB per hundred metres over soft ground). A field
        recording so hears mostly its own surroundings, as Radio Aporee's recordings, the
        sounds SoundingEarth (Heidler et al., 2023) pairs with aerial tiles, do: a song sparrow
        in the hedge beside the microphone, a road a hundred metres off, surf from a beach
        half a kilometre away; the far side of a 2.6 km tile is seldom heard. Loud sources
        (surf, traffic, wind in the open) carry farther (:data:`REACH_FAR_PX`) than birds,
        frogs and insects (:data:`REACH_NEAR_PX`). Which crop a field holds and whether a
        wood is of conifers are heard too, as near as birds: larks on ploughed soil, a pheasant
        in the stubble, the rustle of maize (:data:`geobind.world.audio.KINDS`).
        """
        x, y = self.latlon_to_pixel(lat, lon)
        x0, y0 = self._window(lat, lon)
        T = self.config.tile_size
        labels = self.terrain.labels[y0 : y0 + T, x0 : x0 + T]
        # each pixel's distance from the recorder, in pixels (pixel i spans [i, i+1))
        dx = np.arange(T) + x0 + 0.5 - x
        dy = np.arange(T) + y0 + 0.5 - y
        r = np.hypot(dx[None, :], dy[:, None])
        water = labels == WATER
        sea = water & (self.terrain.aux[y0 : y0 + T, x0 : x0 + T] == SEA)
        far_w, near_w = (
            np.exp(-r / reach) / (r**2 + NEAREST_PX**2) for reach in (REACH_FAR_PX, REACH_NEAR_PX)
        )
        far, near = (
            np.bincount(labels.ravel(), w.ravel(), minlength=len(LAND_COVERS))
            for w in (far_w, near_w)
        )
        total = float(near.sum())
        far, near = ((v / v.sum()).astype(np.float32) for v in (far, near))
        on_water = float(far_w[water].sum())  # the sea is heard as far as surf carries
        sea_share = float(far_w[sea].sum()) / on_water if on_water > 0 else 0.0
        aux = self.terrain.aux[y0 : y0 + T, x0 : x0 + T]
        farm, crop = labels == FARM, aux & 7  # the low bits: the crop (the mosaic's too)
        kinds = {"conifer": float(near_w[(labels == FOREST) & (aux == CONIFER)].sum()) / total}
        for code, kind in CROP_KINDS.items():
            kinds[kind] = float(near_w[farm & (crop == code)].sum()) / total
        return HeardCover(far, near, sea_share, kinds)

    def mosaic_image(self):
        """The whole map as a PIL image (north up)."""
        from PIL import Image

        return Image.fromarray(self.rgb)

    # ---- where places are -----------------------------------------------------------------
    def sample_places(
        self, n: int, rng: None | int | np.random.Generator = None
    ) -> list[tuple[float, float]]:
        """``n`` (lat, lon) points spread evenly over the map (a jittered low-discrepancy
        sequence; open sea is thinned out). ``rng`` None or an int seed gives points that do
        not depend on ``n`` (the first ``m`` of ``n`` points are the ``m`` points); a
        Generator draws a fresh layout.
        """
        if rng is None or isinstance(rng, (int, np.integer)):
            seed = self.config.seed if rng is None else int(rng)
            if seed == self.config.seed:
                self._extend(n)
                return list(self._locations[:n])
            return self._sequence(n, seed, None)
        return self._sequence(n, None, rng)

    def _sequence(self, n: int, seed: int | None, rng: np.random.Generator | None) -> list:
        out: list = []
        start = 0
        while len(out) < n:
            batch = max(256, 2 * (n - len(out)))
            pts, _ = self._candidates_from(start, batch, seed, rng)
            out.extend(pts)
            start += batch
        return out[:n]

    def _extend(self, n: int) -> None:
        while len(self._locations) < n:
            batch = max(256, 2 * (n - len(self._locations)))
            pts, _ = self._candidates_from(self._candidates, batch, self.config.seed, None)
            self._locations.extend(pts)
            self._candidates += batch

    def _candidates_from(
        self, start: int, count: int, seed: int | None, rng: np.random.Generator | None
    ):
        T = self.config.tile_size
        i = np.arange(start, start + count)
        if rng is None:
            off = hash_u01(seed, -1, np.arange(2))
            jit = np.stack([hash_u01(seed, i, 1), hash_u01(seed, i, 2)], 1) - 0.5
            keep_draw = hash_u01(seed, i, 3)
        else:
            off = rng.random(2)
            jit = rng.random((count, 2)) - 0.5
            keep_draw = rng.random(count)
        u = (off[0] + (i + 1) / _PLASTIC) % 1.0
        v = (off[1] + (i + 1) / _PLASTIC**2) % 1.0
        margin = T / 2 + 2 + 0.25 * T
        x = margin + u * (self.width_px - 2 * margin) + jit[:, 0] * 0.5 * T
        y = margin + v * (self.height_px - 2 * margin) + jit[:, 1] * 0.5 * T
        lat, lon = self.pixel_to_latlon(x, y)
        keep = []
        for k in range(count):  # thin out open sea: keep 1 in 4 all-water places
            f = self.fractions(lat[k], lon[k])
            if f[WATER] < 0.97 or keep_draw[k] < 0.25:
                keep.append((float(lat[k]), float(lon[k])))
        return keep, count

    @property
    def locations(self) -> list[tuple[float, float]]:
        """The world's ``config.places`` places, (lat, lon) in index order."""
        return self.sample_places(self.config.places)

    # ---- places ---------------------------------------------------------------------------
    @property
    def sound(self) -> SoundBank:
        if self._sound is None:
            c = self.config
            self._sound = SoundBank(c.sample_rate, c.clip_samples, c.seed)
        return self._sound

    def place(
        self,
        key: int | tuple[float, float],
        rng: np.random.Generator | None = None,
        modalities: Iterable[str] | None = None,
        seen: tuple[str, str] | None = None,
    ) -> Place:
        """Place number ``key`` (any int >= 0), or an ad-hoc place at ``key = (lat, lon)``.

        Everything random about it (time, weather, view direction, sounds, wording) comes from
        ``rng``, by default a stream seeded by the world's seed and the key.

        :param modalities: render only these of ``ground``, ``audio``, ``caption`` (default
            all); the others are left empty. Each has its own random stream, so a place's
            sound is the same whether or not its view was rendered.
        :param seen: ``(time_of_day, weather)`` of the picture instead of drawn ones (the draw
            is still made, so everything else about the place stays as ``rng`` has it); for
            studies of what a picture's conditions do to an encoder.
        """
        c = self.config
        index: int | None
        if isinstance(key, (int, np.integer)):
            index = position = int(key)
            if position < 0:
                raise IndexError(f"place index must be >= 0, got {position}")
            self._extend(position + 1)
            lat, lon = self._locations[position]
            pid = place_id(c.seed, position)
            if rng is None:
                rng = np.random.default_rng([c.seed, 0x91AC, position])
        else:
            index = None
            lat, lon = (float(key[0]), float(key[1]))
            pid = f"w{c.seed}-{lat:.5f}_{lon:.5f}"
            if rng is None:
                rng = np.random.default_rng(
                    [c.seed, 0x91AD, int(round((lat + 90) * 1e6)), int(round((lon + 180) * 1e6))]
                )
        wanted = set(MODALITIES if modalities is None else modalities)
        if wanted - set(MODALITIES):
            raise ValueError(
                f"unknown modalities {sorted(wanted - set(MODALITIES))}; choose from {MODALITIES}"
            )
        if seen is not None and (seen[0] not in TIMES_OF_DAY or seen[1] not in WEATHERS):
            raise ValueError(f"seen={seen!r}: need (one of {TIMES_OF_DAY}, one of {WEATHERS})")
        return self._make(pid, index, lat, lon, rng, wanted, seen)

    def places(self, n: int | None = None) -> Iterator[Place]:
        """Places ``0 .. n-1`` (default ``config.places``)."""
        for i in range(self.config.places if n is None else n):
            yield self.place(i)

    def _make(
        self,
        pid: str,
        index: int | None,
        lat: float,
        lon: float,
        rng: np.random.Generator,
        wanted: set,
        seen: tuple[str, str] | None = None,
    ) -> Place:
        c = self.config
        T = c.tile_size
        x0, y0 = self._window(lat, lon)
        labels = self.terrain.labels[y0 : y0 + T, x0 : x0 + T]
        counts = np.bincount(labels.ravel(), minlength=len(LAND_COVERS))
        frac = (counts / counts.sum()).astype(np.float32)
        water = labels == WATER
        sea_share = (
            float((self.terrain.aux[y0 : y0 + T, x0 : x0 + T][water] == SEA).mean())
            if water.any()
            else 0.0
        )

        view_rng, sound_rng, caption_rng = rng.spawn(3)
        # The picture and the sound are separate visits, as in the real data the method binds
        # (a Street View panorama and a field recording made years apart); the caption
        # describes the picture.
        cond = draw_conditions(rng, "street_view" if self._ground.panorama else "any")
        heard = draw_conditions(rng)
        when = seen if seen is not None else (cond.time_of_day, cond.weather)
        x, y = self.latlon_to_pixel(lat, lon)
        cx, cy, heading = self._viewpoint(x - 0.5, y - 0.5, cond.heading_deg, rng)
        cond = Conditions(*when, heading, cond.loudness_db)
        view, view_frac = None, np.zeros(len(LAND_COVERS), np.float32)
        if wanted & {"ground", "caption"}:  # a caption says what the view shows
            view, counts_view = self._ground.render(cx, cy, cond, view_rng)
            view_frac = (counts_view / max(counts_view.sum(), 1.0)).astype(np.float32)
        audio = b""
        sources: dict[str, float] = {}
        if "audio" in wanted:  # the trace draws nothing: the clip is the same with or without
            far, near, far_sea, kinds = self.heard_cover(lat, lon)
            clip = self.sound.render(
                far, far_sea, heard, sound_rng, trace=sources, near=near, kinds=kinds
            )
            audio = encode_audio(clip, c.sample_rate, c.audio_format)
        caption = (
            write_caption(frac, view_frac, cond, sea_share, caption_rng)
            if "caption" in wanted
            else ""
        )
        return Place(
            id=pid,
            index=index,
            lat=lat,
            lon=lon,
            satellite=_png(self.rgb[y0 : y0 + T, x0 : x0 + T], c.png_compress_level),
            ground=_png(view, c.png_compress_level)
            if "ground" in wanted and view is not None
            else b"",
            audio=audio,
            caption=caption,
            fractions=frac,
            conditions=cond,
            view_fractions=view_frac,
            heard=heard,
            sources=sources,
        )

    def _viewpoint(
        self, cx: float, cy: float, heading: float, rng: np.random.Generator
    ) -> tuple[float, float, float]:
        """Where the photographer stands and looks: often along a nearby road, or out over
        nearby water; otherwise where the random heading points."""
        labels = self.terrain.labels
        r = 6
        y0, x0 = int(round(cy)) - r, int(round(cx)) - r
        win = labels[max(0, y0) : y0 + 2 * r + 1, max(0, x0) : x0 + 2 * r + 1]
        ys, xs = np.nonzero(win == ROAD)
        u = rng.random()
        if len(ys) >= 4 and u < 0.6:
            ys = ys + max(0, y0)
            xs = xs + max(0, x0)
            k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
            cx, cy = float(xs[k]), float(ys[k])
            pts = np.stack([xs - xs.mean(), ys - ys.mean()], 1).astype(np.float64)
            _, _, vt = np.linalg.svd(pts, full_matrices=False)
            dx, dy = vt[0]
            if rng.random() < 0.5:
                dx, dy = -dx, -dy
            heading = (math.degrees(math.atan2(dy, dx)) + 90.0) % 360.0
            return cx, cy, heading
        T = self.config.tile_size
        r = T // 2
        y0, x0 = int(round(cy)) - r, int(round(cx)) - r
        win = labels[max(0, y0) : y0 + 2 * r, max(0, x0) : x0 + 2 * r]
        ys, xs = np.nonzero(win == WATER)
        if 0.05 * win.size < len(ys) < 0.95 * win.size and u > 0.5:
            dx = xs.mean() + max(0, x0) - cx
            dy = ys.mean() + max(0, y0) - cy
            heading = (
                math.degrees(math.atan2(dy, dx)) + 90.0 + float(rng.uniform(-30, 30))
            ) % 360.0
        return cx, cy, heading


def _png(array: np.ndarray, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def generate(config: WorldConfig | None = None, n: int | None = None) -> Iterator[Place]:
    """Build the world of ``config`` and yield its places ``0 .. n-1`` (default
    ``config.places``); the same config always yields the same bytes."""
    world = World(config)
    yield from world.places(n)


def places_digest(
    world: World, n: int, modalities: Iterable[str], parts: Callable[[Place], Iterable[bytes]]
) -> str:
    """A sha256 of ``parts(place)`` for the world's first ``n`` places rendered with
    ``modalities``: equal only while the generator renders them the same (what the shipped
    towers were pretrained on, what a world folder holds)."""
    import hashlib

    digest = hashlib.sha256()
    for i in range(min(n, world.config.places)):
        for part in parts(world.place(i, modalities=tuple(modalities))):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()
