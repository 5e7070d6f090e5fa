"""The stage trainer: loss, frozen teacher, recipes, cache, NaN, exact resume, two processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import geobind
from geobind.data import open_pairs, write_pairs
from geobind.data.reader import split_rows
from geobind.errors import ConfigError
from geobind.plugins import PluginError
from geobind.space import Space, load_space
from geobind.testing import TINY_VISION, pair_rows, png_bytes
from geobind.train import load_recipe, train
from geobind.train.cache import cache_dir, teacher_embeddings
from geobind.train.loss import MAX_LOGIT_SCALE, ContrastiveLoss
from geobind.train.stage import StageDiverged, StageModel

TINY_TEXT = dict(embed_dim=32, context_length=16, width=64, heads=2, layers=1)

RECIPE = """
space: {space}
data_dir: {data}
stages:
  clip:
    data: ${{data_dir}}/pairs.lance
    student: {{modality: text, config: {text}}}
    teacher: {{modality: ground, config: {vision}, train: true}}
    batch_size: 8
    epochs: 1
    checkpoint_every: 2
  anchor:
    data: ${{data_dir}}/pairs.lance
    student: {{modality: satellite, config: {vision}, weights: "space:ground"}}
    teacher: {{modality: ground, weights: space}}
    batch_size: 8
    epochs: {anchor_epochs}
    lr: 1e-3
    checkpoint_every: {ckpt}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    n = 48
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(500 + i) for i in range(n)],
            "text": [f"place {i % 7} by the road" for i in range(n)],
        }
    )
    write_pairs(
        root / "pairs.lance", rows, {"satellite": "binary", "ground": "binary", "text": "string"}
    )
    return root


def write_recipe(
    path: Path, space: Path, data: Path, anchor_epochs: int = 1, ckpt: int = 2, extra: str = ""
) -> Path:
    path.write_text(
        RECIPE.format(
            space=space,
            data=data,
            text=TINY_TEXT,
            vision=TINY_VISION,
            anchor_epochs=anchor_epochs,
            ckpt=ckpt,
        )
        + extra
    )
    return path


# -- loss ---------------------------------------------------------------------------------
def test_loss_matches_open_clip_and_the_formula():
    from open_clip.loss import ClipLoss

    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(12, 16), dim=-1), F.normalize(torch.randn(12, 16), dim=-1)
    loss = ContrastiveLoss(temperature=0.05)
    ours = loss(a, b)
    torch.testing.assert_close(ours, ClipLoss()(a, b, torch.tensor(1 / 0.05)))
    logits, labels = a @ b.T / 0.05, torch.arange(12)
    by_hand = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(ours, by_hand)


def test_a_bank_of_the_batch_alone_is_the_clip_loss_and_more_negatives_cost_more():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(12, 16), dim=-1), F.normalize(torch.randn(12, 16), dim=-1)
    loss = ContrastiveLoss(temperature=0.05)
    torch.testing.assert_close(loss(a, b, bank=b, targets=torch.arange(12)), loss(a, b))
    # a bank row close to student 0 is a hard negative the batch alone never shows
    near = F.normalize(a[:1] + 0.05 * torch.randn(1, 16), dim=-1)
    harder = loss(a, b, bank=torch.cat([b, near]), targets=torch.arange(12))
    assert harder > loss(a, b, bank=b, targets=torch.arange(12))
    by_hand = (
        F.cross_entropy(a @ torch.cat([b, near]).T / 0.05, torch.arange(12))
        + F.cross_entropy(b @ a.T / 0.05, torch.arange(12))
    ) / 2
    torch.testing.assert_close(harder, by_hand)


def test_distill_adds_its_weight_times_one_minus_cosine_to_each_kind_of_negatives():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(12, 16), dim=-1), F.normalize(torch.randn(12, 16), dim=-1)
    plain, distilled = ContrastiveLoss(temperature=0.05), ContrastiveLoss(0.05, distill=2.5)
    gap = 2.5 * (1 - F.cosine_similarity(a, b)).mean()
    torch.testing.assert_close(distilled(a, b), plain(a, b) + gap)
    bank, targets = torch.cat([b, a[:3]]), torch.arange(12)
    torch.testing.assert_close(
        distilled(a, b, bank=bank, targets=targets), plain(a, b, bank=bank, targets=targets) + gap
    )
    # a student already on its teacher pays nothing more
    torch.testing.assert_close(distilled(b, b), plain(b, b))


def test_temperature_starts_at_007_learns_and_is_clamped_at_ln100():
    loss = ContrastiveLoss()
    assert loss.temperature == pytest.approx(0.07)
    assert loss.logit_scale.requires_grad
    with torch.no_grad():
        loss.logit_scale.fill_(9.0)
    loss.clamp()
    assert float(loss.logit_scale.detach()) == pytest.approx(MAX_LOGIT_SCALE)
    assert loss.temperature == pytest.approx(0.01)


def test_frozen_teacher_stays_in_eval_without_gradients():
    student = geobind.build_encoder("satellite", TINY_VISION)
    teacher = geobind.build_encoder("ground", TINY_VISION).freeze()
    model = StageModel(student, teacher, ContrastiveLoss())
    model.train()
    teacher.train()
    assert student.training and not teacher.training
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


# -- recipes ------------------------------------------------------------------------------
def test_unknown_recipe_key_names_it_and_the_valid_keys(tmp_path, data_dir):
    path = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir)
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'stages.anchor.lrr'.*valid keys: data, "
        r"student, teacher, epochs, max_steps, batch_size, lr",
    ):
        load_recipe(path, ["stages.anchor.lrr=0.1"])
    with pytest.raises(
        ConfigError,
        match=r"'stages.clip.student.modalty'.*valid keys: modality, "
        r"config, weights, train",
    ):
        load_recipe(path, ["stages.clip.student.modalty=text"])
    with pytest.raises(ConfigError, match=r"stages.anchor.lr.*could not be converted"):
        load_recipe(path, ["stages.anchor.lr=fast"])


def test_modality_of_a_missing_plugin_names_the_distribution(tmp_path, data_dir, monkeypatch):
    from geobind import plugins

    path = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir)
    text = path.read_text().replace("modality: text", "modality: audio")
    path.write_text(text)
    monkeypatch.setenv(plugins.ALLOW_ENV, "geobind-ground,geobind-text")
    plugins.reset_registry()
    try:
        with pytest.raises(PluginError, match=r"modality 'audio'.*pip install geobind-audio"):
            load_recipe(path)
    finally:
        plugins.reset_registry()


def test_negatives_are_batch_or_a_bank_of_a_frozen_teacher(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(data_dir.parent)  # the data named relative to the folder trained from
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "space", Path(data_dir.name))
    with pytest.raises(ConfigError, match="negatives must be 'batch' or 'bank', got 'queue'"):
        load_recipe(recipe, ["stages.anchor.negatives=queue"])
    with pytest.raises(ConfigError, match="stage 'clip': negatives 'bank' needs a frozen"):
        load_recipe(recipe, ["stages.clip.negatives=bank"])
    plan = load_recipe(recipe, ["stages.anchor.negatives=bank"])
    train(plan, say=lambda s: None)
    entry = load_space(tmp_path / "space").entry("satellite")
    assert entry.recipe["negatives"] == "bank"
    # the space records where the data lay, so the floor can refit from any folder later
    assert Path(entry.recipe["data"]).is_absolute() and Path(entry.recipe["data"]).is_dir()


def test_distill_pulls_the_student_onto_its_frozen_teacher(tmp_path, data_dir):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir, anchor_epochs=8)
    with pytest.raises(ConfigError, match=r"stages.anchor.distill must be >= 0"):
        load_recipe(recipe, ["stages.anchor.distill=-1"])
    with pytest.raises(ConfigError, match="stage 'clip': distill needs a frozen teacher"):
        load_recipe(recipe, ["stages.clip.distill=1"])
    plan = load_recipe(recipe, ["stages.anchor.lr=3e-3"])
    train(plan, say=lambda s: None)
    space = load_space(tmp_path / "space")
    tiles = [png_bytes(i) for i in range(48)]
    teacher = space.embed("ground", [png_bytes(500 + i) for i in range(48)])
    cosine = {0.0: F.cosine_similarity(space.embed("satellite", tiles), teacher).mean()}
    plan.stages["anchor"].distill = 20.0  # a new recipe: the anchor trains again
    train(plan, say=lambda s: None)
    space = load_space(tmp_path / "space")
    assert space.entry("satellite").recipe["distill"] == 20.0
    cosine[20.0] = F.cosine_similarity(space.embed("satellite", tiles), teacher).mean()
    assert 1 - cosine[20.0] < 0.7 * (1 - cosine[0.0]), cosine  # 0.08 against 0.14


def test_a_stage_stored_before_the_distill_key_keeps_its_recipe_hash():
    import dataclasses
    import hashlib

    from geobind.train.recipe import StageRecipe
    from geobind.train.stage import recipe_hash

    stage = StageRecipe(data="pairs.lance", epochs=3)
    # the record as hashed before the stage's distill and the sides' own lr existed
    before = {k: v for k, v in dataclasses.asdict(stage).items() if k != "distill"}
    for side in ("student", "teacher"):
        before[side] = {k: v for k, v in before[side].items() if k != "lr"}
    blob = json.dumps(before, sort_keys=True).encode()
    assert recipe_hash(stage) == hashlib.sha256(blob).hexdigest()[:16]
    stage.distill = 1.0
    assert recipe_hash(stage) != hashlib.sha256(blob).hexdigest()[:16]
    stage.distill = 0.0
    stage.teacher.lr = 1e-4
    assert recipe_hash(stage) != hashlib.sha256(blob).hexdigest()[:16]


def test_a_side_learns_at_its_own_rate(tmp_path, data_dir):
    from geobind.space import Space
    from geobind.train.distributed import Dist
    from geobind.train.stage import StageRun

    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir)
    with pytest.raises(ConfigError, match=r"stages.clip.teacher.lr must be > 0, got -0.1"):
        load_recipe(recipe, ["stages.clip.teacher.lr=-0.1"])
    with pytest.raises(ConfigError, match="teacher.lr is set, but the teacher is frozen"):
        load_recipe(recipe, ["stages.anchor.teacher.lr=1e-4"])
    plan = load_recipe(recipe, ["stages.clip.lr=1e-3", "stages.clip.teacher.lr=2.5e-4"])
    run = StageRun("clip", plan.stages["clip"], Space(tmp_path / "space"), Dist())
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    run.train_step(next(iter(run.batches())))
    # Adam's first step moves every weight with a gradient by about its rate (times the
    # warm-up's first factor): the ground tower's a quarter of the text tower's
    moved = {
        side: max(
            float((p.detach() - before[n]).abs().max())
            for n, p in run.model.named_parameters()
            if n.startswith(side + ".")
        )
        for side in ("student", "teacher")
    }
    assert moved["teacher"] / moved["student"] == pytest.approx(0.25, rel=0.05), moved


def test_a_stage_moved_with_its_data_is_the_same_recipe_and_rewritten_data_is_not(
    tmp_path, data_dir
):
    import shutil

    from geobind.train.run import stage_done
    from geobind.train.stage import _hash, recipe_hash

    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir)
    plan = load_recipe(recipe)
    train(plan, say=lambda s: None)
    stage = plan.stages["anchor"]
    moved = tmp_path / "moved"
    shutil.copytree(data_dir, moved)
    there = load_recipe(recipe, [f"data_dir={moved}"]).stages["anchor"]
    assert there.data != stage.data and recipe_hash(there) == recipe_hash(stage)
    space = Space(tmp_path / "space")
    assert stage_done(space, "anchor", there)  # a moved project is not trained again
    # a space stored when the data counted by its path still counts as done
    manifest = json.loads((space.path / "manifest.json").read_text())
    manifest["modalities"]["satellite"]["recipe"]["hash"] = _hash(stage, stage.data)
    (space.path / "manifest.json").write_text(json.dumps(manifest))
    assert stage_done(Space(tmp_path / "space"), "anchor", stage)
    # other data written at the same path is another recipe
    rows = pair_rows(
        {
            "satellite": [png_bytes(i) for i in range(9)],
            "ground": [png_bytes(i) for i in range(9)],
            "text": ["x"] * 9,
        }
    )
    write_pairs(
        moved / "pairs.lance",
        rows,
        {"satellite": "binary", "ground": "binary", "text": "string"},
        mode="overwrite",
    )
    assert recipe_hash(there) != recipe_hash(stage)
    assert not stage_done(Space(tmp_path / "space"), "anchor", there)


def test_new_weights_under_the_same_path_make_a_stage_another_recipe(tmp_path):
    from geobind.train.recipe import SideRecipe, StageRecipe
    from geobind.train.stage import recipe_hash

    start = tmp_path / "tower.safetensors"
    start.write_bytes(b"first weights")
    stage = StageRecipe(
        data=str(tmp_path / "none.lance"),
        student=SideRecipe(modality="satellite", weights=str(start)),
        teacher=SideRecipe(modality="ground", weights="space"),
    )
    before = recipe_hash(stage)
    assert recipe_hash(stage) == before  # the same file: the same recipe
    start.write_bytes(b"other weights, written by make pretrain")
    assert recipe_hash(stage) != before  # skipped as done, it would keep the old tower
    start.write_bytes(b"first weights")
    assert recipe_hash(stage) == before
    # only a file counts: a stage starting from the space (or nothing) hashes as before
    import hashlib

    from geobind.train.stage import weights_digests

    assert weights_digests(stage) == {"student": hashlib.sha256(b"first weights").hexdigest()}
    assert weights_digests(dataclasses.replace(stage, student=SideRecipe("satellite"))) == {}


def test_an_included_stage_can_change_some_settings(tmp_path, data_dir):
    write_recipe(tmp_path / "base.yaml", tmp_path / "space", data_dir)
    (tmp_path / "anchor.yaml").write_text(
        "stages:\n  anchor:\n"
        + "\n".join(
            "    " + line
            for line in (tmp_path / "base.yaml").read_text().split("  anchor:\n")[1].splitlines()
        )
        + "\n"
    )
    (tmp_path / "long.yaml").write_text(
        f"space: {tmp_path / 'long'}\ndata_dir: {data_dir}\nstages:\n"
        "  anchor: {include: anchor.yaml, epochs: 7, student: {config: {layers: 2}}}\n"
    )
    plain, long = load_recipe(tmp_path / "base.yaml"), load_recipe(tmp_path / "long.yaml")
    stage = long.stages["anchor"]
    assert stage.epochs == 7 and plain.stages["anchor"].epochs == 1
    assert stage.student.config["layers"] == 2  # merged into the included config...
    assert stage.student.config["width"] == plain.stages["anchor"].student.config["width"]
    assert stage.lr == plain.stages["anchor"].lr  # ...and everything else kept
    (tmp_path / "bad.yaml").write_text(
        f"space: {tmp_path / 'bad'}\nstages:\n  anchor: {{include: anchor.yaml, epoch: 7}}\n"
    )
    with pytest.raises(ConfigError, match="epoch"):
        load_recipe(tmp_path / "bad.yaml")


def test_stage_files_are_included_and_overrides_apply(tmp_path, data_dir):
    whole = write_recipe(tmp_path / "stages.yaml", tmp_path / "space", data_dir)
    (tmp_path / "sequence.yaml").write_text(
        f"space: {tmp_path / 'other'}\ndata_dir: {data_dir}\nstages:\n  anchor: anchor.yaml\n"
    )
    anchor_only = load_recipe(whole).stages["anchor"]
    (tmp_path / "anchor.yaml").write_text(
        "stages:\n  anchor:\n"
        + "\n".join(
            "    " + line for line in whole.read_text().split("  anchor:\n")[1].splitlines()
        )
        + "\n"
    )
    recipe = load_recipe(tmp_path / "sequence.yaml", ["stages.anchor.epochs=3"])
    assert list(recipe.stages) == ["anchor"]
    assert recipe.stages["anchor"].data == f"{data_dir}/pairs.lance"
    assert recipe.stages["anchor"].epochs == 3 and anchor_only.epochs == 1


# -- training -----------------------------------------------------------------------------
def test_stages_run_in_recipe_order_and_make_a_consistent_space(tmp_path, data_dir):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir))
    said: list[str] = []
    metrics = train(recipe, say=said.append)
    assert [line.split(":")[0] for line in said] == ["stage clip", "stage anchor"]
    space = Space(tmp_path / "space")
    assert list(space.entries) == ["ground", "text", "satellite"]
    assert space.entry("satellite").aligned_to["modality"] == "ground"
    assert space.entry("satellite").aligned_to["sha256"] == space.entry("ground").sha256
    assert space.entry("text").aligned_to["sha256"] == space.entry("ground").sha256
    space.check()
    assert metrics["anchor"]["steps"] == 3 and "val_s2t_R@10" in metrics["anchor"]
    log = (tmp_path / "space" / "logs" / "anchor.jsonl").read_text().splitlines()
    assert len(log) == 4 and '"temperature"' in log[0]
    assert not any((tmp_path / "space" / "checkpoints").iterdir())

    said.clear()
    assert train(recipe, say=said.append) == {}  # done stages are not trained again
    assert all("skipped" in line for line in said)


def test_the_frozen_anchor_stage_leaves_the_teacher_untouched(tmp_path, data_dir):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir))
    recipe.stages["anchor"].enabled = False
    train(recipe, say=lambda s: None)
    before = Space(tmp_path / "space").weights_path("ground").read_bytes()
    recipe.stages["anchor"].enabled = True
    train(recipe, say=lambda s: None)
    assert Space(tmp_path / "space").weights_path("ground").read_bytes() == before


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    tmp_path, data_dir, monkeypatch
):
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir, anchor_epochs=4, ckpt=2)
    )
    recipe.stages["clip"].enabled = True
    train(
        recipe.__class__(
            space=recipe.space, data_dir=recipe.data_dir, stages={"clip": recipe.stages["clip"]}
        ),
        say=lambda s: None,
    )
    calls = {"n": 0}
    original = ContrastiveLoss.forward

    def poisoned(self, a, b):
        calls["n"] += 1
        loss = original(self, a, b)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(ContrastiveLoss, "forward", poisoned)
    with pytest.raises(
        StageDiverged,
        match=r"stage 'anchor': loss is nan at step 5.*"
        r"checkpoints/anchor/step-0000004",
    ):
        train(recipe, say=lambda s: None)
    assert (tmp_path / "space" / "checkpoints" / "anchor" / "step-0000004" / "state.pt").exists()
    assert not Space(tmp_path / "space").has("satellite")


def _train_cli(recipe: Path) -> subprocess.Popen:
    """``geobind train RECIPE`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "geobind.cli", "train", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_once(proc: subprocess.Popen, folder: Path, ready: Callable[[Path], bool]) -> None:
    """SIGKILL ``proc`` as soon as one of its checkpoints in ``folder`` is ``ready``."""
    deadline = time.time() + 300
    while not any(ready(p) for p in folder.glob("step-*")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_resume_after_sigkill_gives_the_weights_of_an_uninterrupted_run(tmp_path, data_dir):
    def run(space: Path) -> subprocess.Popen:
        return _train_cli(
            write_recipe(tmp_path / f"{space.name}.yaml", space, data_dir, anchor_epochs=12, ckpt=3)
        )

    assert run(tmp_path / "straight").wait(timeout=300) == 0

    proc = run(tmp_path / "killed")
    _kill_once(
        proc, tmp_path / "killed" / "checkpoints" / "anchor", lambda p: p.name >= "step-0000006"
    )
    assert not Space(tmp_path / "killed").has("satellite")
    resumed = run(tmp_path / "killed")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]

    for name in ("satellite", "ground", "text"):
        straight = Space(tmp_path / "straight").weights_path(name).read_bytes()
        assert Space(tmp_path / "killed").weights_path(name).read_bytes() == straight, name


def test_a_stage_resumed_mid_epoch_with_a_data_worker_draws_what_it_would_have(tmp_path, data_dir):
    # a data worker starts its random stream afresh in every run: crops drawn from it would
    # differ after a resume unless each batch's draws are seeded from the batch itself
    def run(space: Path) -> subprocess.Popen:
        extra = "    workers: 1\n"  # the anchor stage's: its tiles are cropped at random
        recipe = tmp_path / f"{space.name}.yaml"
        return _train_cli(write_recipe(recipe, space, data_dir, 3, ckpt=7, extra=extra))

    assert run(tmp_path / "straight").wait(timeout=300) == 0
    proc = run(tmp_path / "killed")
    folder = tmp_path / "killed" / "checkpoints" / "anchor"
    _kill_once(proc, folder, lambda p: True)
    steps = [int(p.name.split("-")[1]) for p in folder.glob("step-*")]
    rows = len(split_rows(open_pairs(data_dir / "pairs.lance"), "train"))
    assert all(step % (rows // 8) for step in steps)  # every checkpoint is mid-epoch
    resumed = run(tmp_path / "killed")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    straight = Space(tmp_path / "straight").weights_path("satellite").read_bytes()
    assert Space(tmp_path / "killed").weights_path("satellite").read_bytes() == straight


def test_the_trainer_runs_under_torchrun_and_only_rank_0_writes(tmp_path, data_dir):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "space", data_dir)
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "geobind.cli",
            "train",
            str(recipe),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("stage anchor:") == 1  # rank 0 alone reports and writes
    space = load_space(tmp_path / "space")
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "space" / "logs" / "anchor.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) + 1  # + the final record
    assert space.entry("satellite").recipe["batch_size"] == 8


# -- the frozen-embedding cache -----------------------------------------------------------
def test_teacher_embeddings_are_cached_and_invalidated(tmp_path, monkeypatch):
    rows = pair_rows({"satellite": [png_bytes(i) for i in range(10)]})
    uri = str(tmp_path / "d.lance")
    write_pairs(uri, rows, {"satellite": "binary"})
    teacher = geobind.build_encoder("satellite", TINY_VISION).freeze()
    calls = {"n": 0}
    forward = type(teacher).forward

    def counting(self, batch):
        calls["n"] += 1
        return forward(self, batch)

    monkeypatch.setattr(type(teacher), "forward", counting)
    first = teacher_embeddings(uri, teacher, "sha-a")
    assert calls["n"] == 1 and first.shape == (10, TINY_VISION["embed_dim"])
    torch.testing.assert_close(teacher_embeddings(uri, teacher, "sha-a"), first)
    assert calls["n"] == 1  # read from Lance, the teacher did not run

    teacher_embeddings(uri, teacher, "sha-b")  # other teacher weights
    assert calls["n"] == 2
    write_pairs(
        uri, pair_rows({"satellite": [png_bytes(99)]}), {"satellite": "binary"}, mode="append"
    )  # a new dataset version
    assert teacher_embeddings(uri, teacher, "sha-b").shape[0] == 11 and calls["n"] == 3
    assert len(list(cache_dir(uri).glob("satellite-*.lance"))) == 1  # stale tables removed


# -- two processes ------------------------------------------------------------------------
@pytest.mark.parametrize("negatives", ["batch", "bank"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, negatives):
    from dist_worker import stage_model

    torch.manual_seed(1)
    batch = {
        "pixels": torch.randn(8, 3, 32, 32),
        "teacher": F.normalize(torch.randn(8, TINY_VISION["embed_dim"]), dim=-1),
    }
    if negatives == "bank":  # the batch's teachers sit among 4 other rows' in the bank
        extra = F.normalize(torch.randn(4, TINY_VISION["embed_dim"]), dim=-1)
        batch["bank"] = torch.cat([extra[:2], batch["teacher"], extra[2:]])
        batch["targets"] = torch.arange(8) + 2
    torch.save(batch, tmp_path / "batch.pt")
    model = stage_model()
    loss = model(
        {"satellite": batch["pixels"]}, batch["teacher"], batch.get("bank"), batch.get("targets")
    )
    loss.backward()
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            str(Path(__file__).with_name("dist_worker.py")),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        out = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        torch.testing.assert_close(out["loss"], loss.detach())
        for name, p in model.named_parameters():
            torch.testing.assert_close(
                out["grads"][name],
                p.grad,
                rtol=1e-4,
                atol=1e-6,
                msg=lambda m, name=name: f"{name}: {m}",
            )
