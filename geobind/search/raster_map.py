"""A query's similarity over a raster: a GeoTIFF that lines up with the raster, and a picture.

The tiles of one raster in a raster index (:mod:`geobind.search.raster_index`) are scored
against the query. The scores go onto a grid of cells ``stride`` raster pixels a side, laid on
the raster's own pixel grid from its origin: a cell holds the mean score of the tiles whose
window covers it, or no-data (NaN) where no tile was kept. The grid is written as a one-band
float32 GeoTIFF in the raster's CRS, its transform the raster's scaled by the cell size, so it
lines up with the raster in any GIS. The PNG beside it shows the same grid in colour next to
the raster itself, with the best tiles circled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geobind.data.geotiff import BandScaling, GeoRaster, raster_env, write_grid
from geobind.errors import GeobindError
from geobind.search.index import INDEX_DIR, embed_queries, open_index
from geobind.search.maps import NO_DATA, PANEL, _colour_bar, _compose, _mark, colormap, query_label
from geobind.search.raster_index import is_raster_index

if TYPE_CHECKING:
    from PIL import Image

    from geobind.space import Space

__all__ = ["RasterMap", "find_raster_index", "raster_similarity_map", "score_grid"]


@dataclass
class RasterMap:
    """What :func:`raster_similarity_map` wrote."""

    path: Path
    geotiff: Path
    cell: int
    shape: tuple[int, int]
    score_min: float
    score_max: float
    top: list[dict] = field(default_factory=list)


def find_raster_index(space: Space, raster: str | Path, index: str | Path | None = None) -> tuple:
    """The raster index holding ``raster`` (``index`` itself when given) and the raster's
    record in it."""
    wanted = str(Path(raster).resolve())
    if index is not None:
        candidates = [open_index(space, index)]
    else:
        candidates = [
            open_index(space, p.with_suffix(".lance"))
            for p in sorted((space.path / INDEX_DIR).glob("*.json"))
            if wanted in {r.get("path") for r in json.loads(p.read_text()).get("rasters", [])}
        ]
    for opened in candidates:
        for record in opened.meta.get("rasters", []) if is_raster_index(opened) else []:
            if record["path"] == wanted:
                return opened, record
    raise GeobindError(
        f"no index of {raster} in {space.path}: run 'geobind index build {space.path} "
        f"--raster {raster}' first"
    )


def score_grid(
    cols: np.ndarray, rows: np.ndarray, scores: np.ndarray, tile: int, cell: int, shape: tuple
) -> np.ndarray:
    """Mean score of the tiles covering each ``cell``-pixel cell of a raster of ``shape``
    ``(height, width)`` pixels; NaN where no tile does."""
    height, width = math.ceil(shape[0] / cell), math.ceil(shape[1] / cell)
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for c, r, s in zip(cols, rows, scores):
        ys = slice(int(r) // cell, math.ceil((int(r) + tile) / cell))
        xs = slice(int(c) // cell, math.ceil((int(c) + tile) / cell))
        total[ys, xs] += s
        count[ys, xs] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def raster_similarity_map(
    space: Space,
    raster: str | Path,
    modality: str,
    value: Any,
    out: str | Path,
    index: str | Path | None = None,
    width: int = PANEL,
    mark: int = 10,
) -> RasterMap:
    """Score every tile of ``raster`` (from the index holding it) against one query; write the
    grid as a GeoTIFF beside ``out`` (``.tif``) and the picture as ``out`` (PNG)."""
    opened, record = find_raster_index(space, raster, index)
    rows = opened.ds.to_table(
        columns=["id", "lat", "lon", "col", "row", "vector"],
        filter=f"source = '{record['key']}'",
    )
    vectors = _vectors(rows.column("vector"), opened.dim)
    scores = vectors @ embed_queries(space, modality, [value])[0].numpy()
    cols, rws = rows.column("col").to_numpy(), rows.column("row").to_numpy()
    tile, cell = int(opened.meta["tile_size"]), int(opened.meta["stride"])
    grid = score_grid(cols, rws, scores, tile, cell, (record["height"], record["width"]))
    out = Path(out)
    geotiff = _write_geotiff(out.with_suffix(".tif"), grid, record, cell)
    best = np.argsort(-scores)[:mark]
    top = [
        {
            "id": rows.column("id")[int(i)].as_py(),
            "lat": float(rows.column("lat")[int(i)].as_py()),
            "lon": float(rows.column("lon")[int(i)].as_py()),
            "score": float(scores[i]),
            "col": int(cols[i]),
            "row": int(rws[i]),
        }
        for i in best
    ]
    lo, hi = float(scores.min()), float(scores.max())
    title = f"{query_label(modality, value)}   |   {len(scores)} tiles, cosine {lo:.3f} to {hi:.3f}"
    heat, picture = _panels(grid, record, lo, hi, width, top, tile)
    path, _, _ = _compose(title, heat, picture, _colour_bar(heat.width, lo, hi), out)
    return RasterMap(path, geotiff, cell, (grid.shape[0], grid.shape[1]), lo, hi, top)


def _vectors(column: Any, dim: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, np.float32).reshape(-1, dim)


def _write_geotiff(path: Path, grid: np.ndarray, record: dict, cell: int) -> Path:
    from affine import Affine

    transform = Affine(*record["transform"]) @ Affine.scale(cell)
    return write_grid(path, grid.astype(np.float32), transform, record["crs_wkt"])


@dataclass
class _PixelFrame:
    """Where the maps' marks go: positions given as raster (row, column) pixels, scaled."""

    scale: float

    def xy(self, row: Any, col: Any) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(col, np.float64) * self.scale, np.asarray(row, np.float64) * self.scale


def _panels(
    grid: np.ndarray, record: dict, lo: float, hi: float, width: int, top: list, tile: int
) -> tuple[Image.Image, Image.Image]:
    """The coloured grid and the raster, both ``width`` wide, the best tiles circled."""
    from PIL import Image

    height = max(16, round(width * record["height"] / record["width"]))
    rgb = colormap((np.nan_to_num(grid, nan=lo) - lo) / max(hi - lo, 1e-12))
    rgb[np.isnan(grid)] = NO_DATA
    heat = Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST)
    with (
        raster_env(),
        GeoRaster(record["path"], scaling=BandScaling.from_dict(record["scaling"])) as source,
    ):
        picture = Image.fromarray(source.preview(2 * width)).resize(
            (width, height), Image.Resampling.LANCZOS
        )
    # _mark reads a position as (lat, lon) through frame.xy: give it the tile's centre pixel
    marks = [{"lat": h["row"] + tile / 2, "lon": h["col"] + tile / 2} for h in top]
    frame: Any = _PixelFrame(width / record["width"])
    _mark(heat, frame, marks, "white")
    _mark(picture, frame, marks, "yellow")
    return heat, picture
