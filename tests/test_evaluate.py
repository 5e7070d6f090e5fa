"""Evaluation: ranks and Recall@k against references, a space's tables, zero-shot, the CLI."""

from __future__ import annotations

import json
import statistics
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geobind.cli import main
from geobind.data.pairs import label_field, pair_schema, to_record_batch
from geobind.errors import GeobindError
from geobind.eval.evaluate import evaluate_space, run_eval
from geobind.eval.retrieval import ranks, recall_metrics
from geobind.eval.zeroshot import (
    TEXT,
    format_zeroshot,
    markdown_zeroshot,
    unlearned_words,
    zeroshot_landcover,
)
from geobind.space import load_space
from geobind.testing import pair_rows, png_bytes, train_tiny_space
from geobind.world import LAND_COVERS
from geobind.world.caption import COVER_WORDS


# -- references ----------------------------------------------------------------------------
def torchmetrics_recall(sims: torch.Tensor, k: int, bonus: float = 0.0) -> float:
    """torchmetrics' RetrievalRecall(top_k=k), query i's one relevant item being gallery i.

    Scores are shifted by +2: torchmetrics counts a relevant item only when its score is > 0,
    which a cosine need not be. ``bonus`` is added to the true match's score (to break ties).
    """
    from torchmetrics.retrieval import RetrievalRecall

    n = len(sims)
    target = torch.eye(n, dtype=torch.bool)
    metric = RetrievalRecall(top_k=k)
    metric.update(
        (sims + 2 + bonus * target).flatten(),
        target.flatten(),
        torch.arange(n)[:, None].expand(n, n).flatten(),
    )
    return float(metric.compute())


def geoclap_reference(query: torch.Tensor, gallery: torch.Tensor, k: int) -> dict[str, float]:
    """GeoCLAP's own code (geoclap/metrics.py, from SoundingEarth): pandas ranks, ``rank < k``.

    Their ``cos_sim[:, i]`` scores every row of their first argument against row i of the
    second: the second argument is the query.
    """
    import pandas as pd

    cos_sim = (gallery @ query.T).numpy()
    rank = [pd.Series(cos_sim[:, i]).rank(ascending=False).iloc[i] for i in range(len(query))]
    df = pd.DataFrame({"rank": rank})
    return {"R": (df["rank"] < k).mean(), "median": df["rank"].median()}


def unit(n: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


# -- (a) ranks and Recall@k ------------------------------------------------------------------
def test_recall_matches_torchmetrics_in_both_conventions():
    query, gallery = unit(120, 16, 0), unit(120, 16, 1)
    gallery = F.normalize(gallery + 0.5 * query, dim=-1)  # a real signal: recalls well above 0
    rank = ranks(query, gallery)
    sims = query @ gallery.T
    ks = (1, 2, 5, 10, 50)
    standard = recall_metrics(rank, ks)
    geoclap = recall_metrics(rank, ks, convention="geoclap")
    assert 0.1 < standard["R@1"] < standard["R@10"] < 1
    for k in ks:
        assert standard[f"R@{k}"] == pytest.approx(torchmetrics_recall(sims, k))
        # rank < k: the true match among the top k - 1, one position fewer
        expected = torchmetrics_recall(sims, k - 1) if k > 1 else 0.0
        assert geoclap[f"R@{k}"] == pytest.approx(expected)
        assert standard[f"chance@{k}"] == k / 120 and geoclap[f"chance@{k}"] == (k - 1) / 120
    assert geoclap["median_rank"] == standard["median_rank"]
    assert torch.equal(ranks(query, gallery, chunk=7), rank)


def test_geoclap_convention_matches_geoclaps_own_code():
    query, gallery = unit(60, 8, 2), unit(60, 8, 3)
    gallery = F.normalize(gallery + query, dim=-1)
    rank = ranks(query, gallery)
    for k in (1, 5, 10):
        ref = geoclap_reference(query, gallery, k)
        assert recall_metrics(rank, [k], "geoclap")[f"R@{k}"] == pytest.approx(ref["R"])
        assert recall_metrics(rank, [k])["median_rank"] == pytest.approx(ref["median"])


def test_a_tied_true_match_takes_a_random_place_among_its_ties():
    gen = torch.Generator().manual_seed(4)
    # entries in {-1, 0, 1}, three dimensions: integer scores, many tied with the true match
    query = torch.randint(-1, 2, (90, 3), generator=gen).float()
    gallery = torch.randint(-1, 2, (90, 3), generator=gen).float()
    sims = query @ gallery.T
    true = sims.diagonal()
    assert int((sims == true[:, None]).sum()) > 3 * 90  # ties beyond the diagonal itself
    rank = ranks(query, gallery)
    above = (sims > true[:, None]).sum(1)
    tied = (sims == true[:, None]).sum(1) - 1
    assert bool(((rank >= above + 1) & (rank <= above + 1 + tied)).all())
    assert bool((rank[tied == 0] == above[tied == 0] + 1).all())  # untied: exact
    assert torch.equal(rank, ranks(query, gallery))  # seeded: the same every time
    for k in (1, 3, 10):
        # between the match placed below all its ties and above all of them (torchmetrics,
        # the scores moved by -0.5 and +0.5: integer scores, so exactly the ties break)
        r = recall_metrics(rank, [k])[f"R@{k}"]
        assert torchmetrics_recall(sims, k, bonus=-0.5) <= r <= torchmetrics_recall(sims, k, 0.5)
    metrics = recall_metrics(rank)
    listed = rank.tolist()
    assert metrics["median_rank"] == statistics.median(listed)  # even count: middle two averaged
    assert metrics["mean_rank"] == pytest.approx(statistics.mean(listed))
    assert "R@100" not in metrics and metrics["gallery_size"] == 90
    # placed at random, on average the match sits in the middle of its ties
    many = torch.stack([ranks(query, gallery, seed=s) for s in range(200)]).float().mean(0)
    assert torch.allclose(many, (above + 1 + tied / 2).float(), atol=0.25 * tied.max().item())


def test_an_encoder_that_collapsed_to_one_output_scores_chance_not_perfect():
    n = 1000
    same = torch.nn.functional.normalize(torch.ones(n, 8), dim=1)  # every input, one embedding
    metrics = recall_metrics(ranks(same, same), [10])
    assert metrics["R@10"] == pytest.approx(metrics["chance@10"], abs=0.015)
    assert 400 < metrics["median_rank"] < 600


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ranks_refuse_embeddings_that_are_not_finite(bad):
    query, gallery = torch.randn(5, 4), torch.randn(5, 4)
    gallery[3, 1] = bad
    with pytest.raises(ValueError, match="1 of 5 gallery rows hold NaN or infinite"):
        ranks(query, gallery)


def test_bad_conventions_and_cut_offs_are_named():
    with pytest.raises(GeobindError, match=r"unknown recall convention 'top'.*standard, geoclap"):
        recall_metrics(torch.tensor([1, 2]), [1], convention="top")
    with pytest.raises(GeobindError, match=r"--ks.*got '1,x'"):
        evaluate_space(None, "nowhere", ks="1,x")


# -- a tiny space ----------------------------------------------------------------------------
def write_dataset(uri: Path, columns: dict, landcover: list | None) -> None:
    """A pair dataset with the given modality columns and, optionally, ``landcover``."""
    import lance

    storages = {c: "string" if c == "text" else "binary" for c in columns}
    rows = pair_rows(columns)
    schema = pair_schema(storages)
    if landcover is not None:
        schema = schema.append(label_field("landcover", LAND_COVERS, COVER_WORDS))
        for row, fractions in zip(rows, landcover):
            row["landcover"] = fractions
    lance.write_dataset(to_record_batch(rows, schema, storages), str(uri), schema=schema)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A space with ground, text and satellite trained for a few steps, and 24 held-out places."""
    root = tmp_path_factory.mktemp("eval")
    n = 24
    fractions = np.random.default_rng(0).dirichlet(np.ones(len(LAND_COVERS)), n).tolist()
    data = root / "places.lance"
    write_dataset(
        data,
        {
            "satellite": [png_bytes(i) for i in range(n)],
            "ground": [png_bytes(300 + i) for i in range(n)],
            "text": [f"a view of {LAND_COVERS[i % 8]}" for i in range(n)],
        },
        fractions,
    )
    return train_tiny_space(root / "space", data), data


def test_evaluate_space_has_every_ordered_pair_and_right_chance(built):
    space, data = built
    result = evaluate_space(load_space(space), str(data), ks=(1, 4, 5, 100))
    assert result["modalities"] == ["ground", "text", "satellite"] and result["places"] == 24
    pairs = {(r["query"], r["gallery"]) for r in result["retrieval"]}
    assert pairs == set(permutations(["ground", "text", "satellite"], 2))
    for row in result["retrieval"]:
        assert row["gallery_size"] == 24 and "R@100" not in row  # k beyond the gallery
        assert row["chance@1"] == 1 / 24 and row["chance@5"] == 5 / 24
        assert 0 <= row["R@1"] <= row["R@4"] <= row["R@5"] <= 1
        assert 1 <= row["median_rank"] <= 24
    geoclap = evaluate_space(space, str(data), ks=(1, 5), convention="geoclap")
    for std, geo in zip(result["retrieval"], geoclap["retrieval"]):
        assert geo["R@5"] == std["R@4"] and geo["R@1"] == 0 and geo["chance@5"] == 4 / 24


def test_run_eval_writes_json_and_markdown(built, tmp_path):
    space, data = built
    said: list[str] = []
    result = run_eval(space, str(data), ks="1,5", out=tmp_path / "out", rows=16, say=said.append)
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["places"] == 16 and len(saved["retrieval"]) == 6
    assert saved["retrieval"] == result["retrieval"]
    markdown = (tmp_path / "out" / "eval.md").read_text()
    assert "| satellite → ground |" in markdown and "## Zero-shot land cover" in markdown
    assert "chance" in said[0] and "Recall per class" in said[0]


def test_run_eval_sets_each_trained_pair_beside_its_floor_and_the_ceiling(built, tmp_path):
    space, data = built
    said: list[str] = []
    result = run_eval(space, str(data), ks="1,5", out=tmp_path / "out", say=said.append)
    floors = {(r["query"], r["gallery"]): r for r in result["floor"]["retrieval"]}
    # the stages trained ground+text and satellite+ground: those four directions have floors
    assert set(floors) == {
        ("ground", "text"),
        ("text", "ground"),
        ("satellite", "ground"),
        ("ground", "satellite"),
    }
    assert all(r["gallery_size"] == 24 and r["fitted_on"] == str(data) for r in floors.values())
    assert result["ceiling"]["label_column"] == "landcover"
    assert result["ceiling"]["R@1"] == 1.0  # every place has its own random fractions
    text = said[0]
    assert "Learned against the floor and the ceiling (R@5)" in text
    line = next(x for x in text.splitlines() if x.startswith("satellite -> ground") and "x" in x)
    learned, floor = result_r5(result["retrieval"]), floors["satellite", "ground"]["R@5"]
    if floor:
        assert f"{learned / floor:.1f}x" in line
        lo, hi = floors["satellite", "ground"]["x_floor_95"]["R@5"]
        assert lo <= learned / floor <= hi and f"{lo:.2f}-" in line
    assert "95%: learned / floor over bootstrap draws" in text
    assert "text -> satellite" in text.split("Learned against")[1]  # emergent: shown, no floor
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["floor"] == result["floor"] and saved["ceiling"] == result["ceiling"]
    quiet = run_eval(space, str(data), ks="1,5", out=tmp_path / "q", say=said.append, floor=False)
    assert quiet["floor"]["retrieval"] == [] and "not asked for" in said[-1]


def result_r5(table: list[dict]) -> float:
    return next(r["R@5"] for r in table if (r["query"], r["gallery"]) == ("satellite", "ground"))


# -- (c) zero-shot ---------------------------------------------------------------------------
class PromptSpace:
    """A stand-in space whose text encoder maps a prompt to the one-hot of its word's class."""

    modalities = [TEXT, "satellite", "audio"]
    path = "prompt-space"

    def embed(self, modality: str, prompts: list[str]) -> torch.Tensor:
        assert modality == TEXT
        owner = {w: i for i, c in enumerate(LAND_COVERS) for w in COVER_WORDS[c]}
        return torch.stack(
            [F.one_hot(torch.tensor(owner[p.split()[-1]]), len(LAND_COVERS)) for p in prompts]
        ).float()


def test_zeroshot_labels_and_argmax_on_a_known_answer(tmp_path):
    truth = [0, 0, 0, 1, 2, 4, 4, 5, 6, 7]
    landcover = [[0.9 if i == t else 0.1 / 7 for i in range(8)] for t in truth]
    write_dataset(tmp_path / "d.lance", {"text": ["x"] * len(truth)}, landcover)
    # satellite tiles sit on their own class's prompts; audio on class 4 whatever the place
    predicted = {"satellite": truth, "audio": [4] * len(truth)}
    embeddings = {m: F.one_hot(torch.tensor(p), 8).float() for m, p in predicted.items()}
    embeddings[TEXT] = torch.zeros(len(truth), 8)  # text is the prompt side, never classified
    result = zeroshot_landcover(PromptSpace(), str(tmp_path / "d.lance"), embeddings=embeddings)
    assert result["skipped"] is None and list(result["modalities"]) == ["satellite", "audio"]
    sat, audio = result["modalities"]["satellite"], result["modalities"]["audio"]
    assert (
        sat["accuracy"] == 1.0
        and sat["confusion"] == np.diag(np.bincount(truth, minlength=8)).tolist()
    )
    assert audio["accuracy"] == pytest.approx(0.2)  # the two forest places
    assert audio["recall"]["forest"] == 1.0 and audio["recall"]["water"] == 0.0
    assert audio["recall"]["rock"] == 0.0 and audio["recall"]["farmland"] is None  # no place
    assert audio["confusion"][0][4] == 3
    assert sat["chance"] == 1 / 8 and sat["majority"] == pytest.approx(0.3)
    assert sat["majority_class"] == "water" and sat["support"]["forest"] == 2


def test_zeroshot_skips_with_a_note_instead_of_failing(tmp_path):
    write_dataset(tmp_path / "plain.lance", {"text": ["x", "y"]}, None)
    result = zeroshot_landcover(PromptSpace(), str(tmp_path / "plain.lance"))
    assert result["modalities"] == {} and "no 'landcover' column" in result["skipped"]

    class NoText(PromptSpace):
        modalities = ["satellite"]

    write_dataset(tmp_path / "d.lance", {"text": ["x"]}, [[1.0] + [0.0] * 7])
    result = zeroshot_landcover(NoText(), str(tmp_path / "d.lance"))
    assert "no 'text' encoder" in result["skipped"]


def test_zeroshot_classes_come_from_the_caller_or_the_dataset(tmp_path):
    import lance
    import pyarrow as pa

    class WetOrDry(PromptSpace):
        def embed(self, modality: str, prompts: list[str]) -> torch.Tensor:
            return torch.tensor([[1.0, 0.0] if "water" in p else [0.0, 1.0] for p in prompts])

    storages = {"text": "string"}
    rows = pair_rows({"text": ["x", "y", "z"]})
    for row, fractions in zip(rows, [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]):
        row["landcover"] = fractions
    schema = pair_schema(storages).append(pa.field("landcover", pa.list_(pa.float32(), 2)))
    lance.write_dataset(
        to_record_batch(rows, schema, storages), str(tmp_path / "u.lance"), schema=schema
    )
    embeddings = {"satellite": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])}
    unnamed = zeroshot_landcover(WetOrDry(), str(tmp_path / "u.lance"), embeddings=embeddings)
    assert unnamed["modalities"] == {} and "names no classes" in unnamed["skipped"]
    named = zeroshot_landcover(
        WetOrDry(),
        str(tmp_path / "u.lance"),
        embeddings=embeddings,
        classes=["wet", "dry"],
        words={"wet": ["water"]},
    )
    assert named["prompts"]["wet"][1] == "a photo of water" and named["prompts"]["dry"][0] == "dry"
    assert named["modalities"]["satellite"]["accuracy"] == pytest.approx(2 / 3)


def test_zeroshot_on_the_tiny_space(built):
    space, data = built
    result = zeroshot_landcover(load_space(space), str(data))
    assert list(result["modalities"]) == ["ground", "satellite"]
    for scores in result["modalities"].values():
        assert 0 <= scores["accuracy"] <= 1 and scores["chance"] == 1 / 8
        assert scores["places"] == 24 and sum(map(sum, scores["confusion"])) == 24


def test_zeroshot_names_class_words_its_text_tower_never_read(built):
    # the tiny space's text tower trained here on captions "a view of <class name>" only
    space, data = built
    result = zeroshot_landcover(load_space(space), str(data))
    read = set(LAND_COVERS) | {"a", "view", "of"}
    unread = {c: [w for w in ws if w not in read] for c, ws in COVER_WORDS.items()}
    assert result["unlearned_words"] == {c: ws for c, ws in unread.items() if ws}
    assert "farmland: farm, fields, crops, cropland;" in format_zeroshot(result)
    assert "untrained tokens" in markdown_zeroshot(result)
    own = {c: [c] for c in LAND_COVERS}  # the words its captions use: nothing to say
    named = zeroshot_landcover(load_space(space), str(data), classes=LAND_COVERS, words=own)
    assert named["unlearned_words"] == {} and "untrained" not in format_zeroshot(named)


def test_unlearned_words_only_for_a_text_tower_trained_here_from_scratch(built, tmp_path):
    from types import SimpleNamespace

    _, data = built
    words = {"farmland": ["fields", "field"], "water": ["water"]}

    class Recorded:
        modalities = [TEXT]

        def __init__(self, **recipe):
            self.recipe = recipe

        def has(self, modality):
            return modality == TEXT

        def entry(self, modality):
            return SimpleNamespace(recipe=self.recipe)

    text, ground = {"modality": TEXT}, {"modality": "ground"}
    trained = Recorded(student=text, teacher=ground, data=str(data))
    # "fields" is no word of "a view of <class>" either; "water" is
    assert unlearned_words(trained, words) == {"farmland": ["fields", "field"]}
    as_teacher = Recorded(student=ground, teacher={**text, "train": True}, data=str(data))
    assert unlearned_words(as_teacher, words) == {"farmland": ["fields", "field"]}
    pretrained = Recorded(student={**text, "weights": "clip.safetensors"}, data=str(data))
    assert unlearned_words(pretrained, words) == {}  # pretrained CLIP knows its words
    moved = Recorded(student=text, data=str(tmp_path / "gone.lance"))
    assert unlearned_words(moved, words) == {}  # nothing left to check against
    assert unlearned_words(object(), words) == {}  # no record at all


def test_unlearned_words_reads_captions_up_to_its_limit(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from geobind.eval import zeroshot

    n = 20000  # "dunes" only in the last caption, past the first batch of 8,192
    write_dataset(tmp_path / "c.lance", {"text": ["a beach"] * (n - 1) + ["sand dunes"]}, None)
    recipe = {"student": {"modality": TEXT}, "data": str(tmp_path / "c.lance")}
    space = SimpleNamespace(has=lambda m: True, entry=lambda m: SimpleNamespace(recipe=recipe))
    words = {"sand": ["beach", "dunes"]}
    assert unlearned_words(space, words) == {}
    monkeypatch.setattr(zeroshot, "CAPTIONS_READ", 8192)  # a word none of them uses: unlearned
    assert unlearned_words(space, words) == {"sand": ["dunes"]}


def test_eval_of_another_dataset_of_the_same_name_keeps_the_first_ones_results(built, tmp_path):
    import shutil

    built_space, data = built
    space = tmp_path / "space"  # a copy: the results written here stay this test's
    shutil.copytree(built_space, space)
    other = tmp_path / "city-b" / data.name
    shutil.copytree(data, other)
    first = run_eval(space, str(data), ks=(1,), rows=6, floor=False, say=lambda s: None)
    again = run_eval(space, str(data), ks=(1, 5), rows=6, floor=False, say=lambda s: None)
    second = run_eval(space, str(other), ks=(1,), rows=4, floor=False, say=lambda s: None)
    saved: dict[str, list[Path]] = {}
    for p in sorted((space / "eval").glob("*/eval.json")):
        saved.setdefault(json.loads(p.read_text())["dataset"], []).append(p.parent)
    # the same dataset again: its own folder, rewritten; another of its name: a second folder
    assert [len(saved[str(data)]), len(saved[str(other)])] == [1, 1]
    saved = {k: v[0] for k, v in saved.items()}
    assert saved[str(data)].name == data.stem and saved[str(other)].name.startswith(data.stem)
    assert json.loads((saved[str(data)] / "eval.json").read_text())["places"] == 6
    assert first["dataset"] == again["dataset"] != second["dataset"]
    (saved[str(data)] / "eval.json").write_text("{not json")  # unreadable: never overwritten
    run_eval(space, str(data), ks=(1,), rows=6, floor=False, say=lambda s: None)
    assert (saved[str(data)] / "eval.json").read_text() == "{not json"


# -- (d) the command line --------------------------------------------------------------------
def test_cli_eval_end_to_end_and_its_errors(built, tmp_path, capsys):
    space, data = built
    assert (
        main(
            [
                "eval",
                str(space),
                "--data",
                str(data),
                "--ks",
                "1,5",
                "--convention",
                "geoclap",
                "--rows",
                "12",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "satellite -> ground" in out and "rank < k" in out and "Zero-shot land cover" in out
    saved = json.loads((space / "eval" / "places" / "eval.json").read_text())  # default folder
    assert saved["convention"] == "geoclap" and saved["places"] == 12

    for argv, message in [
        (["eval", str(tmp_path), "--data", str(data)], f"no space at {tmp_path}"),
        (["eval", str(space), "--data", str(tmp_path / "no.lance")], "not a Lance pair dataset"),
        (
            ["eval", str(space), "--data", str(data), "--convention", "pandas"],
            "unknown recall convention 'pandas'",
        ),
        (["eval", str(space), "--data", str(data), "--ks", "0,5"], "--ks"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("geobind: error: ") and message in err, err
