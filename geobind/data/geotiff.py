"""GeoTIFF and Cloud-Optimised GeoTIFF rasters: opened with a check, read window by window,
written georeferenced.

A raster opens as a :class:`GeoRaster`: its pixel grid (size, affine transform, CRS) and how
its bands become a tile's 8-bit RGB (:class:`BandScaling`). Pixels are read one window at a
time and GDAL's block cache is capped (:data:`GDAL_CACHE_MB`), so memory does not grow with
the raster.

Bands:

- an 8-bit raster of three colour bands (or three and an alpha band) is read as it is, and a
  single band (with or without alpha) as grey;
- any other raster (16-bit, float, four or more bands) needs a band choice: three band
  numbers for red, green and blue (``bands=(4, 3, 2)``), or one for grey. Then, and for every
  raster that is not 8-bit, each band is stretched: its ``low`` and ``high`` percentiles
  (default 2 and 98) of valid values, computed on a decimated read (an overview when the file
  has one), map to 0 and 255. The choice and the numbers are recorded in the index built from
  the raster (:meth:`BandScaling.as_dict`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from geobind.encoders.weights import replacing
from geobind.errors import InputError

__all__ = [
    "DEFAULT_STRETCH",
    "GDAL_CACHE_MB",
    "BandScaling",
    "GeoRaster",
    "latlon_bounds",
    "latlon_preview",
    "open_raster",
    "raster_env",
    "write_cog",
    "write_grid",
]

#: GDAL's block cache, in MB, while geobind reads rasters (GDAL's default is 5% of the RAM,
#: which a large raster would fill).
GDAL_CACHE_MB = 64
#: Percentiles of each band's valid values mapped to 0 and 255 when a band is stretched.
DEFAULT_STRETCH = (2.0, 98.0)
#: The longer side of the decimated read the stretch is computed on.
SAMPLE_SIDE = 1024


def raster_env() -> Any:
    """The GDAL settings geobind reads rasters under: a capped block cache (the cap holds for
    every thread while the context is open)."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024)  # rasterio takes bytes


@dataclass(frozen=True)
class BandScaling:
    """Which bands make red, green and blue, and how their values become 0..255.

    :param bands: three 1-based band numbers (grey repeats one).
    :param method: ``"none"`` (8-bit values kept) or ``"percentile"`` (a linear stretch).
    :param percentiles: the stretch's low and high percentiles.
    :param low: per band of ``bands``, the value mapped to 0.
    :param high: per band, the value mapped to 255.
    """

    bands: tuple[int, int, int]
    method: str = "none"
    percentiles: tuple[float, float] | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``[3, h, w]`` band values -> ``[h, w, 3]`` uint8."""
        if self.method == "none":
            return np.ascontiguousarray(values.transpose(1, 2, 0), dtype=np.uint8)
        assert self.low is not None and self.high is not None
        low = np.asarray(self.low, np.float64)[:, None, None]
        span = np.maximum(np.asarray(self.high, np.float64)[:, None, None] - low, 1e-12)
        scaled = np.clip((values.astype(np.float64) - low) / span * 255.0, 0, 255)
        return np.ascontiguousarray(np.round(scaled).astype(np.uint8).transpose(1, 2, 0))

    @classmethod
    def from_dict(cls, record: dict) -> BandScaling:
        """The scaling :meth:`as_dict` recorded."""
        bands = tuple(int(b) for b in record["bands"])
        percentiles = record.get("percentiles")
        return cls(
            (bands[0], bands[1], bands[2]),
            record["method"],
            (float(percentiles[0]), float(percentiles[1])) if percentiles else None,
            tuple(record["low"]) if record.get("low") is not None else None,
            tuple(record["high"]) if record.get("high") is not None else None,
        )

    def as_dict(self) -> dict:
        """A JSON-ready record of the scaling."""
        return {
            "bands": list(self.bands),
            "method": self.method,
            "percentiles": list(self.percentiles) if self.percentiles else None,
            "low": list(self.low) if self.low is not None else None,
            "high": list(self.high) if self.high is not None else None,
        }


class GeoRaster:
    """An opened GeoTIFF, checked to be georeferenced, with its band scaling decided.

    :param bands: 1-based band numbers: three (red, green, blue) or one (grey); ``None``
        chooses for 8-bit RGB(A) and grey rasters and is an error for any other.
    :param stretch: low and high percentiles of the per-band stretch (default
        :data:`DEFAULT_STRETCH`); giving it stretches an 8-bit raster too.
    :param scaling: a scaling decided before (as recorded); then ``bands`` and ``stretch``
        are not used.
    """

    def __init__(
        self,
        path: str | Path,
        bands: Sequence[int] | None = None,
        stretch: Sequence[float] | None = None,
        scaling: BandScaling | None = None,
    ) -> None:
        self.path = Path(path)
        self.ds = _open(self.path)
        try:
            self._check_georeferenced()
            self.scaling = scaling or self._scaling(bands, stretch)
        except BaseException:
            self.ds.close()
            raise

    # ---- what it is ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Columns of pixels."""
        return int(self.ds.width)

    @property
    def height(self) -> int:
        """Rows of pixels."""
        return int(self.ds.height)

    @property
    def crs(self) -> Any:
        """The raster's coordinate reference system (a rasterio ``CRS``)."""
        return self.ds.crs

    @property
    def transform(self) -> Any:
        """Pixel (column, row) -> CRS (x, y): an ``affine.Affine``."""
        return self.ds.transform

    def describe(self) -> dict:
        """A JSON-ready record: path, size, CRS, data type, nodata value, band scaling."""
        return {
            "path": str(self.path.resolve()),
            "width": self.width,
            "height": self.height,
            "crs": self.crs.to_string(),
            "crs_wkt": self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "dtype": self.ds.dtypes[0],
            "band_count": self.ds.count,
            "nodata": self.ds.nodata,
            "scaling": self.scaling.as_dict(),
        }

    def close(self) -> None:
        """Close the file."""
        self.ds.close()

    def __enter__(self) -> GeoRaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ------------------------------------------------------------------------
    def read_rgb(self, col: int, row: int, size: int) -> tuple[np.ndarray, float]:
        """The ``size`` x ``size`` window at pixel ``(col, row)``: uint8 ``[size, size, 3]``
        (no-data pixels black) and the share of its pixels that are no-data."""
        window = Window(col, row, size, size)
        try:
            values = self.ds.read(list(self.scaling.bands), window=window)
            valid = self.ds.dataset_mask(window=window) > 0
        except RasterioError as exc:
            raise InputError(
                f"{self.path}: cannot read the pixels at column {col}, row {row}: {exc} "
                f"(is the file truncated or corrupt?)"
            ) from None
        rgb = self.scaling.apply(values)
        rgb[~valid] = 0
        return rgb, 1.0 - float(valid.mean())

    def preview(self, max_side: int = 1024) -> np.ndarray:
        """The whole raster decimated to at most ``max_side`` pixels a side: uint8
        ``[h, w, 3]``, scaled like its tiles, no-data black."""
        h, w = _fit(self.height, self.width, max_side)
        return self._decimated(self.ds, h, w)

    def has_data(self) -> bool:
        """Whether any pixel is valid (read on a decimated grid)."""
        h, w = _fit(self.height, self.width, SAMPLE_SIDE)
        return bool(self._read(lambda: self.ds.dataset_mask(out_shape=(h, w))).any())

    def _decimated(self, ds: Any, h: int, w: int) -> np.ndarray:
        """``ds`` (this raster, or a warped view of it) read at ``h`` x ``w``, scaled."""
        values = self._read(
            lambda: ds.read(
                list(self.scaling.bands), out_shape=(3, h, w), resampling=Resampling.nearest
            )
        )
        mask = self._read(lambda: ds.dataset_mask(out_shape=(h, w)))
        rgb = self.scaling.apply(values)
        rgb[mask == 0] = 0
        return rgb

    def _read(self, read: Any) -> np.ndarray:
        try:
            return read()
        except RasterioError as exc:
            raise InputError(
                f"{self.path}: cannot read the raster: {exc} (is the file truncated or corrupt?)"
            ) from None

    # ---- checks and choices -------------------------------------------------------------
    def _check_georeferenced(self) -> None:
        if self.ds.crs is None:
            raise InputError(
                f"{self.path}: the raster has no CRS (coordinate reference system), so its "
                f"tiles cannot be placed on the Earth; give it one, e.g. "
                f"'rio edit-info --crs EPSG:32633 {self.path}'"
            )
        if self.ds.transform.is_identity:
            raise InputError(
                f"{self.path}: the raster has a CRS but no geotransform (pixel to map "
                f"coordinates); give it one, e.g. 'rio edit-info --transform ...'"
            )

    def _colour_bands(self) -> list[int]:
        """Band numbers that are not alpha."""
        interp = self.ds.colorinterp
        return [i + 1 for i in range(self.ds.count) if interp[i] != ColorInterp.alpha]

    def _scaling(self, bands: Sequence[int] | None, stretch: Sequence[float] | None) -> BandScaling:
        dtype = self.ds.dtypes[0]
        chosen = self._choose_bands(bands, dtype)
        if dtype == "uint8" and stretch is None:
            return BandScaling(chosen)
        low_p, high_p = _percentiles(stretch)
        low, high = self._stretch(chosen, low_p, high_p)
        return BandScaling(chosen, "percentile", (low_p, high_p), low, high)

    def _choose_bands(self, bands: Sequence[int] | None, dtype: str) -> tuple[int, int, int]:
        count = self.ds.count
        if bands is not None:
            bands = [int(b) for b in bands]
            if len(bands) not in (1, 3) or not all(1 <= b <= count for b in bands):
                raise InputError(
                    f"{self.path}: bands {','.join(map(str, bands))}: give three band "
                    f"numbers (red, green, blue) or one (grey), each 1..{count}"
                )
            return (bands[0],) * 3 if len(bands) == 1 else (bands[0], bands[1], bands[2])
        colour = self._colour_bands()
        if dtype == "uint8" and len(colour) in (1, 3):
            return (colour[0],) * 3 if len(colour) == 1 else (colour[0], colour[1], colour[2])
        if len(colour) == 1:
            return (colour[0],) * 3
        raise InputError(
            f"{self.path}: a {dtype} raster of {count} bands needs a band choice: give "
            f"--bands with three band numbers for red, green and blue (e.g. --bands 4,3,2) "
            f"or one for grey; its bands: {self._band_names()}"
        )

    def _band_names(self) -> str:
        names = []
        for i, (desc, interp) in enumerate(zip(self.ds.descriptions, self.ds.colorinterp), 1):
            label = desc or (interp.name if interp != ColorInterp.undefined else "")
            names.append(f"{i}={label}" if label else str(i))
        return ", ".join(names)

    def _stretch(
        self, bands: tuple[int, int, int], low_p: float, high_p: float
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-band percentiles of valid values, on a decimated read."""
        h, w = _fit(self.height, self.width, SAMPLE_SIDE)
        sample = self._read(
            lambda: self.ds.read(
                list(bands), out_shape=(3, h, w), masked=True, resampling=Resampling.nearest
            )
        )
        low, high = [], []
        for band in sample:
            values = band.compressed() if np.ma.isMaskedArray(band) else band.ravel()
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise InputError(
                    f"{self.path}: every pixel is no-data (nodata={self.ds.nodata}): "
                    f"nothing to index"
                )
            lo, hi = np.percentile(values, [low_p, high_p])
            low.append(float(lo))
            high.append(float(hi) if hi > lo else float(lo) + 1.0)
        return tuple(low), tuple(high)


def _percentiles(stretch: Sequence[float] | None) -> tuple[float, float]:
    low, high = (float(v) for v in (stretch if stretch is not None else DEFAULT_STRETCH))
    if not 0.0 <= low < high <= 100.0:
        raise InputError(f"stretch percentiles {low},{high}: need 0 <= low < high <= 100")
    return low, high


def _fit(height: int, width: int, side: int) -> tuple[int, int]:
    """A height and width at most ``side`` on the longer side, in the same proportions."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _open(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"raster not found: {path}")
    try:
        with warnings.catch_warnings():
            # a raster without georeferencing is refused with its own message just after
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as exc:
        raise InputError(f"{path}: not a readable GeoTIFF ({exc})") from None


def open_raster(
    path: str | Path, bands: Sequence[int] | None = None, stretch: Sequence[float] | None = None
) -> GeoRaster:
    """Open and check a GeoTIFF (see :class:`GeoRaster`)."""
    return GeoRaster(path, bands, stretch)


# ---- pictures in latitude/longitude -----------------------------------------------------------
def latlon_bounds(path: str | Path) -> tuple[float, float, float, float]:
    """A raster's box in WGS84: ``(lat_min, lat_max, lon_min, lon_max)``."""
    from rasterio.warp import transform_bounds

    with raster_env(), open_raster(path) as raster:
        left, bottom, right, top = transform_bounds(raster.crs, "EPSG:4326", *raster.ds.bounds)
    return bottom, top, left, right


def latlon_preview(
    path: str | Path, max_side: int = 2048
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A raster as a north-up picture of a latitude/longitude box (as maps draw), warped to
    WGS84 when it is in another CRS: ``(rgb [h, w, 3] uint8, (lat_min, lat_max, lon_min,
    lon_max))``."""
    from rasterio.vrt import WarpedVRT

    with raster_env(), open_raster(path) as raster:
        if raster.crs.to_epsg() == 4326:
            rgb = raster.preview(max_side)
            left, bottom, right, top = raster.ds.bounds
            return rgb, (bottom, top, left, right)
        with WarpedVRT(raster.ds, crs="EPSG:4326", resampling=Resampling.bilinear) as vrt:
            rgb = raster._decimated(vrt, *_fit(vrt.height, vrt.width, max_side))
            left, bottom, right, top = vrt.bounds
            return rgb, (bottom, top, left, right)


# ---- writing ----------------------------------------------------------------------------------
def write_cog(
    path: str | Path,
    rgb: np.ndarray,
    bounds: tuple[float, float, float, float],
    crs: str = "EPSG:4326",
) -> Path:
    """Write an RGB picture as a Cloud-Optimised GeoTIFF (DEFLATE, lossless, with overviews).

    :param rgb: uint8 ``[h, w, 3]``, north up.
    :param bounds: ``(west, south, east, north)`` in ``crs`` units.
    """
    from rasterio.transform import from_bounds

    path = Path(path)
    height, width = rgb.shape[:2]
    profile = dict(
        driver="COG",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs=crs,
        transform=from_bounds(*bounds, width, height),
        compress="deflate",
        photometric="rgb",
    )
    with raster_env(), replacing(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.asarray(rgb, np.uint8).transpose(2, 0, 1))
    return path


def write_grid(path: str | Path, values: np.ndarray, transform: Any, crs: Any) -> Path:
    """Write a float32 grid as a one-band GeoTIFF; NaN cells are no-data."""
    path = Path(path)
    profile = dict(
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=float("nan"),
        compress="deflate",
    )
    with raster_env(), replacing(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.asarray(values, np.float32)[None])
    return path
