"""A space as a product: loading, verification, embedding, safe additions, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import geobind
from geobind.data import write_pairs
from geobind.errors import WeightsError
from geobind.space import Space, SpaceError, load_space
from geobind.testing import TINY_AUDIO, pair_rows, png_bytes, train_tiny_space
from geobind.train import load_recipe, train

AUDIO_STAGE = """
stages:
  audio:
    data: {data}
    student: {{modality: audio, config: {audio}}}
    teacher: {{modality: satellite, weights: space}}
    batch_size: 8
"""


def wav(seed: int) -> bytes:
    import io

    import numpy as np
    import soundfile

    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    soundfile.write(buf, 0.1 * rng.standard_normal(8000).astype("float32"), 16000, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A space with ground, text and the anchor, trained for a few steps, and its data."""
    root = tmp_path_factory.mktemp("space")
    n = 32
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(300 + i) for i in range(n)],
            "text": [f"a place with {i % 4} trees" for i in range(n)],
            "audio": [wav(i) for i in range(n)],
        }
    )
    data = root / "pairs.lance"
    write_pairs(
        data, rows, {"satellite": "binary", "ground": "binary", "text": "string", "audio": "binary"}
    )
    return train_tiny_space(root / "space", data), data


@pytest.fixture
def space_copy(built, tmp_path) -> Path:
    return Path(shutil.copytree(built[0], tmp_path / "space"))


def test_load_space_lists_modalities_and_embeds_every_kind_of_input(built, tmp_path):
    space = load_space(built[0])
    assert space.modalities == ["ground", "text", "satellite"] and space.unavailable == {}
    tile = tmp_path / "tile.png"
    tile.write_bytes(png_bytes(7))
    from_path = space.embed("satellite", [tile])
    from_bytes = space.embed("satellite", png_bytes(7))
    torch.testing.assert_close(from_path, from_bytes)
    texts = space.embed("text", ["a beach", "a road"])
    assert texts.shape == (2, 32)
    torch.testing.assert_close(texts.norm(dim=-1), torch.ones(2))
    pixels = space.encoder("satellite").collate([png_bytes(7)])[0]
    torch.testing.assert_close(space.embed("satellite", [pixels]), from_bytes)


def test_adding_a_modality_never_changes_the_others(built, space_copy, tmp_path):
    before = load_space(space_copy)
    probes = {
        "satellite": [png_bytes(1), png_bytes(2)],
        "ground": [png_bytes(3)],
        "text": ["a forest by a lake"],
    }
    embedded = {m: before.embed(m, v) for m, v in probes.items()}
    files = {m: before.weights_path(m).read_bytes() for m in probes}
    stage = tmp_path / "audio.yaml"
    stage.write_text(AUDIO_STAGE.format(data=built[1], audio=TINY_AUDIO))
    train(load_recipe(stage, [f"space={space_copy}"]), say=lambda s: None)
    after = load_space(space_copy)
    assert after.modalities == ["ground", "text", "satellite", "audio"]
    assert after.entry("audio").aligned_to == {
        "modality": "satellite",
        "sha256": after.entry("satellite").sha256,
    }
    for m, values in probes.items():
        assert after.weights_path(m).read_bytes() == files[m]
        assert torch.equal(after.embed(m, values), embedded[m]), m
    assert after.embed("audio", [wav(3)]).shape == (1, 32)


def test_the_manifest_is_replaced_atomically(space_copy, monkeypatch):
    space = Space(space_copy)
    manifest = (space_copy / "manifest.json").read_text()
    import geobind.encoders.weights as weights

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the writer dies between writing and renaming

    monkeypatch.setattr(weights.os, "replace", interrupted)
    space.manifest["modalities"]["text"]["stage"] = "changed"
    with pytest.raises(KeyboardInterrupt):
        space.write_manifest()
    assert (space_copy / "manifest.json").read_text() == manifest
    assert [p.name for p in space_copy.iterdir() if weights.is_temporary(p)] == []


def test_tampered_weights_are_refused_naming_the_file_and_hashes(space_copy):
    path = Space(space_copy).weights_path("text")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        WeightsError,
        match=r"text-\w+.safetensors has sha256 \w+…, the manifest "
        r"records \w+…: the file was changed",
    ):
        load_space(space_copy)
    assert path.read_bytes() == bytes(data)  # nothing written is changed


def test_missing_weights_file_is_named(space_copy):
    Space(space_copy).weights_path("ground").unlink()
    with pytest.raises(WeightsError, match="weights of 'ground' missing"):
        load_space(space_copy)


def test_a_modality_aligned_to_another_anchor_is_refused(space_copy):
    manifest = json.loads((space_copy / "manifest.json").read_text())
    manifest["modalities"]["satellite"]["aligned_to"]["sha256"] = "0" * 64
    (space_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        SpaceError,
        match=r"'satellite' was aligned to 'ground' with weights "
        r"sha256 000000000000…, but the space holds \w+",
    ):
        load_space(space_copy)


def test_a_manifest_from_a_newer_format_is_refused(space_copy):
    manifest = json.loads((space_copy / "manifest.json").read_text())
    manifest["format"] = 99
    (space_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpaceError, match="format 99 is newer than this geobind reads"):
        load_space(space_copy)


def test_a_missing_plugin_makes_its_modality_unavailable(space_copy, monkeypatch):
    from geobind import plugins

    monkeypatch.setenv(plugins.ALLOW_ENV, "geobind-ground")
    plugins.reset_registry()
    try:
        space = load_space(space_copy)
        assert space.modalities == ["ground", "satellite"]
        assert space.unavailable == {"text": "geobind-text"}
    finally:
        plugins.reset_registry()


def test_bad_queries_are_clear_errors(built):
    space = load_space(built[0])
    with pytest.raises(SpaceError, match="no inputs"):
        space.embed("text", [])
    with pytest.raises(geobind.InputError, match="empty"):
        space.embed("text", [""])
    with pytest.raises(SpaceError, match="input file not found: .*nowhere.png"):
        space.embed("satellite", ["/nowhere.png"])
    with pytest.raises(SpaceError, match="no 'audio' encoder"):
        space.embed("audio", [b"RIFF"])
    with pytest.raises(SpaceError, match="no space at"):
        load_space(built[0].parent / "not-a-space")


def test_an_encoder_giving_nan_is_named_not_ranked(built, monkeypatch):
    """NaN compares false with everything, so a NaN embedding would rank first; embed refuses."""
    space = load_space(built[0])
    broken = space.encoder("text")
    with torch.no_grad():
        next(broken.net.parameters()).fill_(float("nan"))  # as a diverged run would leave it
    monkeypatch.setattr(space, "encoder", lambda modality: broken)
    with pytest.raises(SpaceError, match=r"text: .*NaN or infinite embeddings for 2 of 2 inputs"):
        space.embed("text", ["a beach", "a road"])


def test_a_file_where_a_space_should_be_is_refused_before_anything_trains(tmp_path, capsys):
    from geobind.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(SpaceError, match="notes.txt: is a file; a space is a folder"):
        Space(notes)
    argv = ["train", "location", "--space", str(notes), "--data", str(tmp_path / "d.lance")]
    assert main(argv) == 1
    assert "is a file; a space is a folder" in capsys.readouterr().err
    assert notes.read_text() == "mine"
