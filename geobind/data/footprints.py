"""Where raster tiles lie on the Earth: footprints and centres in WGS84 longitude/latitude.

The corners of a tile's pixel window go through the raster's affine transform into its CRS,
then through pyproj into longitude/latitude (``always_xy``: x is longitude). The footprint is
the polygon of the four corners, counter-clockwise for a north-up raster; the centre is the
window's centre pixel transformed the same way. Longitudes are wrapped into [-180, 180).

A footprint that crosses the antimeridian is **split** there, into a MultiPolygon of one part
east of -180 and one west of 180, as RFC 7946 (GeoJSON) asks; its bounding box keeps the
RFC 7946 section 5 form ``xmin > xmax`` (the west edge, east of 180 wrapped, lies east of
the east edge), which is also how GeoParquet's bbox covering columns hold it. No footprint
therefore spans the globe.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

__all__ = ["Footprints", "tile_footprints", "wrap_lon"]


@dataclass
class Footprints:
    """Tiles' centres, footprints (shapely geometries) and bounding boxes, one row a tile."""

    lat: np.ndarray
    lon: np.ndarray
    geometry: np.ndarray
    xmin: np.ndarray
    ymin: np.ndarray
    xmax: np.ndarray
    ymax: np.ndarray

    def wkb(self) -> list[bytes]:
        """The footprints as Well-Known Binary (ISO, little-endian)."""
        return list(shapely.to_wkb(self.geometry, flavor="iso"))

    @property
    def crosses_antimeridian(self) -> np.ndarray:
        """Per tile, whether its footprint was split at the antimeridian."""
        return self.xmin > self.xmax


def wrap_lon(lon: Any) -> np.ndarray:
    """Longitudes wrapped into [-180, 180)."""
    return (np.asarray(lon, np.float64) + 180.0) % 360.0 - 180.0


@functools.lru_cache(maxsize=16)
def _to_wgs84(crs: str) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def _lonlat(transform: Any, crs: str, cols: np.ndarray, rows: np.ndarray) -> tuple:
    """Pixel positions (fractional column, row) -> (lon, lat) in degrees."""
    a, b, c, d, e, f = (float(v) for v in list(transform)[:6])
    x, y = a * cols + b * rows + c, d * cols + e * rows + f
    lon, lat = _to_wgs84(str(crs)).transform(x, y)
    return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def tile_footprints(
    transform: Any, crs: str, cols: Any, rows: Any, size: int | tuple[int, int]
) -> Footprints:
    """Footprints of the windows at pixel offsets ``(cols[i], rows[i])``, ``size`` pixels a
    side (or ``(width, height)``), of a raster with this affine ``transform`` (its six
    coefficients ``a, b, c, d, e, f``) and ``crs`` (WKT, ``EPSG:n``, anything pyproj reads)."""
    width, height = (size, size) if isinstance(size, int) else size
    c0 = np.asarray(cols, np.float64)
    r0 = np.asarray(rows, np.float64)
    # south-west, south-east, north-east, north-west: counter-clockwise when north is up
    corner_c = np.stack([c0, c0 + width, c0 + width, c0], 1)
    corner_r = np.stack([r0 + height, r0 + height, r0, r0], 1)
    lon, lat = _lonlat(transform, crs, corner_c.ravel(), corner_r.ravel())
    lon, lat = wrap_lon(lon).reshape(-1, 4), lat.reshape(-1, 4)
    centre_lon, centre_lat = _lonlat(transform, crs, c0 + width / 2, r0 + height / 2)
    crossing = lon.max(1) - lon.min(1) > 180.0
    lon = np.where(crossing[:, None] & (lon < 0), lon + 360.0, lon)
    rings = np.concatenate([np.stack([lon, lat], 2), np.stack([lon[:, :1], lat[:, :1]], 2)], 1)
    geometry = shapely.polygons(rings)
    xmin, xmax = lon.min(1), lon.max(1)
    for i in np.flatnonzero(crossing):
        geometry[i], xmin[i], xmax[i] = _split_at_antimeridian(geometry[i])
    return Footprints(
        lat=np.asarray(centre_lat, np.float64),
        lon=wrap_lon(centre_lon),
        geometry=geometry,
        xmin=xmin,
        ymin=lat.min(1),
        xmax=xmax,
        ymax=lat.max(1),
    )


def _split_at_antimeridian(polygon: Any) -> tuple[Any, float, float]:
    """A polygon whose longitudes run past 180 -> its parts each side of the antimeridian,
    and its RFC 7946 west and east edges."""
    west_part = shapely.intersection(polygon, shapely.box(-180.0, -90.0, 180.0, 90.0))
    east_part = shapely.transform(
        shapely.intersection(polygon, shapely.box(180.0, -90.0, 540.0, 90.0)),
        lambda xy: xy - np.array([360.0, 0.0]),
    )
    parts = [p for p in (west_part, east_part) if not p.is_empty and p.area > 0]
    if len(parts) == 1:  # it only touched the antimeridian
        part = parts[0]
        return part, float(part.bounds[0]), float(part.bounds[2])
    west_edge, _, east_edge, _ = polygon.bounds
    return shapely.MultiPolygon(parts), float(west_edge), float(east_edge) - 360.0
