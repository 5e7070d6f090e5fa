"""Recipes by name: geobind's sets as package data, each plugin's own stage, includes, overrides."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from geobind import Modality, hookimpl
from geobind.cli import main
from geobind.errors import ConfigError
from geobind.recipes import find_recipe, list_recipes, read_recipe_file, shipped_recipes
from geobind.train import load_recipe

PACKAGE = Path(__file__).resolve().parents[1] / "geobind"


@dataclass
class DotConfig:
    embed_dim: int = 8


def _build(config, weights):
    raise AssertionError("not built in these tests")


def _modality(name: str, recipe: str | None) -> Modality:
    return Modality(
        name=name,
        config=DotConfig,
        build_encoder=_build,
        build_preprocess=lambda config, train: float,
        check=lambda value: None,
        storage="string",
        recipe=recipe,
    )


def plugin_with(*modalities: Modality) -> object:
    class Plugin:
        @hookimpl
        def geobind_register_modalities(self, register):
            for m in modalities:
                register(m)

    return Plugin()


STAGE = """
# A dot's own stage.
stages:
  dot:
    student: {modality: dot}
    teacher: {modality: satellite, weights: space}
    epochs: 2
    batch_size: 16
"""


def test_the_recipe_sets_are_package_data_found_without_a_source_tree():
    shipped = shipped_recipes()
    assert {"world/demo", "world/anchor", "world/audio", "world/clip"} <= set(shipped)
    assert {"paper/paper", "paper/anchor", "paper/audio", "paper/clip"} <= set(shipped)
    assert all(p.is_relative_to(PACKAGE / "recipes") for p in shipped.values())
    top = PACKAGE.parent / "recipes"  # the source tree's view of them: links only, no copies
    assert all(p.is_symlink() for p in top.iterdir())
    demo = load_recipe("world/demo", ["space=s", "data_dir=w"])
    assert list(demo.stages) == ["clip", "anchor", "audio", "location"]
    assert demo.stages["audio"].data == "w/audio.lance"
    # the plugin's own stage, taken by name, on the audio stage's tiles
    assert demo.stages["location"].data == "w/audio.lance"
    own = load_recipe("location", space="s", data="d").stages["location"]
    assert (demo.stages["location"].lr, demo.stages["location"].batch_size) == (
        own.lr,
        own.batch_size,
    )
    assert demo.stages["location"].epochs == 20 != own.epochs  # the demo's one change


def test_the_top_level_recipes_folder_links_every_shipped_recipe():
    top = PACKAGE.parent / "recipes"
    shipped = shipped_recipes()
    linked = {
        f"{d.name}/{p.stem}": p for d in top.iterdir() if d.is_dir() for p in d.glob("*.yaml")
    }
    assert {n: p.read_bytes() for n, p in linked.items()} == {
        n: p.read_bytes() for n, p in shipped.items()
    }
    for name in ("audio", "location"):  # each bundled plugin's own stage
        assert (top / f"{name}.yaml").read_bytes() == find_recipe(name).read_bytes()
    # a path into the folder is the recipe its name is, includes and all
    by_path = load_recipe(top / "world" / "demo.yaml", ["space=s", "data_dir=w"])
    assert by_path == load_recipe("world/demo", ["space=s", "data_dir=w"])


def test_every_shipped_plugin_recipe_is_listed_with_what_it_trains_against():
    listed = {r.name: r for r in list_recipes()}
    for name in ("audio", "location"):
        info = listed[name]
        assert info.plugin == f"geobind-{name}" and not info.error
        assert [(s.student, s.teacher, s.teacher_trains) for s in info.stages] == [
            (name, "satellite", False)
        ]
        assert info.path.is_file() and info.path.parent.name == f"geobind_{name}"
    clip = listed["world/demo"].stages[0]
    assert (clip.student, clip.teacher, clip.teacher_trains) == ("text", "ground", True)
    assert "ground" not in listed and "text" not in listed  # they enter through CLIP's stage


def test_cli_recipes_prints_name_plugin_and_stages(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("location "))
    assert "geobind-location" in row and "location: location -> satellite" in row
    assert any("clip: text + ground (both train)" in line for line in lines)
    assert main(["recipes", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert Path(listed["audio"]["path"]).name == "recipe.yaml"


def test_a_modality_recipe_takes_space_data_and_short_overrides():
    recipe = load_recipe("location", ["epochs=3", "stages.location.lr=0.5"], "sp", "d.lance")
    stage = recipe.stages["location"]
    assert (recipe.space, stage.data, stage.epochs, stage.lr) == ("sp", "d.lance", 3, 0.5)
    assert "embed_dim" not in stage.student.config  # left to follow the anchor


def test_data_on_its_own_is_only_for_a_one_stage_recipe():
    with pytest.raises(ConfigError, match="has 4 \\(clip, anchor, audio, location\\)"):
        load_recipe("world/demo", space="s", data="d.lance")


def test_missing_space_or_data_says_how_to_give_them():
    with pytest.raises(ConfigError, match="--space SPACE"):
        load_recipe("location", data="d.lance")
    with pytest.raises(ConfigError, match="--data DATASET"):
        load_recipe("location", space="s")


def test_an_unknown_recipe_lists_the_names_there_are():
    with pytest.raises(ConfigError, match="recipe not found: locaton .*location.*world/demo"):
        find_recipe("locaton")


def test_a_modality_without_a_recipe_says_so_naming_its_plugin():
    with pytest.raises(ConfigError, match="'text' \\(plugin geobind-text\\) ships no recipe"):
        find_recipe("text")


def test_a_stage_includes_another_recipe_by_name_with_changes(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        textwrap.dedent(
            """
            space: out
            stages:
              audio:
                include: audio
                data: a.lance
                epochs: 9
                student: {config: {clip_seconds: 2.0}}
              again: mine-stage.yaml
            """
        )
    )
    (tmp_path / "mine-stage.yaml").write_text("stages:\n  x: {include: location, data: b.lance}\n")
    raw = read_recipe_file(tmp_path / "mine.yaml")
    audio = raw["stages"]["audio"]
    assert audio["epochs"] == 9 and audio["lr"] == 1.0e-3  # the plugin's, but for the change
    assert audio["student"] == {"modality": "audio", "config": {"clip_seconds": 2.0}}
    assert raw["stages"]["again"]["student"] == {"modality": "location"}
    assert raw["stages"]["again"]["data"] == "b.lance"


def test_a_broken_plugin_recipe_is_listed_as_broken_and_named_when_trained(
    register_plugin, tmp_path, capsys
):
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: {dot: [unclosed\n")
    register_plugin(
        plugin_with(
            _modality("dot", str(broken)),
            _modality("gone", str(tmp_path / "missing.yaml")),
            _modality("elsewhere", "geobind_no_such_package:recipe.yaml"),
        ),
        name="geobind-dots",
    )
    listed = {r.name: r for r in list_recipes()}
    assert "not valid YAML" in listed["dot"].error and listed["dot"].plugin == "geobind-dots"
    assert "there is no file" in listed["gone"].error
    assert "not installed" in listed["elsewhere"].error
    assert main(["recipes"]) == 0  # one broken recipe does not hide the others
    out = capsys.readouterr().out
    assert "BROKEN" in out and "location " in out
    for name, reason in [
        ("dot", "not valid YAML"),
        ("gone", "geobind-dots.*there is no file"),
        ("elsewhere", "geobind_no_such_package.*not installed"),
    ]:
        assert main(["train", name, "--space", str(tmp_path / "s"), "--data", "d.lance"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("geobind: error: ") and len(err.strip().splitlines()) == 1
        assert re.search(reason, err), err


def test_a_plugin_recipe_in_its_package_is_found_through_importlib_resources(
    register_plugin, tmp_path, monkeypatch
):
    package = tmp_path / "geobind_dot_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "dot.yaml").write_text(STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    register_plugin(plugin_with(_modality("dot", "geobind_dot_pkg:dot.yaml")), name="geobind-dot")
    assert find_recipe("dot") == package / "dot.yaml"
    info = next(r for r in list_recipes() if r.name == "dot")
    assert (info.plugin, info.description) == ("geobind-dot", "A dot's own stage.")
    recipe = load_recipe("dot", ["batch_size=4"], space="s", data="d.lance")
    assert recipe.stages["dot"].batch_size == 4 and recipe.stages["dot"].epochs == 2
    sys.modules.pop("geobind_dot_pkg", None)


def test_train_takes_overrides_between_its_flags(capsys, tmp_path):
    # `geobind train NAME KEY=VALUE --space S KEY=VALUE`: every KEY=VALUE reaches the recipe
    code = main(["train", "location", "epochs=x", "--space", str(tmp_path), "--data", "d"])
    assert code == 1
    assert "epochs" in capsys.readouterr().err
    assert main(["train", "location", "--space", str(tmp_path), "--bogus"]) == 1
    assert "expected KEY=VALUE, got '--bogus'" in capsys.readouterr().err


def test_a_recipe_that_includes_itself_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "a.yaml").write_text("space: s\nstages:\n  x: b.yaml\n")
    (tmp_path / "b.yaml").write_text("stages:\n  y: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        read_recipe_file(tmp_path / "a.yaml")


def test_a_shipped_plugin_that_is_not_installed_is_named(monkeypatch):
    from geobind import plugins

    monkeypatch.setenv("GEOBIND_LOAD_PLUGINS", "geobind-text")
    plugins.reset_registry()
    try:
        with pytest.raises(plugins.PluginError, match="pip install geobind-location"):
            find_recipe("location")
    finally:
        monkeypatch.delenv("GEOBIND_LOAD_PLUGINS")
        plugins.reset_registry()


def test_an_unknown_stage_key_of_a_one_stage_recipe_lists_the_stage_keys():
    with pytest.raises(ConfigError, match="'epoch'.*Did you mean: 'epochs'.*valid keys: data"):
        load_recipe("location", ["epoch=3"], space="s", data="d")


def test_a_shipped_file_is_found_inside_the_package_and_a_missing_one_named():
    clip = load_recipe("world/clip", ["space=s", "data_dir=w"]).stages["clip"]
    text = Path(clip.student.weights)
    assert text.is_file() and text.is_relative_to(PACKAGE / "recipes" / "world" / "weights")
    wrong = "stages.clip.student.weights=${shipped:world/weights/nope.safetensors}"
    with pytest.raises(ConfigError, match=r"geobind ships no such file .*nope\.safetensors"):
        load_recipe("world/clip", ["space=s", "data_dir=w", wrong])
