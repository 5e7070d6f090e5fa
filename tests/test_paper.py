"""The paper-scale recipes, run for two steps with the full-size architectures.

Fixture data is written in the real layouts (Sat2Cap webdataset shards, a SoundingEarth folder)
and imported with geobind's importers; the pretrained files the recipes name are written here
from randomly initialised full-size models: open_clip ViT-B-32 (fp16, as OpenAI publishes it)
and an HTSAT-tiny checkpoint in laion_clap's layout. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import geobind
from geobind.data.importers import (
    Sat2CapOptions,
    SoundingEarthOptions,
    import_sat2cap,
    import_soundingearth,
)
from geobind.data.importing import assign_split
from geobind.errors import ConfigError
from geobind.recipes import find_recipe
from geobind.space import load_space
from geobind.testing import png_bytes
from geobind.train import load_recipe, train

PAPER = find_recipe("paper/paper").parent  # the paper set, as the installed package holds it
STAGES = ("clip", "anchor", "audio")

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")


def jpeg(seed: int, size: int = 224) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed, size))).save(buf, format="JPEG")
    return buf.getvalue()


def keys(n_train: int, n_val: int, prefix: str) -> list[str]:
    """Ids whose stable split is train (``n_train``) or val (``n_val``)."""
    want, out, i = {"train": n_train, "val": n_val}, [], 0
    while any(want.values()):
        key, i = f"{prefix}{i:06d}", i + 1
        split = assign_split(key)
        if want.get(split, 0):
            want[split] -= 1
            out.append(key)
    return out


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """sat2cap.lance and soundingearth.lance, imported from files in the published layouts."""
    root = tmp_path_factory.mktemp("paper-data")
    shards = root / "shards"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tar:  # Sat2Cap / YFCC webdataset shard
        for i, key in enumerate(keys(4, 2, "4")):
            meta = {"latitude": 38.6 + i / 50, "longitude": -90.2, "date_taken": "2012-05-01"}
            add(tar, f"{key}.groundlevel.jpg", jpeg(i))
            add(tar, f"{key}.overhead.jpg", jpeg(100 + i))
            add(tar, f"{key}.metadata.json", json.dumps(meta).encode())
    report = import_sat2cap(Sat2CapOptions(shards=str(shards), out=str(root / "sat2cap.lance")))
    assert report.imported == 6 and report.rejected == 0

    se = root / "SoundingEarth"  # metadata CSV, satellite JPEGs, recordings named by key
    (se / "images").mkdir(parents=True)
    (se / "mp3").mkdir()
    rows = ["key,latitude,longitude,description"]
    rng = np.random.default_rng(0)
    for i, key in enumerate(keys(4, 2, "se")):
        rows.append(f"{key},{51 + i / 10},{-0.1 * i},birdsong by a road")
        (se / "images" / f"{key}.jpg").write_bytes(jpeg(200 + i))
        t = np.arange(44100) / 44100  # 1 s at 44.1 kHz: resampled, repeat-padded to 10 s
        wave = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)
        buf = io.BytesIO()
        import soundfile

        soundfile.write(buf, wave.astype("float32"), 44100, format="FLAC")
        (se / "mp3" / f"{key}.flac").write_bytes(buf.getvalue())
    (se / "metadata.csv").write_text("\n".join(rows) + "\n")
    report = import_soundingearth(
        SoundingEarthOptions(
            metadata=str(se / "metadata.csv"),
            images=str(se / "images"),
            audio=str(se / "mp3"),
            out=str(root / "soundingearth.lance"),
        )
    )
    assert report.imported == 6 and report.rejected == 0
    return root


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """ViT-B-32.pt (an open_clip CLIP state dict in fp16, random weights) and an HTSAT-tiny
    checkpoint in laion_clap's layout, under the names the recipes use."""
    import open_clip

    from geobind_audio import paper_config

    root = tmp_path_factory.mktemp("paper-weights")
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu")  # random init: no pretrained tag
    torch.save({k: v.half() for k, v in clip.state_dict().items()}, root / "ViT-B-32.pt")
    audio = geobind.build_encoder("audio", paper_config()).net
    state = {f"module.{k}": v for k, v in audio.state_dict().items()}
    state["module.text_branch.embeddings.word_embeddings.weight"] = torch.zeros(8, 4)
    state["module.logit_scale_a"] = torch.tensor(2.66)
    torch.save({"epoch": 45, "state_dict": state}, root / "630k-audioset-best.pt")
    return root


def overrides(space: Path, data_dir: Path, weights_dir: Path, stages=STAGES) -> list[str]:
    out = [f"space={space}", f"data_dir={data_dir}", f"weights_dir={weights_dir}"]
    for name in stages:
        if name != "clip":
            out += [
                f"stages.{name}.max_steps=2",
                f"stages.{name}.batch_size=2",
                f"stages.{name}.workers=0",
            ]  # validation: once, at the end
    return out


def test_paper_recipes_hold_the_paper_settings(tmp_path):
    recipe = load_recipe(PAPER / "paper.yaml", [f"weights_dir={tmp_path}", "data_dir=/data"])
    assert list(recipe.stages) == ["clip", "anchor", "audio"]
    clip, anchor, audio = (recipe.stages[name] for name in STAGES)
    assert clip.max_steps == 0 and not clip.data
    assert clip.student.weights == clip.teacher.weights == f"{tmp_path}/ViT-B-32.pt"
    assert anchor.data == "/data/sat2cap.lance" and audio.data == "/data/soundingearth.lance"
    assert anchor.student.config["arch"] == "ViT-B-32-quickgelu"
    assert (anchor.student.weights, anchor.teacher.weights) == ("space:ground", "space")
    for stage, batch in ((anchor, 512), (audio, 256)):
        assert (
            stage.lr,
            stage.weight_decay,
            stage.betas,
            stage.eps,
            stage.temperature,
            stage.learn_temperature,
            stage.batch_size,
        ) == (5e-5, 0.2, [0.9, 0.98], 1e-6, 0.07, True, batch)
    from geobind_audio import paper_config

    assert (
        geobind.make_config(geobind.get_registry().modality("audio").config, audio.student.config)
        == paper_config()
    )
    for name in STAGES:  # each stage file is the stage paper.yaml runs
        alone = load_recipe(PAPER / f"{name}.yaml", [f"weights_dir={tmp_path}", "data_dir=/data"])
        assert alone.stages == {name: recipe.stages[name]}


def test_only_a_zero_step_stage_may_omit_its_data(tmp_path):
    with pytest.raises(ConfigError, match=r"'data' \(a Lance pair dataset\) is required"):
        load_recipe(PAPER / "clip.yaml", ["stages.clip.max_steps=null"])
    with pytest.raises(ConfigError, match="max_steps must be >= 0"):
        load_recipe(PAPER / "clip.yaml", ["stages.clip.max_steps=-1"])


def test_a_zero_step_stage_stores_both_pretrained_sides_without_data(tmp_path):
    import open_clip

    from geobind.testing import TINY_VISION

    torch.manual_seed(3)
    vision = {k: v for k, v in TINY_VISION.items() if k != "embed_dim"}
    text = dict(context_length=16, width=64, heads=2, layers=1)
    clip = open_clip.CLIP(TINY_VISION["embed_dim"], vision_cfg=vision, text_cfg=text)
    geobind.save_state_dict(tmp_path / "clip.safetensors", clip.state_dict())
    tiny_text = {"embed_dim": TINY_VISION["embed_dim"], **text}
    recipe = load_recipe(
        PAPER / "clip.yaml",
        [
            f"space={tmp_path / 'space'}",
            f"weights_dir={tmp_path}",
            f"stages.clip.student.weights={tmp_path}/clip.safetensors",
            f"stages.clip.teacher.weights={tmp_path}/clip.safetensors",
            f"stages.clip.student.config={json.dumps({**tiny_text, 'arch': None})}",
            f"stages.clip.teacher.config={json.dumps({**TINY_VISION, 'arch': None})}",
        ],
    )
    assert train(recipe, say=lambda line: None) == {"clip": {"steps": 0}}
    space = load_space(tmp_path / "space")
    assert space.entry("text").aligned_to["sha256"] == space.entry("ground").sha256
    stored = geobind.read_state_dict(space.weights_path("ground"))
    assert all(torch.equal(stored[k], v) for k, v in clip.visual.state_dict().items())
    assert not (tmp_path / "space" / "checkpoints" / "clip").exists()


@pytest.mark.slow
def test_paper_stages_run_for_two_steps_at_full_size(tmp_path, data_dir, weights_dir):
    space_dir = tmp_path / "space"
    said: list[str] = []
    for name in STAGES:  # each per-stage recipe, in the order paper.yaml gives
        recipe = load_recipe(
            PAPER / f"{name}.yaml", overrides(space_dir, data_dir, weights_dir, [name])
        )
        metrics = train(recipe, say=said.append)
        assert metrics[name]["steps"] == (0 if name == "clip" else 2)
    space = load_space(space_dir)  # verified weights and consistent alignment
    assert list(space.entries) == ["ground", "text", "satellite", "audio"]
    entries = space.entries
    assert entries["text"].aligned_to == {"modality": "ground", "sha256": entries["ground"].sha256}
    assert entries["ground"].aligned_to == {"modality": "text", "sha256": entries["text"].sha256}
    assert entries["satellite"].aligned_to["sha256"] == entries["ground"].sha256
    assert entries["audio"].aligned_to["sha256"] == entries["satellite"].sha256
    for name in ("ground", "satellite", "text"):
        assert entries[name].config["arch"] == "ViT-B-32-quickgelu"
        assert entries[name].config["embed_dim"] == 512
    assert entries["audio"].config["sample_rate"] == 48000

    # the 0-step stage stored CLIP's towers unchanged; the anchor started from CLIP's and moved
    checkpoint = torch.load(weights_dir / "ViT-B-32.pt", weights_only=True)
    ground = geobind.read_state_dict(space.weights_path("ground"))
    torch.testing.assert_close(ground["proj"], checkpoint["visual.proj"].float())
    text = geobind.read_state_dict(space.weights_path("text"))
    torch.testing.assert_close(text["text_projection"], checkpoint["text_projection"].float())
    satellite = geobind.read_state_dict(space.weights_path("satellite"))
    assert not torch.equal(satellite["proj"], ground["proj"])
    assert (satellite["proj"] - ground["proj"]).abs().max() < 1e-2  # two small steps from it

    for name in ("anchor", "audio"):
        log = [
            json.loads(line)
            for line in (space_dir / "logs" / f"{name}.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in log] == [1, 2, 2] and "val_s2t_R@1" in log[-1]
        assert all(np.isfinite(r["loss"]) for r in log[:2])

    # paper.yaml is exactly these stages: with the same overrides there is nothing left to do
    said.clear()
    whole = load_recipe(PAPER / "paper.yaml", overrides(space_dir, data_dir, weights_dir))
    assert train(whole, say=said.append) == {}
    assert len(said) == 3 and all("skipped" in line for line in said)


def test_gpu_benchmark_runs_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "gpu_stage", Path(__file__).parents[1] / "benchmarks" / "gpu_stage.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    arch = tmp_path / "tiny-vit.json"  # the ViT-B/32 run is the default; a CPU test uses this
    arch.write_text(
        json.dumps(
            {
                "embed_dim": 32,
                "quick_gelu": True,
                "vision_cfg": {
                    "image_size": 32,
                    "layers": 2,
                    "width": 64,
                    "patch_size": 8,
                    "head_width": 32,
                },
            }
        )
    )
    result = bench.main(
        [
            "--device",
            "cpu",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "2",
            "--arch",
            str(arch),
            "--peak-tflops",
            "1",
        ]
    )
    assert "anchor step on cpu, batch 2" in capsys.readouterr().out
    assert result["samples_per_s"] > 0 and result["gflops_per_sample"] > 0
    assert result["fraction_of_peak"] == pytest.approx(
        result["samples_per_s"] * result["gflops_per_sample"] / 1e3
    )
