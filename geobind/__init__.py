"""geobind: one embedding space for many modalities, bound through satellite imagery.

The public API is what this module exports (``geobind.__all__``) plus the modules named in
:data:`PUBLIC_MODULES`; plugins use nothing else, exactly as a third party would (a test
checks the shipped plugins). Names resolve lazily, so ``import geobind`` (and the command
line) stays fast and pulls in torch only when an encoder is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "geobind.hookspecs",
    "hookspec": "geobind.hookspecs",
    "Modality": "geobind.modality",
    "DatasetSource": "geobind.sources",
    "get_registry": "geobind.plugins",
    "PluginError": "geobind.plugins",
    "PluginWarning": "geobind.plugins",
    "make_config": "geobind.config",
    "GeobindError": "geobind.errors",
    "ConfigError": "geobind.errors",
    "InputError": "geobind.errors",
    "EncoderShapeError": "geobind.errors",
    "WeightsError": "geobind.errors",
    "decode_image": "geobind.encoders.media",
    "check_image": "geobind.encoders.media",
    "ColourHistogram": "geobind.encoders.features",
    "BagOfWords": "geobind.encoders.features",
    "Encoder": "geobind.encoders.encoder",
    "Views": "geobind.encoders.encoder",
    "build_encoder": "geobind.encoders.encoder",
    "VisionConfig": "geobind.encoders.vision",
    "build_vision_tower": "geobind.encoders.vision",
    "vision_preprocess": "geobind.encoders.vision",
    "ANCHOR": "geobind.encoders.anchor",
    "load_space": "geobind.space",
    "Space": "geobind.space",
    "SpaceError": "geobind.space",
    "read_state_dict": "geobind.encoders.weights",
    "load_into": "geobind.encoders.weights",
    "strip_prefix": "geobind.encoders.weights",
    "save_state_dict": "geobind.encoders.weights",
    "list_recipes": "geobind.recipes",
    "train_recipe": "geobind.train.run",
}

#: Modules that are public API as a whole: the pytest fixtures for plugin authors, and the
#: open_clip adapter for plugins whose encoder is an open_clip tower.
PUBLIC_MODULES = ("geobind.testing", "geobind.encoders.openclip")

__all__ = sorted(_EXPORTS) + ["PUBLIC_MODULES", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geobind' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
