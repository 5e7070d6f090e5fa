"""Pictures of where a query belongs: a similarity heat map beside the satellite mosaic, and a
grid of the best tiles.

Drawn with PIL and numpy only. The heat map scores every tile of a dataset against the query
and spreads each score over the tile's neighbourhood (a Gaussian-weighted average of nearby
tiles, so the map reads as a surface, not as scattered dots). The picture beside it is an
input: a :class:`~geobind.data.raster.Raster` (an image of a lat/lon box, such as the mosaic
``geobind world make`` writes beside its datasets), or the dataset's own tiles pasted at their
positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geobind.data.pairs import open_pairs, read_values
from geobind.data.raster import Raster, raster_beside
from geobind.encoders.media import decode_image, encode_png
from geobind.encoders.weights import atomic_write
from geobind.errors import GeobindError
from geobind.search.index import embed_queries, embedded_batches, index_path, open_index
from geobind.space import Space, SpaceError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "SimilarityMap",
    "colormap",
    "query_label",
    "render_hits",
    "similarity_map",
    "tile_vectors",
]

#: viridis, sampled at nine evenly spaced points (perceptually uniform, colour-blind safe)
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    np.float64,
)
PANEL = 512
TITLE_H, LABEL_H, BAR_H, PAD = 44, 20, 54, 12
NO_DATA = (200, 200, 200)


def colormap(values: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[..., 3]`` of values in ``[0, 1]`` (viridis, interpolated)."""
    x = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_VIRIDIS) - 2)
    t = (x - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - t) + _VIRIDIS[lo + 1] * t).round().astype(np.uint8)


def query_label(modality: str, value: Any, width: int = 60) -> str:
    """How a query is named in a title: the text quoted, a file by name, bytes by size."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = f"<{len(value)} bytes>"
    elif modality == "text":
        text = f'"{value}"'
    else:
        text = Path(str(value)).name
    text = text if len(text) <= width else text[: width - 1] + "…"
    return f"{modality}: {text}"


# ---- scores of every tile ---------------------------------------------------------------------
@dataclass
class Tiles:
    """Every tile of a dataset: ids, positions and anchor embeddings, in row order."""

    ids: list
    lat: np.ndarray
    lon: np.ndarray
    vectors: torch.Tensor
    source: str = ""
    column: str = "satellite"


def tile_vectors(space: Space, dataset_uri: str | Path, batch_size: int = 256) -> Tiles:
    """The anchor embeddings of a dataset's tiles: from its index in the space when that index
    was built from this very dataset version, otherwise embedded now."""
    ds = open_pairs(dataset_uri)
    path = index_path(space, dataset_uri)
    if path.is_dir():
        try:
            index = open_index(space, path)
        except SpaceError:
            index = None  # another anchor's index: embed afresh rather than fail
        if index is not None and index.built_from(dataset_uri, ds.version):
            cols = index.table()
            return Tiles(
                cols["id"],
                np.asarray(cols["lat"]),
                np.asarray(cols["lon"]),
                index.vectors(),
                f"index {path}",
                index.meta.get("column", "satellite"),
            )
    import torch

    encoder = space.encoder(space.anchor)
    if encoder.modality.column not in ds.schema.names:
        raise GeobindError(f"dataset {dataset_uri} has no {encoder.modality.column!r} column")
    ids, lat, lon, parts = [], [], [], []
    for i, a, b, v in embedded_batches(ds, encoder, encoder.modality.column, batch_size, False):
        ids += i
        lat += a
        lon += b
        parts.append(v)
    return Tiles(
        ids,
        np.asarray(lat),
        np.asarray(lon),
        torch.cat(parts),
        "embedded now",
        encoder.modality.column,
    )


# ---- geometry ---------------------------------------------------------------------------------
@dataclass
class Frame:
    """A lat/lon box drawn ``width x height`` pixels, north up."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    width: int
    height: int

    def xy(self, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (floats) of positions."""
        x = (np.asarray(lon, np.float64) - self.lon_min) / (self.lon_max - self.lon_min)
        y = (self.lat_max - np.asarray(lat, np.float64)) / (self.lat_max - self.lat_min)
        return x * self.width, y * self.height


def _frame_around(lat: np.ndarray, lon: np.ndarray, width: int) -> Frame:
    """A box around the points, a margin of one spacing wide, in ground proportions."""
    lat_min, lat_max, lon_min, lon_max = lat.min(), lat.max(), lon.min(), lon.max()
    cos = max(math.cos(math.radians(0.5 * (lat_min + lat_max))), 0.05)
    span = max(lat_max - lat_min, (lon_max - lon_min) * cos, 1e-3)
    margin = 0.5 * span / max(1.0, math.sqrt(len(lat)))
    lat_min, lat_max = lat_min - margin, lat_max + margin
    lon_min, lon_max = lon_min - margin / cos, lon_max + margin / cos
    # keep a degenerate spread (one place, or all on one line) from becoming a sliver
    if (lat_max - lat_min) < 0.1 * (lon_max - lon_min) * cos:
        mid, half = 0.5 * (lat_min + lat_max), 0.05 * (lon_max - lon_min) * cos
        lat_min, lat_max = mid - half, mid + half
    if (lon_max - lon_min) * cos < 0.1 * (lat_max - lat_min):
        mid, half = 0.5 * (lon_min + lon_max), 0.05 * (lat_max - lat_min) / cos
        lon_min, lon_max = mid - half, mid + half
    height = int(round(width * (lat_max - lat_min) / ((lon_max - lon_min) * cos)))
    return Frame(lat_min, lat_max, lon_min, lon_max, width, max(16, min(4 * width, height)))


def _backdrop(
    dataset_uri: str | Path, tiles: Tiles, width: int, column: str, background: Raster | None
) -> tuple[Frame, Image.Image]:
    """The frame of the map and the picture drawn in it: the raster, or the pasted tiles."""
    from PIL import Image

    if background is not None:
        image = background.open()
        height = int(round(width * image.height / image.width))
        frame = Frame(
            background.lat_min,
            background.lat_max,
            background.lon_min,
            background.lon_max,
            width,
            height,
        )
        return frame, image.resize((width, height), Image.Resampling.LANCZOS)
    frame = _frame_around(tiles.lat, tiles.lon, width)
    return frame, _pasted_mosaic(dataset_uri, tiles, frame, column)


def _pasted_mosaic(dataset_uri: str | Path, tiles: Tiles, frame: Frame, column: str) -> Image.Image:
    """The dataset's own tiles pasted at their positions, one spacing wide each."""
    from PIL import Image

    ds = open_pairs(dataset_uri)
    canvas = Image.new("RGB", (frame.width, frame.height), NO_DATA)
    side = max(4, int(round(_spacing_px(tiles, frame))))
    x, y = frame.xy(tiles.lat, tiles.lon)
    for start in range(0, len(tiles.ids), 256):
        rows = list(range(start, min(len(tiles.ids), start + 256)))
        for r, data in zip(rows, read_values(ds, column, rows)):
            try:
                tile = decode_image(data).resize((side, side))
            except GeobindError:
                continue  # an undecodable tile is left as a gap
            canvas.paste(tile, (int(x[r] - side / 2), int(y[r] - side / 2)))
    return canvas


def _spacing_px(tiles: Tiles, frame: Frame) -> float:
    """The typical distance between neighbouring places, in pixels."""
    return math.sqrt(frame.width * frame.height / max(1, len(tiles.ids)))


# ---- the heat map -----------------------------------------------------------------------------
def _heat(
    tiles: Tiles, scores: np.ndarray, frame: Frame, lo: float, hi: float, sigma: float
) -> Image.Image:
    """Scores spread over the frame: a Gaussian-weighted mean of nearby tiles' scores, grey
    where no tile is near."""
    from PIL import Image
    from scipy.spatial import cKDTree

    step = 2  # computed at half resolution, then smoothed up: the kernel is wider than 2 px
    w, h = (frame.width + step - 1) // step, (frame.height + step - 1) // step
    px, py = frame.xy(tiles.lat, tiles.lon)
    gx, gy = (np.arange(w) + 0.5) * step, (np.arange(h) + 0.5) * step
    total, weight = np.zeros((h, w)), np.zeros((h, w))
    # a Gaussian is separable: each tile's kernel over the grid is the outer product of one
    # along y and one along x, so every tile's sum is a matrix product ([h, n] @ [n, w]), not an
    # [n, h, w] array of exponentials: 4x faster at the demo's 1,000 tiles, 100x at 20,000, so
    # a map of a large raster's tiles takes seconds; chunks of tiles bound the memory
    for start in range(0, len(scores), 4096):
        sl = slice(start, start + 4096)
        kx = np.exp(-((gx[None, :] - px[sl, None]) ** 2) / (2 * sigma**2))
        ky = np.exp(-((gy[None, :] - py[sl, None]) ** 2) / (2 * sigma**2))
        total += ky.T @ (scores[sl, None] * kx)
        weight += ky.T @ kx
    # the nearest tile's kernel at each pixel (what fades the map to grey): that of the tile
    # at the smallest distance, which a k-d tree finds without the [n, h, w] array either
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    distance, _ = cKDTree(np.column_stack([px, py])).query(grid)
    near = np.exp(-(distance.reshape(h, w) ** 2) / (2 * sigma**2))
    value = (total / np.maximum(weight, 1e-12) - lo) / max(hi - lo, 1e-12)
    rgb = colormap(value).astype(np.float64)
    # fade to grey beyond ~2 sigma from every tile: there is no data there
    alpha = np.clip((near - math.exp(-4.5)) / (math.exp(-2.0) - math.exp(-4.5)), 0, 1)[..., None]
    rgb = rgb * alpha + np.array(NO_DATA, np.float64) * (1 - alpha)
    image = Image.fromarray(rgb.round().astype(np.uint8))
    return image.resize((frame.width, frame.height), Image.Resampling.BILINEAR)


def _colour_bar(width: int, lo: float, hi: float) -> Image.Image:
    from PIL import Image, ImageDraw

    bar = Image.new("RGB", (width, BAR_H), "white")
    ramp = colormap(np.linspace(0, 1, width - 2 * PAD))[None].repeat(14, 0)
    bar.paste(Image.fromarray(ramp), (PAD, 4))
    draw = ImageDraw.Draw(bar)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = PAD + t * (width - 2 * PAD - 1)
        draw.line([(x, 18), (x, 22)], fill="black")
        text = f"{lo + t * (hi - lo):.3f}"
        tw = draw.textlength(text)
        draw.text((min(max(0, x - tw / 2), width - tw), 24), text, fill="black")
    draw.text((PAD, 38), "cosine similarity to the query", fill="gray")
    return bar


def _mark(image: Image.Image, frame: Frame, hits: Sequence[dict], colour: str) -> None:
    """Circle the best tiles and number them."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for rank, hit in enumerate(hits, 1):
        x, y = (float(v) for v in frame.xy(hit["lat"], hit["lon"]))
        r = 6
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
        draw.text((x + r + 1, y - r - 1), str(rank), fill=colour)


# ---- the picture ------------------------------------------------------------------------------
@dataclass
class SimilarityMap:
    """What :func:`similarity_map` drew: the file, where each panel is, and the scores."""

    path: Path
    size: tuple[int, int]
    heat_box: tuple[int, int, int, int]
    mosaic_box: tuple[int, int, int, int]
    score_min: float
    score_max: float
    top: list[dict] = field(default_factory=list)
    source: str = ""


def similarity_map(
    space: Space,
    dataset_uri: str | Path,
    modality: str,
    value: Any,
    out: str | Path,
    width: int = PANEL,
    mark: int = 10,
    background: Raster | None | Literal["beside"] = "beside",
) -> SimilarityMap:
    """Draw the similarity of one query to every tile of a dataset, beside the mosaic.

    :param modality: the query's modality (``text``, ``audio``, ``ground``, ``satellite``).
    :param value: the query: a string, a file path, or encoded bytes.
    :param mark: circle this many best tiles on both panels.
    :param background: the picture beside the heat map: a :class:`Raster`; ``None`` for the
        dataset's own tiles pasted at their positions; ``"beside"`` (default) for the raster in
        the dataset's folder (as ``geobind world make`` writes it), else the pasted tiles.
    """
    if background == "beside":
        background = raster_beside(dataset_uri)
    query = embed_queries(space, modality, [value])[0]
    tiles = tile_vectors(space, dataset_uri)
    scores = (tiles.vectors @ query).numpy().astype(np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    frame, mosaic = _backdrop(dataset_uri, tiles, width, tiles.column, background)
    heat = _heat(tiles, scores, frame, lo, hi, sigma=0.6 * _spacing_px(tiles, frame))
    best = np.argsort(-scores)[:mark]
    top = [
        {
            "id": tiles.ids[i],
            "lat": float(tiles.lat[i]),
            "lon": float(tiles.lon[i]),
            "score": float(scores[i]),
        }
        for i in best
    ]
    _mark(heat, frame, top, "white")
    _mark(mosaic, frame, top, "yellow")
    title = f"{query_label(modality, value)}   |   {len(scores)} tiles, cosine {lo:.3f} to {hi:.3f}"
    path, size, boxes = _compose(title, heat, mosaic, _colour_bar(frame.width, lo, hi), out)
    return SimilarityMap(path, size, boxes[0], boxes[1], lo, hi, top, tiles.source)


def _compose(
    title: str, heat: Image.Image, mosaic: Image.Image, bar: Image.Image, out: str | Path
) -> tuple[Path, tuple[int, int], list[tuple[int, int, int, int]]]:
    """Title on top, the two panels side by side with labels, the colour bar under the heat."""
    from PIL import Image, ImageDraw

    w, h = heat.size
    top = TITLE_H + LABEL_H
    size = (2 * w + 3 * PAD, top + h + BAR_H + PAD)
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 8), title, fill="black")
    draw.text((PAD, 26), "circles: the best tiles, numbered by rank", fill="gray")
    boxes = [(PAD, top, PAD + w, top + h), (2 * PAD + w, top, 2 * PAD + 2 * w, top + h)]
    for (x0, y0, _, _), image, label in zip(
        boxes, (heat, mosaic), ("similarity to the query", "satellite mosaic")
    ):
        draw.text((x0, TITLE_H + 3), label, fill="black")
        canvas.paste(image, (x0, y0))
    canvas.paste(bar, (PAD, top + h))
    out = Path(out)
    atomic_write(out, encode_png(canvas))
    return out, size, boxes


# ---- the best tiles as a grid -----------------------------------------------------------------
def _rows_of(ds: Any, ids: Sequence[str]) -> dict[str, int]:
    """Row positions of ``ids`` in a dataset (one scan of the id column)."""
    wanted = set(ids)
    column = ds.to_table(columns=["id"]).column("id").to_pylist()
    return {v: i for i, v in enumerate(column) if v in wanted}


def _hit_tiles(hits: Sequence[dict], dataset_uri: str | Path, column: str) -> list:
    ds = open_pairs(dataset_uri)
    where = _rows_of(ds, [h["id"] for h in hits])
    missing = [h["id"] for h in hits if h["id"] not in where]
    if missing:
        raise GeobindError(
            f"dataset {dataset_uri} has no rows with ids {missing[:5]}: was it "
            f"changed since the index was built?"
        )
    return read_values(ds, column, [where[h["id"]] for h in hits]) if hits else []


def render_hits(
    hits: Sequence[dict],
    dataset_uri: str | Path,
    out: str | Path,
    title: str = "",
    column: str = "satellite",
    columns: int = 5,
    cell: int = 128,
    images: Sequence[bytes] | None = None,
) -> Path:
    """Draw the hits' tiles (read from the dataset by id, or ``images``: encoded tiles in the
    hits' order) in a grid, with rank, id and score."""
    from PIL import Image, ImageDraw

    if images is None:
        images = _hit_tiles(hits, dataset_uri, column)
    rows = max(1, math.ceil(len(hits) / columns))
    label = 30
    grid = Image.new("RGB", (columns * cell, TITLE_H + rows * (cell + label)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((6, 8), title, fill="black")
    for i, (hit, data) in enumerate(zip(hits, images)):
        x, y = (i % columns) * cell, TITLE_H + (i // columns) * (cell + label)
        try:
            grid.paste(decode_image(data).resize((cell - 4, cell - 4)), (x + 2, y))
        except GeobindError as exc:
            draw.text((x + 4, y + 4), f"undecodable:\n{exc}"[:60], fill="red")
        draw.text((x + 4, y + cell - 2), f"#{i + 1}  {hit['score']:.3f}", fill="black")
        draw.text((x + 4, y + cell + 12), str(hit["id"])[:20], fill="gray")
    out = Path(out)
    atomic_write(out, encode_png(grid))
    return out
