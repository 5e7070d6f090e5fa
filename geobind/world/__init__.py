"""The synthetic world: geobind's built-in data set.

No satellite imagery can be downloaded where geobind's demo runs, so it makes its own: a
random but coherent landscape (coasts with beaches, lakes, mountains, forests, a patchwork of
farm fields, towns joined by roads) rendered as one top-down mosaic. Each place on it has a
satellite tile (a crop of the mosaic), a ground view, a soundscape and a caption, all derived
from the land covers around it plus per-place chance (time of day, weather, view direction),
so the modalities share real but imperfect signal, as in the wild.

    >>> from geobind.world import World, WorldConfig
    >>> world = World(WorldConfig(seed=0))
    >>> place = world.place(0)
    >>> place.caption, place.fractions

Pure library (numpy, scipy, Pillow, soundfile); everything follows from the seed.
"""

from geobind.world.attributes import TIMES_OF_DAY, WEATHERS, Conditions
from geobind.world.audio import WAVE_BAND_HZ
from geobind.world.caption import COVER_WORDS, caption_covers
from geobind.world.config import LAND_COVERS, WorldConfig
from geobind.world.oracle import oracle_recall_at_k
from geobind.world.world import Place, World, generate

__all__ = [
    "COVER_WORDS",
    "Conditions",
    "LAND_COVERS",
    "Place",
    "TIMES_OF_DAY",
    "WAVE_BAND_HZ",
    "WEATHERS",
    "World",
    "WorldConfig",
    "caption_covers",
    "generate",
    "oracle_recall_at_k",
]
