"""Settings of the synthetic world and the names of its land covers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from geobind.errors import ConfigError

__all__ = ["GROUND_VIEWS", "LAND_COVERS", "WorldConfig"]

#: The kinds of ground picture a world can take at each place.
GROUND_VIEWS = ("panorama", "photo")

#: The land covers of the world, in label order (index ``i`` of a fraction vector is
#: ``LAND_COVERS[i]``).
LAND_COVERS: tuple[str, ...] = (
    "water",  # sea, bays and lakes
    "sand",  # beaches and dunes
    "grassland",  # meadows, pasture
    "farmland",  # a patchwork of crop fields
    "forest",  # tree canopy
    "urban",  # buildings (towns, city blocks, villages)
    "road",  # highways, country roads, city streets
    "rock",  # bare rock of mountains
)


@dataclass
class WorldConfig:
    """How to build a synthetic world. The same settings always build the same world.

    Feature sizes (cities, forests, fields, streets) are set in mosaic pixels, so a smaller
    ``mosaic_width`` is a smaller piece of the same kind of landscape spread over the box;
    the default is about 41 m a pixel, a 64 px tile about 2.6 km across.

    :param seed: everything follows from it.
    :param places: how many places the world holds (``World.place(i)``, ``generate``).
    :param lat_min, lat_max, lon_min, lon_max: the box the map covers, in degrees.
    :param tile_size: satellite tile side, in pixels (a crop of the mosaic).
    :param ground_size: ground-view picture side, in pixels (square).
    :param ground_supersample: the ground view is drawn this many times larger, then shrunk
        (anti-aliasing); 1 is fastest.
    :param sample_rate: audio sample rate, Hz.
    :param clip_seconds: audio clip length, seconds.
    :param audio_format: ``"flac"`` or ``"wav"`` (16-bit PCM, mono).
    :param mosaic_width: width of the whole-map mosaic, pixels.
    :param mosaic_height: its height; ``None`` keeps the box's ground aspect ratio.
    :param png_compress_level: zlib level of the PNGs (0-9); any level decodes the same.
    :param ground_view: ``"panorama"``: a north-aligned 360-degree street-level panorama
        (``ground_size / 2`` by ``2 * ground_size`` pixels, north in the middle), as CVUSA
        pairs panoramas with aerial tiles (Workman et al., ICCV 2015); ``"photo"``: one
        perspective photo (``ground_size`` square, 80 degrees wide) facing a random way, as
        geotagged photo collections such as YFCC/Flickr come.
    """

    seed: int = 0
    places: int = 3000
    lat_min: float = 40.0
    lat_max: float = 41.0
    lon_min: float = -74.5
    lon_max: float = -73.0
    tile_size: int = 64
    ground_size: int = 64
    ground_supersample: int = 1
    sample_rate: int = 16000
    clip_seconds: float = 5.0
    audio_format: str = "flac"
    mosaic_width: int = 3072
    mosaic_height: int | None = None
    png_compress_level: int = 3
    ground_view: str = "panorama"

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"world config: {key}={getattr(self, key)!r}: {why}")

        if not (-90.0 <= self.lat_min < self.lat_max <= 90.0):
            raise bad("lat_min", f"need -90 <= lat_min < lat_max <= 90 (lat_max={self.lat_max})")
        if not (-180.0 <= self.lon_min < self.lon_max <= 180.0):
            raise bad("lon_min", f"need -180 <= lon_min < lon_max <= 180 (lon_max={self.lon_max})")
        if self.places < 0:
            raise bad("places", "must be >= 0")
        if not 8 <= self.tile_size <= 1024:
            raise bad("tile_size", "must be between 8 and 1024")
        if not 16 <= self.ground_size <= 1024:
            raise bad("ground_size", "must be between 16 and 1024")
        if not 1 <= self.ground_supersample <= 4:
            raise bad("ground_supersample", "must be 1, 2, 3 or 4")
        if not 4000 <= self.sample_rate <= 96000:
            raise bad("sample_rate", "must be between 4000 and 96000 Hz")
        if not 0.25 <= self.clip_seconds <= 60.0:
            raise bad("clip_seconds", "must be between 0.25 and 60 s")
        if self.audio_format not in ("flac", "wav"):
            raise bad("audio_format", "must be 'flac' or 'wav'")
        if self.ground_view not in GROUND_VIEWS:
            raise bad("ground_view", f"must be one of {', '.join(GROUND_VIEWS)}")
        if not 0 <= self.png_compress_level <= 9:
            raise bad("png_compress_level", "must be 0..9")
        width, height = self.mosaic_shape[1], self.mosaic_shape[0]
        if min(width, height) < 4 * self.tile_size:
            raise bad(
                "mosaic_width",
                f"the mosaic ({width}x{height} px) must be at least 4 tiles "
                f"({4 * self.tile_size} px) on each side",
            )
        if width * height > 64_000_000:
            raise bad("mosaic_width", f"the mosaic ({width}x{height} px) is over 64 Mpx")

    @property
    def mosaic_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the mosaic in pixels."""
        if self.mosaic_height is not None:
            return int(self.mosaic_height), int(self.mosaic_width)
        mid = math.radians(0.5 * (self.lat_min + self.lat_max))
        ground_w = (self.lon_max - self.lon_min) * max(math.cos(mid), 0.05)
        ground_h = self.lat_max - self.lat_min
        return max(1, int(round(self.mosaic_width * ground_h / ground_w))), int(self.mosaic_width)

    @property
    def clip_samples(self) -> int:
        """Audio samples per clip."""
        return int(round(self.sample_rate * self.clip_seconds))
