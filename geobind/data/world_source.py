"""The synthetic world as a dataset source: its pair datasets, their classes, its map.

:func:`make_world` is what ``geobind world make`` and the demo run. The four pair datasets come
from :mod:`geobind.data.synthetic`; this adds what the rest of the library reads without
knowing the world: each dataset's ``landcover`` column names the land covers and the words
the captions use for them (zero-shot classification builds its prompts from those), and the
whole map is written beside the datasets as a raster (maps draw it): ``mosaic.png`` with its
box in ``mosaic.json``, and the same pixels as a georeferenced Cloud-Optimised GeoTIFF,
``mosaic.tif`` (EPSG:4326, the world's lat/lon box over the mosaic's pixel grid), which
``geobind index build --raster`` cuts into tiles like any user's imagery.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from geobind.data.pairs import label_classes, name_classes, open_pairs
from geobind.data.raster import RASTER_FILE, write_raster
from geobind.data.synthetic import (
    DATASETS,
    SOUNDS,
    WorldOptions,
    _world_config,
    check_modalities,
)
from geobind.data.synthetic import make_world as make_datasets
from geobind.errors import ConfigError

__all__ = [
    "GEOTIFF_FILE",
    "LABEL_COLUMN",
    "WorldOptions",
    "build_world",
    "make_world",
    "refresh_class_words",
    "renders_fingerprint",
]

#: The label column of every world dataset: the true land-cover fractions of the tile.
LABEL_COLUMN = "landcover"
#: The world's mosaic as a georeferenced COG, beside the datasets.
GEOTIFF_FILE = "mosaic.tif"


#: How many of a world's first places :func:`renders_fingerprint` renders.
FINGERPRINT_PLACES = 4


def renders_fingerprint(world: Any) -> str:
    """A hash of what the world's generator renders for its first places (tile, panorama,
    caption and sound): a world written by a geobind whose world draws or sounds otherwise has
    another, so the demo generates it again instead of training on yesterday's places."""
    from geobind.world.world import MODALITIES, places_digest

    return places_digest(
        world,
        FINGERPRINT_PLACES,
        MODALITIES,
        lambda p: (p.satellite, p.ground, p.caption.encode(), p.audio),
    )


def build_world(options: WorldOptions) -> Any:
    """The :class:`~geobind.world.World` that ``options`` generate (its map built: ~4 s)."""
    from geobind.world import World  # numpy, scipy

    return World(_world_config(options))


def make_world(options: WorldOptions, progress: bool = True, world: Any = None) -> dict[str, Any]:
    """Generate the world into ``options.out``: ``{captions,ground,audio,heldout}.lance``,
    their class names, ``mosaic.png`` / ``mosaic.json`` and ``mosaic.tif``; ``world.json``
    records the options and :func:`renders_fingerprint`. Returns the import reports.
    ``world``: the :class:`~geobind.world.World` of these options, when built already."""
    from geobind.data.geotiff import write_cog  # rasterio
    from geobind.world import COVER_WORDS, LAND_COVERS, World  # numpy, scipy

    config = _world_config(options)  # a bad option fails here, before anything is built
    check_modalities()  # and a missing plugin
    if not options.out:
        raise ConfigError("world: 'out' (a folder) is required")
    if Path(options.out).exists() and not Path(options.out).is_dir():
        raise ConfigError(f"world: --out {options.out}: is a file, not a folder")
    Path(options.out).mkdir(parents=True, exist_ok=True)
    world = World(config) if world is None else world
    # what the generator renders is recorded, and checked against a world already there
    record = {"renders": renders_fingerprint(world)}
    reports = make_datasets(options, progress=progress, world=world, record=record)
    for report in reports.values():
        name_classes(report.dataset, LABEL_COLUMN, LAND_COVERS, COVER_WORDS)
    c = world.config
    write_raster(
        world.mosaic_image(),
        Path(options.out) / RASTER_FILE,
        c.lat_min,
        c.lat_max,
        c.lon_min,
        c.lon_max,
    )
    write_cog(
        Path(options.out) / GEOTIFF_FILE, world.rgb, (c.lon_min, c.lat_min, c.lon_max, c.lat_max)
    )
    return reports


def refresh_class_words(
    folder: str | Path, datasets: Iterable[str] = (*DATASETS, *SOUNDS)
) -> list[str]:
    """Record today's class names and words in ``datasets`` of a world made by an older
    geobind, which may name a class by words its captions never use (zero-shot prompts are
    built from them; :data:`geobind.world.caption.COVER_WORDS`). Only the label column's
    metadata changes (a new Lance version of each dataset that needed it); returns their
    names."""
    from geobind.world import COVER_WORDS, LAND_COVERS

    words = {c: list(w) for c, w in COVER_WORDS.items()}
    refreshed = []
    for name in datasets:
        uri = Path(folder) / f"{name}.lance"
        if not uri.is_dir():
            continue
        classes, recorded = label_classes(open_pairs(uri), LABEL_COLUMN)
        if classes == list(LAND_COVERS) and recorded != words:
            name_classes(uri, LABEL_COLUMN, LAND_COVERS, COVER_WORDS)
            refreshed.append(name)
    return refreshed
