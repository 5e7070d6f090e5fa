"""geobind's own contributions, registered through the same hooks as any installed plugin."""

from __future__ import annotations

from collections.abc import Callable

from geobind.data import importers as imp
from geobind.data import world_source
from geobind.encoders.anchor import anchor_modality
from geobind.hookspecs import hookimpl
from geobind.modality import Modality
from geobind.sources import DatasetSource


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """The satellite anchor."""
    register(anchor_modality())


@hookimpl
def geobind_register_datasets(register: Callable[[DatasetSource], None]) -> None:
    """The synthetic world; importers of the layouts the GeoBind papers use and of tables."""
    register(
        DatasetSource(
            "world",
            "generator",
            world_source.WorldOptions,
            world_source.make_world,
            "the synthetic world (the embedded default) -> four pair datasets (five with --sounds)",
        )
    )
    register(
        DatasetSource(
            "sat2cap",
            "importer",
            imp.Sat2CapOptions,
            imp.import_sat2cap,
            "Sat2Cap/YFCC webdataset shards -> satellite+ground pairs",
        )
    )
    register(
        DatasetSource(
            "soundingearth",
            "importer",
            imp.SoundingEarthOptions,
            imp.import_soundingearth,
            "SoundingEarth metadata CSV, images, audio -> satellite+audio pairs",
        )
    )
    register(
        DatasetSource(
            "table",
            "importer",
            imp.TableOptions,
            imp.import_table,
            "a CSV/Parquet table with a modality=column mapping",
        )
    )
