"""Rasters cut into tiles: one plan over several GeoTIFFs, read window by window.

The plan lists every tile window of every raster in a fixed order (raster by raster; in each,
rows of windows top to bottom, left to right), so processes can split it into contiguous
shares whose outputs, put back in rank order, are the rows one process makes. Windows step by
``stride`` pixels; a last window flush with the right or bottom edge covers what the steps
leave over. A tile whose no-data share exceeds ``max_nodata`` is skipped as it is read.

A raster whose pixels are all no-data is left out of the plan with a note
(:attr:`TilePlan.notes`); when every raster is, planning fails. So do a raster without a CRS,
one smaller than a tile, an unreadable file, and a band layout that needs a choice (see
:mod:`geobind.data.geotiff`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geobind.data.footprints import Footprints, tile_footprints
from geobind.data.geotiff import BandScaling, GeoRaster, open_raster, raster_env
from geobind.encoders.media import encode_png
from geobind.errors import InputError

__all__ = [
    "DEFAULT_MAX_NODATA",
    "RASTER_SUFFIXES",
    "RasterPlan",
    "Tile",
    "TileBatch",
    "TilePlan",
    "plan_tiles",
    "png_bytes",
    "raster_files",
    "read_tile_batches",
    "window_offsets",
]

#: Tiles with more than this share of no-data pixels are skipped.
DEFAULT_MAX_NODATA = 0.25
#: What a folder of rasters is searched for.
RASTER_SUFFIXES = (".tif", ".tiff")


def raster_files(paths: Sequence[str | Path]) -> list[Path]:
    """The rasters named: files as given, folders by their ``*.tif``/``*.tiff`` files (sorted)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
            if not inside:
                raise InputError(f"{path}: a folder without .tif or .tiff rasters")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"raster not found: {path}")
    if not found:
        raise InputError("no raster given")
    return found


def window_offsets(length: int, size: int, stride: int) -> list[int]:
    """Offsets of ``size``-pixel windows every ``stride`` pixels along ``length`` pixels, and
    one flush with the end when the steps leave pixels over."""
    offsets = list(range(0, length - size + 1, stride))
    if offsets and offsets[-1] + size < length:
        offsets.append(length - size)
    return offsets


@dataclass(frozen=True)
class RasterPlan:
    """One raster of a plan: where its windows are, and what was decided about it."""

    path: Path
    key: str
    cols: tuple[int, ...]
    rows: tuple[int, ...]
    record: dict

    @property
    def windows(self) -> int:
        """How many tile windows the raster has."""
        return len(self.cols) * len(self.rows)

    def window(self, i: int) -> tuple[int, int]:
        """Pixel offsets ``(col, row)`` of window ``i`` (rows of windows, left to right)."""
        return self.cols[i % len(self.cols)], self.rows[i // len(self.cols)]


@dataclass
class TilePlan:
    """Every tile window of several rasters, in one order."""

    rasters: list[RasterPlan]
    size: int
    stride: int
    max_nodata: float
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(r.windows for r in self.rasters)

    def share(self, rank: int, world_size: int) -> tuple[int, int]:
        """The contiguous range of windows process ``rank`` of ``world_size`` takes."""
        total = len(self)
        return total * rank // world_size, total * (rank + 1) // world_size

    def windows(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, int]]:
        """``(raster number, col, row)`` of windows ``start..stop`` of the plan."""
        stop = len(self) if stop is None else stop
        first = 0
        for n, raster in enumerate(self.rasters):
            lo, hi = max(start, first), min(stop, first + raster.windows)
            for i in range(lo - first, hi - first):
                yield (n, *raster.window(i))
            first += raster.windows

    def describe(self) -> dict:
        """A JSON-ready record of the plan's settings and rasters."""
        return {
            "tile_size": self.size,
            "stride": self.stride,
            "max_nodata": self.max_nodata,
            "rasters": [{"key": r.key, **r.record, "windows": r.windows} for r in self.rasters],
            "notes": list(self.notes),
        }


def plan_tiles(
    paths: Sequence[str | Path],
    size: int,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    stretch: Sequence[float] | None = None,
    max_nodata: float = DEFAULT_MAX_NODATA,
) -> TilePlan:
    """Open and check every raster and list its tile windows.

    :param size: tile side, pixels (the anchor's input size is a good choice).
    :param stride: pixels between windows (default ``size``: tiles side by side).
    """
    stride = size if stride is None else int(stride)
    if size < 1 or stride < 1:
        raise InputError(f"tile size and stride must be >= 1 pixel, got {size} and {stride}")
    if not 0.0 <= max_nodata <= 1.0:
        raise InputError(f"max nodata share must be within 0..1, got {max_nodata}")
    plan = TilePlan([], size, stride, max_nodata)
    keys: set[str] = set()
    with raster_env():
        for path in raster_files(paths):
            with open_raster(path, bands, stretch) as raster:
                _check_size(raster, size)
                if not raster.has_data():
                    plan.notes.append(f"{path}: every pixel is no-data; left out")
                    continue
                plan.rasters.append(_raster_plan(raster, _unique_key(path, keys), size, stride))
    if not plan.rasters:
        raise InputError(
            f"nothing to index: every pixel of {', '.join(map(str, paths))} is no-data"
        )
    return plan


def _check_size(raster: GeoRaster, size: int) -> None:
    if size > min(raster.width, raster.height):
        raise InputError(
            f"{raster.path}: tile size {size} px is larger than the raster "
            f"({raster.width} x {raster.height} px): give --tile-size "
            f"{min(raster.width, raster.height)} or less"
        )


def _unique_key(path: Path, keys: set[str]) -> str:
    """The raster's file stem, numbered when another raster of the plan has it."""
    key, n = path.stem, 1
    while key in keys:
        n += 1
        key = f"{path.stem}-{n}"
    keys.add(key)
    return key


def _raster_plan(raster: GeoRaster, key: str, size: int, stride: int) -> RasterPlan:
    return RasterPlan(
        path=raster.path,
        key=key,
        cols=tuple(window_offsets(raster.width, size, stride)),
        rows=tuple(window_offsets(raster.height, size, stride)),
        record=raster.describe(),
    )


# ---- reading ----------------------------------------------------------------------------------
@dataclass
class Tile:
    """One tile read from a raster: its window and its pixels as RGB."""

    raster: RasterPlan
    col: int
    row: int
    pixels: np.ndarray
    nodata: float

    @property
    def id(self) -> str:
        """``<raster key>-<row>-<col>`` (pixel offsets)."""
        return f"{self.raster.key}-{self.row:06d}-{self.col:06d}"

    def png(self) -> bytes:
        """The pixels as PNG bytes (what the anchor's preprocessing decodes)."""
        return png_bytes(self.pixels)


def png_bytes(pixels: np.ndarray) -> bytes:
    """RGB pixels ``[h, w, 3]`` uint8 as PNG (lossless: decoding gives the same pixels)."""
    from PIL import Image

    return encode_png(Image.fromarray(pixels), compress_level=1)


@dataclass
class TileBatch:
    """Consecutive kept tiles of one raster with their footprints."""

    tiles: list[Tile]
    footprints: Footprints


@dataclass
class _Reader:
    """Opens each raster of a plan once, as its windows come."""

    plan: TilePlan
    number: int = -1
    raster: GeoRaster | None = None

    def read(self, n: int, col: int, row: int) -> Tile:
        if n != self.number:
            self.close()
            source = self.plan.rasters[n]
            # the scaling recorded when planning: the same on every process
            scaling = BandScaling.from_dict(source.record["scaling"])
            self.raster = GeoRaster(source.path, scaling=scaling)
            self.number = n
        assert self.raster is not None
        pixels, nodata = self.raster.read_rgb(col, row, self.plan.size)
        return Tile(self.plan.rasters[n], col, row, pixels, nodata)

    def close(self) -> None:
        if self.raster is not None:
            self.raster.close()
            self.raster = None


def read_tile_batches(
    plan: TilePlan,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 256,
    skipped: dict[str, int] | None = None,
) -> Iterator[TileBatch]:
    """The kept tiles of windows ``start..stop``, in plan order, in batches of at most
    ``batch_size`` from one raster each; ``skipped`` counts the tiles left out per raster.

    Read under :func:`~geobind.data.geotiff.raster_env` to keep GDAL's block cache small."""
    reader = _Reader(plan)
    pending: list[Tile] = []
    # no rasterio.Env here: an Env belongs to the thread that entered it, and a generator may
    # be resumed from another; callers hold raster_env() around the loop
    try:
        for n, col, row in plan.windows(start, stop):
            if pending and (n != reader.number or len(pending) == batch_size):
                yield _batch(pending)
                pending = []
            tile = reader.read(n, col, row)
            if tile.nodata > plan.max_nodata:
                if skipped is not None:
                    skipped[tile.raster.key] = skipped.get(tile.raster.key, 0) + 1
                continue
            pending.append(tile)
        if pending:
            yield _batch(pending)
    finally:
        reader.close()


def _batch(tiles: list[Tile]) -> TileBatch:
    record = tiles[0].raster.record
    footprints = tile_footprints(
        record["transform"],
        record["crs_wkt"],
        [t.col for t in tiles],
        [t.row for t in tiles],
        tiles[0].pixels.shape[0],
    )
    return TileBatch(list(tiles), footprints)
