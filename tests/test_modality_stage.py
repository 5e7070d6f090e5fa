"""A plugin's modality end to end: columns read together, its own recipe trained against the
frozen anchor (Python and command line), clear width errors, eval, search, map and report."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import geobind
from geobind import InputError, Modality, hookimpl
from geobind.cli import main
from geobind.errors import ConfigError
from geobind.eval.evaluate import evaluate_space
from geobind.search.index import build_index, search
from geobind.space import load_space
from geobind.testing import DatasetPath, pair_rows, png_bytes, train_tiny_space, write_dataset

RECIPE = """
# A spot's own stage.
stages:
  spot:
    student: {modality: spot}
    teacher: {modality: satellite, weights: space}
    batch_size: 8
    epochs: 4
    warmup_steps: 1
"""


@dataclass
class SpotConfig:
    embed_dim: int = 16


def build(config, weights):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, config.embed_dim)
    )


def check(value):
    if not (isinstance(value, tuple) and len(value) == 2 and None not in value):
        raise InputError(f"spot: expected (lat, lon), got {value!r}")


def preprocess(config, train):
    return to_tensor


def to_tensor(value):
    check(value)
    return torch.tensor([value[0] - 40.0, value[1] + 74.0]) * 10


def parse(text):
    lat, _, lon = text.partition(",")
    try:
        return (float(lat), float(lon))
    except ValueError:
        raise InputError(f"spot: expected LAT,LON, got {text!r}") from None


class SpotPlugin:
    def __init__(self, recipe: Path):
        self.recipe = recipe

    @hookimpl
    def geobind_register_modalities(self, register):
        register(
            Modality(
                name="spot",
                config=SpotConfig,
                build_encoder=build,
                build_preprocess=preprocess,
                check=check,
                columns=("lat", "lon"),
                parse=parse,
                recipe=str(self.recipe),
            )
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny space (its anchor 32 wide) and a dataset of 24 places with tiles and captions."""
    root = tmp_path_factory.mktemp("spot")
    n = 24
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(300 + i) for i in range(n)],
            "text": [f"place {i}" for i in range(n)],
        }
    )
    data = write_dataset(
        root / "places.lance", rows, {"satellite": "binary", "ground": "binary", "text": "string"}
    )
    space = train_tiny_space(root / "space", data)
    (root / "spot.yaml").write_text(RECIPE)
    return root, space, data


@pytest.fixture
def spot(register_plugin, world, tmp_path):
    root, space, data = world
    register_plugin(SpotPlugin(root / "spot.yaml"), name="geobind-spot")
    copy = tmp_path / "space"  # each test trains into its own copy of the tiny space
    import shutil

    shutil.copytree(space, copy)
    return copy, data


def test_columns_are_read_together_as_one_raw_value(spot):
    from geobind.data.reader import PairDataset

    _, data = spot
    modality = geobind.get_registry().modality("spot")
    assert (modality.inputs, modality.column) == (("lat", "lon"), "")
    rows = PairDataset(data, {"spot": lambda v: v}, inputs={"spot": modality.inputs})
    assert rows[1]["spot"] == (40.01, -73.99)  # pair_rows' coordinates


def test_a_modality_recipe_trains_by_name_against_the_frozen_anchor(spot):
    space, data = spot
    before = {n: e.sha256 for n, e in load_space(space).entries.items()}
    metrics = geobind.train_recipe("spot", ["max_steps=2"], space=space, data=data, say=print)
    assert metrics["spot"]["steps"] == 2
    loaded = load_space(space)
    entry = loaded.entry("spot")
    # the plugin's default is 16 wide; the stage followed the anchor's width
    assert entry.config == {"embed_dim": 32} and entry.plugin == "geobind-spot"
    assert entry.aligned_to == {"modality": "satellite", "sha256": before["satellite"]}
    assert {n: e.sha256 for n, e in loaded.entries.items() if n != "spot"} == before
    assert geobind.train_recipe("spot", ["max_steps=2"], space=space, data=data) == {}  # done


def test_a_student_of_another_width_is_an_error_before_training_naming_everything(spot, capsys):
    space, data = spot
    code = main(
        ["train", "spot", "--space", str(space), "--data", str(data), "student.config.embed_dim=64"]
    )
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "student 'spot' (plugin geobind-spot) has embed_dim 64 (from the recipe)" in err
    assert f"teacher 'satellite' is 32 wide (from the space manifest {space}/manifest.json)" in err
    assert not (space / "checkpoints" / "spot").exists() and not load_space(space).has("spot")


def test_a_teacher_width_from_the_recipe_is_named_too(tmp_path, world):
    _, _, data = world
    (tmp_path / "clip.yaml").write_text(
        f"space: {tmp_path / 's'}\nstages:\n  clip:\n    data: {data}\n"
        "    student: {modality: text, config: {embed_dim: 32, context_length: 16, width: 64, "
        "heads: 2, layers: 1}}\n"
        "    teacher: {modality: ground, config: {embed_dim: 16, image_size: 32, patch_size: 8, "
        "width: 64, layers: 1, head_width: 32}, train: true}\n"
    )
    with pytest.raises(ConfigError, match=r"teacher 'ground' is 16 wide \(from the recipe\)"):
        geobind.train_recipe(tmp_path / "clip.yaml")


def test_cli_trains_a_modality_then_searches_maps_and_evaluates_it(spot, tmp_path, capsys):
    space, data = spot
    assert main(["train", "spot", "--space", str(space), "--data", str(data), "max_steps=2"]) == 0
    assert main(["index", "build", str(space), "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["search", str(space), "--query", "spot=40.05,-73.95", "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rank", "id", "lat", "lon", "score"] and len(out) == 4
    assert main(["search", str(space), "--text", "place 3", "--top", "2"]) == 0  # flags stay
    png = tmp_path / "map.png"
    assert (
        main(
            [
                "map",
                str(space),
                "--data",
                str(data),
                "--query",
                "spot=40.1,-73.9",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert png.stat().st_size > 0
    result = evaluate_space(load_space(space), str(data))
    pairs = {(r["query"], r["gallery"]) for r in result["retrieval"]}
    assert {("spot", "satellite"), ("satellite", "spot"), ("spot", "text")} <= pairs


def test_python_search_and_embed_take_the_modality_as_values_or_text(spot):
    space, data = spot
    geobind.train_recipe("spot", ["max_steps=1"], space=space, data=data)
    loaded = load_space(space)
    z = loaded.embed("spot", [(40.05, -73.95), "40.05,-73.95"])
    torch.testing.assert_close(z[0], z[1])
    assert loaded.embed("spot", (40.05, -73.95)).shape == (1, 32)  # one tuple is one value
    build_index(loaded, data)
    hits = search(loaded, "spot", "40.05,-73.95", top=2)[0]
    assert len(hits) == 2 and {"id", "lat", "lon", "score"} <= set(hits[0])
    assert search(loaded, "spot", (40.05, -73.95), top=2) == [hits]  # one tuple, one query
    assert len(search(loaded, "spot", [(40.05, -73.95), (40.1, -73.9)], top=2)) == 2


@pytest.mark.parametrize(
    "query, reason",
    [
        ("spott=1,2", "no installed plugin registers modality 'spott'"),
        ("spot=north", "spot: expected LAT,LON, got 'north'"),
        ("spot=", "the value is empty"),
        ("audio=x.flac", "x.flac: query file not found"),
        ("", "--query: empty query"),
    ],
)
def test_bad_queries_are_one_line_errors_naming_the_thing(spot, capsys, query, reason):
    space, data = spot
    geobind.train_recipe("spot", ["max_steps=1"], space=space, data=data)
    assert main(["index", "build", str(space), "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["search", str(space), "--query", query]) == 1
    err = capsys.readouterr().err
    assert err.startswith("geobind: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(re.escape(reason), err), err


def test_report_takes_queries_of_any_modality(spot, tmp_path, capsys):
    space, data = spot
    geobind.train_recipe("spot", ["max_steps=1"], space=space, data=data)
    out = tmp_path / "r.html"
    args = ["report", str(space), "--out", str(out), "--data", str(data)]
    assert main([*args, "--query", "spot=40.05,-73.95", "--query", "a quiet place"]) == 0
    page = out.read_text()
    assert page.count("<img") == 4 and "spot: 40.05,-73.95" in page and "a quiet place" in page


def test_a_modality_of_columns_has_nothing_to_import(spot, tmp_path):
    from geobind.data.importing import Candidate, import_pairs

    spot_modality = geobind.get_registry().modality("spot")
    rows = [Candidate("a", 1.0, 2.0, {"spot": (1.0, 2.0)})]
    with pytest.raises(ConfigError, match="reads the columns lat, lon"):
        import_pairs(tmp_path / "x.lance", rows, {"spot": spot_modality})


def test_fixtures_compose_a_path_like_dataset_and_a_tiny_stage(
    spot, tiny_pair_dataset, pair_dataset_factory
):
    assert isinstance(tiny_pair_dataset, DatasetPath)
    assert Path(tiny_pair_dataset).is_dir() and tiny_pair_dataset.count_rows() == 24
    made = pair_dataset_factory(columns={"depth": [1.5, 2.5, 3.5, 4.5], "kind": list("abab")})
    assert made.count_rows() == 4 and made.schema.field("depth").type == "double"
    assert json.dumps(str(made))  # a plain path for a recipe
    from geobind.testing import train_tiny_stage

    space, _ = spot
    metrics = train_tiny_stage("spot", space, tiny_pair_dataset, steps=2)
    assert (
        metrics["spot"]["steps"] == 2 and load_space(space).entry("spot").config["embed_dim"] == 32
    )


def test_a_dataset_without_a_column_the_modality_reads_is_named(spot, capsys):
    space, data = spot
    assert main(["train", "audio", "--space", str(space), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert (
        f"dataset {data} has no column 'audio', which modality 'audio' (plugin geobind-audio)"
        in err
    )


def test_too_few_rows_for_a_batch_says_what_batch_would_fit(spot, capsys):
    space, data = spot
    assert main(["train", "spot", "--space", str(space), "--data", str(data), "batch_size=64"]) == 1
    err = capsys.readouterr().err
    assert "12 training rows" in err and "(set batch_size=12 or less)" in err


def test_the_floor_of_a_modality_of_columns_reads_them_together(spot):
    from geobind.eval.floor import Floor, fit_space_floor
    from geobind.testing import train_tiny_stage

    space, data = spot
    train_tiny_stage("location", space, data, steps=1)
    floor = fit_space_floor("location", "satellite", str(data))
    assert isinstance(floor, Floor), floor
    assert floor.embed("location", [(40.05, -73.95)]).shape[0] == 1
