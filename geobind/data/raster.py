"""A raster beside pair datasets: one image of a lat/lon box, north up.

Maps draw a query's similarity beside such an image (a satellite mosaic). It is stored as an
image file and a small JSON file naming the image and its box; ``geobind world make`` writes the
synthetic world's map this way (``OUT/mosaic.png``, ``OUT/mosaic.json``), and any importer may
write one beside its datasets with :func:`write_raster`. A GeoTIFF serves as well (the world's
``OUT/mosaic.tif``, or any georeferenced raster): :func:`read_raster` takes its box from its
georeferencing, and it is drawn warped to latitude/longitude when it is in another CRS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geobind.encoders.media import encode_png
from geobind.encoders.weights import atomic_write
from geobind.errors import GeobindError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RASTER_FILE", "Raster", "raster_beside", "read_raster", "write_raster"]

#: The raster a dataset folder may hold, found by :func:`raster_beside`.
RASTER_FILE = "mosaic.json"
#: A picture with these suffixes is read as a GeoTIFF.
GEOTIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Raster:
    """An image covering ``lat_min..lat_max`` x ``lon_min..lon_max``, north up."""

    image: Path
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def open(self) -> Image.Image:
        """The image, decoded as RGB."""
        from PIL import Image

        if self.image.suffix.lower() in GEOTIFF_SUFFIXES:
            from geobind.data.geotiff import latlon_preview  # rasterio

            return Image.fromarray(latlon_preview(self.image)[0])
        try:
            with Image.open(self.image) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise GeobindError(f"raster image {self.image}: {exc}") from None


def write_raster(
    image: Image.Image,
    path: str | Path,
    lat_min: float,
    lat_max: float,
    lon_min: float,
    lon_max: float,
) -> Raster:
    """Write ``image`` as PNG beside ``path`` (the JSON file naming it and its box)."""
    path = Path(path)
    png = path.with_suffix(".png")
    atomic_write(png, encode_png(image, compress_level=3))
    raster = Raster(png, lat_min, lat_max, lon_min, lon_max)
    atomic_write(path, json.dumps({**asdict(raster), "image": png.name}, indent=2).encode())
    return raster


def read_raster(path: str | Path) -> Raster:
    """The raster a JSON file describes (its image path is relative to the file), or a
    GeoTIFF with its latitude/longitude box."""
    path = Path(path)
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        from geobind.data.geotiff import latlon_bounds  # rasterio

        lat_min, lat_max, lon_min, lon_max = latlon_bounds(path)
        return Raster(path, lat_min, lat_max, lon_min, lon_max)
    try:
        meta = json.loads(path.read_text())
        return Raster(
            path.parent / meta["image"],
            float(meta["lat_min"]),
            float(meta["lat_max"]),
            float(meta["lon_min"]),
            float(meta["lon_max"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GeobindError(f"not a raster description: {path} ({exc})") from None


def raster_beside(dataset_uri: str | Path) -> Raster | None:
    """The raster in a dataset's folder (:data:`RASTER_FILE`), if there is one."""
    path = Path(str(dataset_uri).rstrip("/")).parent / RASTER_FILE
    return read_raster(path) if path.is_file() else None
