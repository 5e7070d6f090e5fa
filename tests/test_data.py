"""The world as Lance pair datasets, `geobind world make`, `geobind data show`, the reader."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import geobind
from geobind.cli import main
from geobind.data import open_pairs, read_values, world_source
from geobind.data.pairs import label_classes
from geobind.data.raster import raster_beside
from geobind.data.reader import PairDataset, pair_loader
from geobind.data.synthetic import DATASETS, WorldOptions, dataset_of, make_world
from geobind.world import COVER_WORDS, LAND_COVERS, WorldConfig

PLACES = 60


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    make_world(WorldOptions(out=str(out), places=PLACES, workers=1), progress=False)
    return out


def test_places_are_dealt_to_disjoint_datasets_that_span_the_map():
    counts = {name: sum(dataset_of(i) == name for i in range(1000)) for name in DATASETS}
    assert counts == {"captions": 300, "ground": 300, "audio": 300, "heldout": 100}


def test_world_datasets_have_their_modalities_labels_and_splits(world):
    ids = {}
    for name, (_, modalities) in DATASETS.items():
        ds = open_pairs(world / f"{name}.lance")
        assert set(modalities) | {"id", "lat", "lon", "split", "landcover"} == set(ds.schema.names)
        table = ds.to_table(columns=["id", "split", "landcover"]).to_pylist()
        ids[name] = {r["id"] for r in table}
        assert all(abs(sum(r["landcover"]) - 1) < 1e-4 for r in table)
        if name == "heldout":
            assert {r["split"] for r in table} == {"test"}
    assert sum(len(v) for v in ids.values()) == PLACES
    assert len(set.union(*ids.values())) == PLACES  # no place in two datasets
    heldout = open_pairs(world / "heldout.lance")
    tile, sound, caption = (read_values(heldout, c, [0])[0] for c in ("satellite", "audio", "text"))
    geobind.get_registry().modality("audio").check(sound)
    assert Image.open(__import__("io").BytesIO(tile)).size == (64, 64) and caption


def test_same_seed_gives_identical_bytes(world, tmp_path):
    make_world(WorldOptions(out=str(tmp_path), places=PLACES, workers=2), progress=False)
    for name in DATASETS:
        a, b = open_pairs(world / f"{name}.lance"), open_pairs(tmp_path / f"{name}.lance")
        for column in a.schema.names:
            rows = range(a.count_rows())
            assert read_values(a, column, rows) == read_values(b, column, rows), (name, column)


def test_cli_world_make_and_data_show(tmp_path, capsys):
    assert (
        main(
            [
                "world",
                "make",
                "--out",
                str(tmp_path / "w"),
                "--places",
                "20",
                "--workers",
                "1",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "heldout" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "data",
                "show",
                str(tmp_path / "w" / "heldout.lance"),
                "--grid",
                str(grid),
                "--grid-rows",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 rows" in out and "splits: test 2" in out and "satellite: " in out
    image = Image.open(grid)
    assert image.width >= 5 * 128 and image.height > 2 * 128  # tile, view, sound, caption


def test_world_make_names_its_classes_and_writes_its_map(tmp_path):
    world_source.make_world(
        WorldOptions(out=str(tmp_path), places=20, workers=1, seed=3), progress=False
    )
    words = {c: list(w) for c, w in COVER_WORDS.items()}
    for name in DATASETS:
        ds = open_pairs(tmp_path / f"{name}.lance")
        assert label_classes(ds, "landcover") == (list(LAND_COVERS), words)
    raster = raster_beside(tmp_path / "heldout.lance")
    config = WorldConfig()
    assert (raster.lat_min, raster.lat_max, raster.lon_min, raster.lon_max) == (
        config.lat_min,
        config.lat_max,
        config.lon_min,
        config.lon_max,
    )
    assert raster.open().size[::-1] == config.mosaic_shape
    places = open_pairs(tmp_path / "heldout.lance").to_table(columns=["lat", "lon"]).to_pylist()
    assert all(
        raster.lat_min < p["lat"] < raster.lat_max and raster.lon_min < p["lon"] < raster.lon_max
        for p in places
    )


def test_reader_gives_preprocessed_batches_with_row_ids(world):
    audio = geobind.build_encoder("audio")
    tiles = geobind.build_encoder("satellite")
    data = PairDataset(
        world / "audio.lance",
        {"satellite": tiles.preprocess(True), "audio": audio.preprocess(True)},
        split="train",
    )
    batch = next(iter(pair_loader(data, batch_size=4, shuffle=True)))
    assert batch["satellite"].shape == (4, 3, 64, 64)
    assert batch["audio"].shape == (4, audio.config.clip_samples)
    assert batch["row"].dtype == torch.int64 and len(set(batch["row"].tolist())) == 4


def test_reader_works_in_spawned_workers(world):
    text = geobind.build_encoder("text")
    data = PairDataset(world / "captions.lance", {"text": text.preprocess(False)})
    rows = [b["row"] for b in pair_loader(data, batch_size=5, workers=2)]
    assert sorted(torch.cat(rows).tolist()) == list(range(len(data)))
