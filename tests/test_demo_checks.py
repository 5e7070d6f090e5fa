"""The demo's stage loop: after each stage, every earlier encoder must be unchanged."""

from __future__ import annotations

import pytest
import torch

from geobind import demo
from geobind.data.pairs import read_values
from geobind.errors import GeobindError
from geobind.space import load_space
from geobind.testing import train_tiny_space
from geobind.train import load_recipe


def _plan(tmp_path, data):
    """The tiny CLIP + anchor recipe, aimed at a fresh space."""
    train_tiny_space(tmp_path / "first", data)
    space = tmp_path / "space"
    return load_recipe(tmp_path / "first-recipe.yaml", [f"space={space}"]), space


def test_the_stage_loop_embeds_every_place_and_finds_frozen_encoders_unchanged(
    tmp_path, tiny_pair_dataset
):
    plan, space = _plan(tmp_path, tiny_pair_dataset)
    records, embeddings = demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)
    assert [r["stage"] for r in records] == ["clip", "anchor"]
    assert records[1]["unchanged"] == ["ground", "text"]
    rows = tiny_pair_dataset.count_rows()
    assert {m: len(e) for m, e in embeddings.items()} == {m: rows for m in embeddings}
    values = read_values(tiny_pair_dataset.dataset, "ground", list(range(rows)))
    again = load_space(space).embed("ground", values)
    assert torch.equal(embeddings["ground"], again)


def test_a_stage_that_moves_a_frozen_encoder_stops_the_demo(
    tmp_path, tiny_pair_dataset, monkeypatch
):
    plan, space = _plan(tmp_path, tiny_pair_dataset)
    real = demo.train

    def train_and_nudge_the_ground_tower(plan, say):
        out = real(plan, say=say)
        if "anchor" in plan.stages:  # a buggy stage that also moves the frozen ground tower
            s = load_space(space)
            tower = s.encoder("ground")
            with torch.no_grad():
                next(tower.net.parameters()).add_(1e-3)
            s.put(tower, "clip", s.entry("ground").aligned_to)
        return out

    monkeypatch.setattr(demo, "train", train_and_nudge_the_ground_tower)
    # the space itself refuses first (text was aligned to the old ground weights); either
    # way the demo stops with an error that names the moved encoder
    with pytest.raises(GeobindError, match="changed the embeddings of ground|aligned to 'ground'"):
        demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)


def test_a_frozen_encoder_that_embeds_differently_stops_the_demo(
    tmp_path, tiny_pair_dataset, monkeypatch
):
    """Same weights, other bits (say, a changed input path): the re-embedded sample says so."""
    plan, _ = _plan(tmp_path, tiny_pair_dataset)
    real = demo.embed_columns

    def embed(space, data, rows=None, only=None, **kw):
        out = real(space, data, rows=rows, only=only, **kw)
        if rows is not None and "ground" in out:  # the check's sample
            out["ground"] = out["ground"] + 1e-6
        return out

    monkeypatch.setattr(demo, "embed_columns", embed)
    with pytest.raises(GeobindError, match="stage 'anchor' changed the embeddings of ground"):
        demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)


def test_a_second_run_over_a_trained_space_reports_each_stage_without_training(
    tmp_path, tiny_pair_dataset
):
    plan, _ = _plan(tmp_path, tiny_pair_dataset)
    demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)
    lines: list[str] = []
    records, _ = demo.train_stages(plan, str(tiny_pair_dataset), lines.append)
    assert [r["seconds"] for r in records] == [None, None]
    assert sum("(trained by an earlier run)" in line for line in lines) == 2


def test_a_stage_whose_recipe_changed_trains_again_over_an_earlier_run(tmp_path, tiny_pair_dataset):
    # a second run after the anchor's recipe changed: the space holds the earlier anchor, which
    # the stage replaces; it is the stage's own student, not a frozen encoder that moved
    plan, space = _plan(tmp_path, tiny_pair_dataset)
    demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)
    first = load_space(space).entry("satellite").sha256
    changed = load_recipe(
        tmp_path / "first-recipe.yaml", [f"space={space}", "stages.anchor.lr=2e-3"]
    )
    lines: list[str] = []
    records, embeddings = demo.train_stages(changed, str(tiny_pair_dataset), lines.append)
    assert records[0]["seconds"] is None and records[1]["seconds"] is not None
    assert records[1]["unchanged"] == ["ground", "text"]
    again = load_space(space)
    assert again.entry("satellite").sha256 != first
    values = read_values(tiny_pair_dataset.dataset, "satellite", list(range(4)))
    assert torch.equal(embeddings["satellite"][:4], again.embed("satellite", values))


def test_a_stage_trained_again_trains_again_the_stages_that_learned_against_it(
    tmp_path, tiny_pair_dataset
):
    # the CLIP stage's recipe changed: it trains again, and the anchor of the earlier run,
    # aligned to the old ground tower, is stale; its stage must train it again (not skip it,
    # and not stop the demo), and the space ends consistent
    plan, space = _plan(tmp_path, tiny_pair_dataset)
    demo.train_stages(plan, str(tiny_pair_dataset), lambda line: None)
    first = load_space(space).entry("satellite").sha256
    changed = load_recipe(tmp_path / "first-recipe.yaml", [f"space={space}", "stages.clip.lr=2e-3"])
    records, embeddings = demo.train_stages(changed, str(tiny_pair_dataset), lambda line: None)
    assert [r["seconds"] is not None for r in records] == [True, True]
    assert records[1]["unchanged"] == ["ground", "text"]
    again = load_space(space)  # no stale encoder left
    assert again.entry("satellite").sha256 != first
    assert set(embeddings) == {"ground", "text", "satellite"}
    values = read_values(tiny_pair_dataset.dataset, "ground", list(range(4)))
    assert torch.equal(embeddings["ground"][:4], again.embed("ground", values))
