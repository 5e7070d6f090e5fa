"""The demo's pretrained towers: CLIP's, exported from the space `world/pretrain` trains,
shipped beside the world recipes, imported by the demo's CLIP stage as it is; CLAP's sound
tower, exported from the space `world/pretrain-clap` trains, which the demo's audio stage
starts from; the anchor `world/pretrain` trains after its CLIP stage, which the demo's anchor
stage starts from, and the sound tower it aligns to that anchor after it, which the demo's audio
stage starts from."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from geobind.data.pairs import open_pairs, read_values
from geobind.data.synthetic import WorldOptions, make_world
from geobind.encoders.encoder import build_encoder
from geobind.encoders.weights import read_state_dict, sha256_hex
from geobind.errors import GeobindError
from geobind.space import load_space
from geobind.testing import TINY_AUDIO, train_tiny_space, train_tiny_stage
from geobind.train import load_recipe
from geobind.train import train as train_recipe
from geobind.train.pretrained import (
    ANCHOR_FILES,
    ANCHORED_FILES,
    CLAP_FILES,
    FILES,
    SHIPPED,
    export,
    export_anchor,
    export_anchored,
    export_clap,
    export_clip,
    made_of,
    main,
    pretraining_world,
    shipped_anchor,
    shipped_anchored,
    shipped_clap,
    shipped_clip,
    sounds_fingerprint,
    trained_tokens,
    world_fingerprint,
)


@pytest.fixture(scope="module")
def clip_space(tmp_path_factory):
    """A tiny space whose CLIP towers trained on a small synthetic world's captions."""
    root = tmp_path_factory.mktemp("pretrained")
    world = root / "world"
    make_world(WorldOptions(out=str(world), places=40, seed=3, workers=1), progress=False)
    space = train_tiny_space(root / "space", world / "captions.lance", world / "ground.lance")
    captions = open_pairs(world / "captions.lance").to_table().column("text").to_pylist()
    return space, root, captions


def test_the_export_keeps_what_trained_and_zeroes_the_token_rows_no_caption_holds(clip_space):
    space_path, root, captions = clip_space
    record = export_clip(space_path, root / "out")
    space = load_space(space_path)
    trained = read_state_dict(space.weights_path("text"))["token_embedding.weight"]
    shipped = read_state_dict(root / "out" / FILES["text"])
    table = shipped["token_embedding.weight"]
    context = int(space.entry("text").config["context_length"])
    kept = trained_tokens(captions, context)
    assert record["trained_tokens"] == len(kept) < 300  # the world's words, start, end, padding
    assert torch.equal(table[kept], trained[kept])
    others = torch.ones(len(table), dtype=torch.bool)
    others[kept] = False
    assert not table[others].any() and trained[others].abs().sum() > 0
    # every caption embeds exactly as in the trained space
    entry = space.entry("text")
    text = build_encoder("text", entry.config, weights=str(root / "out" / FILES["text"]))
    assert torch.equal(text.embed(captions), space.embed("text", captions))
    # and the ground tower is the space's, to the byte
    ground = (root / "out" / FILES["ground"]).read_bytes()
    assert ground == space.weights_path("ground").read_bytes()
    saved = json.loads((root / "out" / "clip.json").read_text())
    assert saved == shipped_clip(root / "out") == json.loads(json.dumps(record, sort_keys=True))
    for modality, tower in saved["towers"].items():
        assert tower["sha256"] == sha256_hex((root / "out" / tower["file"]).read_bytes())
        assert tower["config"] == space.entry(modality).config
    # the world it came from, built again from the record, renders the same places
    assert saved["world"]["options"]["seed"] == 3 and "out" not in saved["world"]["options"]
    assert world_fingerprint(pretraining_world(saved)) == saved["world"]["fingerprint"]


def test_the_export_names_a_space_without_towers_or_a_world(tmp_path, tiny_pair_dataset):
    with pytest.raises(GeobindError, match="no 'text' tower"):
        export_clip(tmp_path / "empty", tmp_path / "out")
    space = train_tiny_space(tmp_path / "space", tiny_pair_dataset)  # pairs of no world
    with pytest.raises(GeobindError, match="world.json: no synthetic world's record"):
        export_clip(space, tmp_path / "out")
    imported = tmp_path / "imported"  # a space whose CLIP stage imported its towers
    shutil.copytree(space, imported)
    manifest = json.loads((imported / "manifest.json").read_text())
    manifest["modalities"]["text"]["recipe"]["max_steps"] = 0
    (imported / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GeobindError, match="not trained here on a pair dataset"):
        export_clip(imported, tmp_path / "out")
    with pytest.raises(GeobindError, match="no record of the shipped CLIP"):
        shipped_clip(tmp_path)
    assert not (tmp_path / "out").exists()


def wrote_the_tower(space_path, out, modality, name, record, shipped, values):
    """The export wrote ``modality``'s tower of the space at ``space_path`` to ``out/name`` as
    it is, and ``record`` beside it as ``shipped`` reads it back (its checksum, the space's
    config, the stage's recipe without its data); the tower loads as a stage loads a student's
    weights and embeds ``values`` as the space does. Returns the record as saved."""
    space = load_space(space_path)
    tower_file = out / name
    assert tower_file.read_bytes() == space.weights_path(modality).read_bytes()
    saved = json.loads((out / f"{name.split('-')[0]}.json").read_text())
    assert saved == shipped(out) == json.loads(json.dumps(record, sort_keys=True))
    tower = saved["towers"][modality]
    assert tower["sha256"] == sha256_hex(tower_file.read_bytes())
    assert tower["config"] == space.entry(modality).config
    assert "data" not in saved["recipe"]
    encoder = build_encoder(modality, tower["config"], weights=str(tower_file))
    assert torch.equal(encoder.embed(values), space.embed(modality, values))
    return saved


def test_the_anchor_export_writes_the_satellite_tower_the_clip_stage_was_followed_by(
    clip_space, capsys
):
    space_path, root, _ = clip_space
    records = export(space_path, root / "both")  # CLIP's towers and the anchor after them
    assert list(records) == ["clip", "anchor"]
    tiles = read_values(open_pairs(root / "world" / "ground.lance"), "satellite", range(4))
    saved = wrote_the_tower(
        space_path,
        root / "both",
        "satellite",
        ANCHOR_FILES["satellite"],
        records["anchor"],
        shipped_anchor,
        tiles,
    )
    assert saved["recipe"]["student"]["modality"] == "satellite"
    assert saved["world"] == records["clip"]["world"]  # the same world as the towers before it
    # from the command line: a line for each export
    assert main([str(space_path), str(root / "again")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "clip-ground.safetensors" in lines[0]
    assert lines[1].startswith("wrote anchor-satellite.safetensors and anchor.json")
    assert (root / "again" / "anchor.json").read_text() == (
        root / "both" / "anchor.json"
    ).read_text()


def refuses_what_it_cannot_export(space_path, modality, exporter, shipped, what, tmp_path):
    """``exporter`` names a space without ``modality``'s tower and one that imported it, and
    ``shipped`` a folder without its record; nothing is written."""
    with pytest.raises(GeobindError, match=f"no '{modality}' tower"):
        exporter(tmp_path / "empty", tmp_path / "out")
    imported = tmp_path / "imported"
    shutil.copytree(space_path, imported)
    manifest = json.loads((imported / "manifest.json").read_text())
    manifest["modalities"][modality]["recipe"]["max_steps"] = 0
    (imported / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GeobindError, match=f"{modality} tower was not trained here"):
        exporter(imported, tmp_path / "out")
    with pytest.raises(GeobindError, match=f"no record of the shipped {what}"):
        shipped(tmp_path)
    assert not (tmp_path / "out").exists()
    return imported


def test_the_anchor_export_names_a_space_without_an_anchor(clip_space, tmp_path):
    space_path, _, _ = clip_space
    imported = refuses_what_it_cannot_export(
        space_path, "satellite", export_anchor, shipped_anchor, "anchor", tmp_path
    )
    with pytest.raises(GeobindError, match="satellite tower was not trained here"):
        export(imported, tmp_path / "out")  # nothing written, CLIP's towers included
    assert not (tmp_path / "out").exists()


TINY_CLAP = """
space: {space}
stages:
  clap:
    data: {data}
    student: {{modality: audio, config: {audio}}}
    teacher: {{modality: text, config: {{embed_dim: 32, context_length: 48, width: 64,
                                         heads: 2, layers: 1}}, train: true}}
    batch_size: 8
    max_steps: 2
"""


@pytest.fixture(scope="module")
def clap_space(tmp_path_factory):
    """A tiny space whose sound tower trained with a text tower on a small world's sounds."""
    root = tmp_path_factory.mktemp("clap")
    world = root / "world"
    options = WorldOptions(
        out=str(world), places=30, seed=3, workers=1, sounds=True, clip_seconds=1.0
    )
    make_world(options, progress=False)
    recipe = root / "clap.yaml"
    recipe.write_text(
        TINY_CLAP.format(
            space=root / "space",
            data=world / "sounds.lance",
            audio={**TINY_AUDIO, "band_stats": True},
        )
    )
    train_recipe(load_recipe(recipe), say=lambda line: None)
    return root / "space", root


def test_the_clap_export_writes_the_sound_tower_and_its_record(clap_space, capsys):
    space_path, root = clap_space
    records = export(space_path, root / "out")  # a space with sounds and no ground tower
    assert list(records) == ["clap"] and not (root / "out" / "clip.json").exists()
    clips = read_values(open_pairs(root / "world" / "sounds.lance"), "audio", range(4))
    saved = wrote_the_tower(
        space_path, root / "out", "audio", CLAP_FILES["audio"], records["clap"], shipped_clap, clips
    )
    assert saved["recipe"]["student"]["modality"] == "audio"
    options = saved["world"]["options"]
    assert options["seed"] == 3 and options["sounds"] is True and "out" not in options
    assert sounds_fingerprint(pretraining_world(saved)) == saved["world"]["fingerprint"]
    # and from the command line, one line says what it wrote
    assert main([str(space_path), str(root / "again")]) == 0
    assert "clap-audio.safetensors and clap.json" in capsys.readouterr().out
    assert (root / "again" / "clap.json").read_text() == (root / "out" / "clap.json").read_text()


def test_the_clap_export_names_a_space_without_a_sound_tower(clap_space, tmp_path):
    space_path, _ = clap_space
    refuses_what_it_cannot_export(space_path, "audio", export_clap, shipped_clap, "CLAP", tmp_path)
    (tmp_path / "clap.json").write_text("[1]")  # JSON, but not a record
    with pytest.raises(GeobindError, match=r"clap.json: no record .*\(not a mapping\)"):
        shipped_clap(tmp_path)


@pytest.fixture(scope="module")
def anchored_space(clip_space, tmp_path_factory):
    """The CLIP space's copy with a sound tower aligned to its anchor (the geobind-audio
    plugin's own stage, a few steps), as `world/pretrain`'s audio stage aligns CLAP's."""
    space_path, root, _ = clip_space
    here = tmp_path_factory.mktemp("anchored")
    shutil.copytree(space_path, here / "space")
    config = f"student.config={TINY_AUDIO}"
    train_tiny_stage("audio", here / "space", root / "world" / "audio.lance", 2, [config])
    return here / "space", root


def test_the_export_writes_the_sound_tower_aligned_to_the_anchor_after_it(anchored_space, capsys):
    space_path, root = anchored_space
    out = space_path.parent / "out"
    records = export(space_path, out)
    assert list(records) == ["clip", "anchor", "anchored"]
    clips = read_values(open_pairs(root / "world" / "audio.lance"), "audio", range(4))
    name = ANCHORED_FILES["audio"]
    saved = wrote_the_tower(
        space_path, out, "audio", name, records["anchored"], shipped_anchored, clips
    )
    assert saved["recipe"]["teacher"]["modality"] == "satellite"  # against the anchor
    assert saved["world"]["options"] == records["anchor"]["world"]["options"]
    assert sounds_fingerprint(pretraining_world(saved)) == saved["world"]["fingerprint"]
    # from the command line: a line for each of the three exports
    assert main([str(space_path), str(space_path.parent / "again")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("wrote anchored-audio.safetensors and anchored.json")


def test_the_anchored_export_names_a_space_without_the_tower(anchored_space, tmp_path):
    space_path, _ = anchored_space
    imported = refuses_what_it_cannot_export(
        space_path, "audio", export_anchored, shipped_anchored, "anchored sound tower", tmp_path
    )
    with pytest.raises(GeobindError, match="audio tower was not trained here"):
        export(imported, tmp_path / "out")  # nothing written: CLIP's towers, the anchor
    assert not (tmp_path / "out").exists()


def test_made_of_names_a_shipped_start_as_recipes_do_and_keeps_the_rest():
    stage = dataclasses.asdict(
        load_recipe("world/pretrain", ["space=s", "data_dir=w"]).stages["audio"]
    )
    kept = made_of(stage)
    assert stage["student"]["weights"] == str(SHIPPED / "clap-audio.safetensors")
    assert kept["student"]["weights"] == "${shipped:world/weights/clap-audio.safetensors}"
    assert kept["teacher"] == stage["teacher"] and "data" not in kept
    assert stage["student"]["weights"].startswith("/")  # the stage itself is left as it was
    assert {k: v for k, v in kept.items() if k != "student"} == {
        k: v for k, v in stage.items() if k not in ("student", "data")
    }


# -- the shipped towers: each replays the world they were pretrained on, one world for all --
def test_the_shipped_towers_are_what_world_pretrain_trained_and_world_clip_imports():
    record = shipped_clip()
    for tower in record["towers"].values():
        assert tower["sha256"] == sha256_hex((SHIPPED / tower["file"]).read_bytes())
    # pretrained on the world this tree generates: change the world and `make pretrain` must run
    world = pretraining_world(record)
    assert world_fingerprint(world) == record["world"]["fingerprint"], "run `make pretrain`"
    # trained by the recipe in this tree: change world/pretrain and `make pretrain` must run
    stage = load_recipe("world/pretrain", ["space=s", "data_dir=w"]).stages["clip"]
    recorded = record["recipe"]
    now = made_of(dataclasses.asdict(stage))
    assert recorded == now, "world/pretrain changed since its towers were trained: make pretrain"
    # imported by the demo's CLIP stage, with the configs the towers were trained with
    clip = load_recipe("world/demo", ["space=s", "data_dir=w"]).stages["clip"]
    assert clip.max_steps == 0 and clip.data == "w/captions.lance"
    for side in (clip.student, clip.teacher):
        tower = record["towers"][side.modality]
        assert side.weights == str(SHIPPED / tower["file"])
        trained = {k: v for k, v in tower["config"].items() if k != "augment"}
        assert trained.items() >= {k: v for k, v in side.config.items() if k != "augment"}.items()


def test_the_shipped_anchor_is_what_world_pretrain_trained_and_the_anchor_stages_start_from():
    record = shipped_anchor()
    tower = record["towers"]["satellite"]
    assert tower["sha256"] == sha256_hex((SHIPPED / tower["file"]).read_bytes())
    assert record["world"] == shipped_clip()["world"], "run `make pretrain`"  # CLIP's world
    assert world_fingerprint(pretraining_world(record)) == record["world"]["fingerprint"]
    stage = load_recipe("world/pretrain", ["space=s", "data_dir=w"]).stages["anchor"]
    assert stage.data == "w/ground.lance" and stage.student.weights == "space:ground"
    now = made_of(dataclasses.asdict(stage))
    assert record["recipe"] == now, (
        "world/pretrain's anchor changed since it trained: make pretrain"
    )
    # against the shipped ground tower, the one the demo imports, in its embedding space
    ground = shipped_clip()["towers"]["ground"]["config"]
    assert record["recipe"]["teacher"]["modality"] == "ground"
    # the demo's anchor stage and the long run's start from it, with the config it trained with
    for name in ("world/demo", "world/long"):
        anchor = load_recipe(name, ["space=s", "data_dir=w"]).stages["anchor"]
        assert anchor.student.weights == str(SHIPPED / tower["file"]), name
        assert tower["config"].items() >= anchor.student.config.items(), name
    assert tower["config"]["embed_dim"] == ground["embed_dim"]


def test_the_shipped_sound_tower_is_what_world_pretrain_clap_trained_and_world_audio_starts_from():
    record = shipped_clap()
    tower = record["towers"]["audio"]
    assert tower["sha256"] == sha256_hex((SHIPPED / tower["file"]).read_bytes())
    # pretrained on the sounds this tree's world makes: change them and `make pretrain` must run
    world = pretraining_world(record)
    assert sounds_fingerprint(world) == record["world"]["fingerprint"], "run `make pretrain`"
    assert record["world"]["options"] == shipped_clip()["world"]["options"]  # CLIP's world
    stage = load_recipe("world/pretrain-clap", ["space=s", "data_dir=w"]).stages["clap"]
    assert stage.data == "w/sounds.lance"
    now = made_of(dataclasses.asdict(stage))
    assert record["recipe"] == now, "world/pretrain-clap changed since it trained: make pretrain"
    # world/pretrain's audio stage starts from it, with the config it trained with
    audio = load_recipe("world/pretrain", ["space=s", "data_dir=w"]).stages["audio"]
    assert audio.student.weights == str(SHIPPED / tower["file"])
    assert tower["config"].items() >= audio.student.config.items()


def test_the_shipped_anchored_tower_is_what_world_pretrain_aligned_and_world_audio_starts_from():
    record = shipped_anchored()
    tower = record["towers"]["audio"]
    assert tower["sha256"] == sha256_hex((SHIPPED / tower["file"]).read_bytes())
    assert record["world"]["options"] == shipped_clip()["world"]["options"], "make pretrain"
    assert sounds_fingerprint(pretraining_world(record)) == record["world"]["fingerprint"]
    stage = load_recipe("world/pretrain", ["space=s", "data_dir=w"]).stages["audio"]
    assert stage.data == "w/audio.lance" and stage.teacher.weights == "space"
    assert record["recipe"] == made_of(dataclasses.asdict(stage)), (
        "world/pretrain's audio stage changed since it trained: make pretrain"
    )
    # against the shipped anchor, in its width
    assert (
        tower["config"]["embed_dim"]
        == shipped_anchor()["towers"]["satellite"]["config"]["embed_dim"]
    )
    # the demo's audio stage and the long run's start from it, with the config it trained with
    for name in ("world/demo", "world/long"):
        audio = load_recipe(name, ["space=s", "data_dir=w"]).stages["audio"]
        assert audio.student.weights == str(SHIPPED / tower["file"]), name
        assert tower["config"].items() >= audio.student.config.items(), name
