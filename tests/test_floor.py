"""The floor: simple features and closed-form CCA, on data whose right answer is known."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from geobind.data.pairs import write_pairs
from geobind.encoders.features import BagOfWords, ColourHistogram
from geobind.eval.floor import CCA, fit_floor, floor_table, trained_pairs, transform_rows
from geobind.eval.retrieval import ranks, ratio_interval, recall_metrics
from geobind.testing import pair_rows, png_bytes


def solid_png(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def shared_latent(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Two views of one 6-d latent through different random linear maps, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 6))
    a, b = rng.standard_normal((6, 20)), rng.standard_normal((6, 15))
    return (
        z @ a + noise * rng.standard_normal((n, 20)),
        z @ b + noise * rng.standard_normal((n, 15)),
    )


def test_cca_recovers_a_shared_latent_and_retrieves_through_it():
    x, y = shared_latent(2000, seed=0, noise=0.05)
    cca = CCA(dims=6).fit(x[:1500], y[:1500])
    assert cca.correlations[:6].min() > 0.95  # six shared directions, nearly noise-free
    m = recall_metrics(ranks(cca.transform(0, x[1500:]), cca.transform(1, y[1500:])), ks=(1,))
    assert m["R@1"] > 0.9


def test_cca_of_unrelated_features_is_at_chance():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3000, 20)), rng.standard_normal((3000, 15))
    cca = CCA(dims=8).fit(x[:2000], y[:2000])
    assert cca.correlations.max() < 0.25  # sampling noise alone: about sqrt(dims / rows)
    m = recall_metrics(ranks(cca.transform(0, x[2000:]), cca.transform(1, y[2000:])), ks=(10,))
    assert m["R@10"] < 0.03  # chance is 10 / 1000


def test_cca_refuses_unpaired_rows():
    with pytest.raises(ValueError, match="same number"):
        CCA().fit(np.zeros((5, 3)), np.zeros((4, 3)))


def test_colour_histogram_puts_a_solid_colour_in_its_bin():
    features = (
        ColourHistogram(bins=4).fit([]).transform([solid_png((255, 0, 0)), solid_png((0, 0, 255))])
    )
    assert features.shape == (2, 128)  # whole picture and lower half, 64 bins each
    red, blue = (3 * 4 + 0) * 4 + 0, 3
    assert features[0, red] == 1.0 and features[0, 64 + red] == 1.0
    assert features[1, blue] == 1.0 and features.sum(axis=1).tolist() == [2.0, 2.0]


def test_colour_histogram_of_a_large_picture_is_that_of_a_small_one():
    histogram = ColourHistogram(max_side=64)
    big, small = histogram.transform([solid_png((0, 255, 0), 1000), solid_png((0, 255, 0), 8)])
    assert big[(0 * 4 + 3) * 4 + 0] == 1.0 and (big == small).all()


def test_bag_of_words_learns_its_vocabulary_from_training_text():
    words = BagOfWords(min_count=2).fit(["A sandy beach", "a forest", "a Beach at night"])
    assert set(words.vocabulary) == {"a", "beach"}
    out = words.transform(["the beach!", "forest", ""])
    assert out.shape == (3, 2)
    assert out[0, words.vocabulary["beach"]] == 1.0 and out[1].sum() == 0 and out[2].sum() == 0


def test_features_in_threads_are_the_rows_of_one_call_in_order():
    pictures = [png_bytes(i) for i in range(300)]
    features = ColourHistogram()
    alone = features.transform(pictures)
    threaded = transform_rows(features, pictures, threads=3)
    assert threaded.shape == (300, alone.shape[1]) and np.array_equal(threaded, alone)
    words = BagOfWords(min_count=1).fit([f"word{i % 9} and more" for i in range(200)])
    texts = [f"word{i % 9} and more" for i in range(200)][::-1]
    assert np.array_equal(transform_rows(words, texts, threads=2), words.transform(texts))


def test_fit_floor_embeds_each_side_of_its_pair():
    x, y = shared_latent(400, seed=2, noise=0.01)

    class Rows:  # features that are the rows themselves
        def fit(self, values):
            return self

        def transform(self, values):
            return np.asarray(values)

    floor = fit_floor(("a", "b"), (list(x), list(y)), (Rows, Rows), dims=6)
    za, zb = floor.embed("a", list(x[:50])), floor.embed("b", list(y[:50]))
    assert za.shape == zb.shape == (50, 6)
    assert recall_metrics(ranks(za, zb), ks=(1,))["R@1"] > 0.9
    with pytest.raises(KeyError, match="not 'c'"):
        floor.embed("c", [])


def fake_space(data: str) -> SimpleNamespace:
    """What floor_table reads of a space: each entry's partner and training data."""

    def entry(partner: str | None, data: str | None) -> SimpleNamespace:
        return SimpleNamespace(
            aligned_to={"modality": partner} if partner else None,
            recipe={"data": data} if data else {},
        )

    return SimpleNamespace(
        entries={
            "ground": entry("text", data),
            "text": entry("ground", data),
            "satellite": entry("ground", data),
            "audio": entry(None, None),
        }
    )


def test_floor_table_fits_on_the_training_split_and_finds_identical_pictures(tmp_path):
    n = 40
    pictures = [png_bytes(i) for i in range(n)]
    words = ["beach", "forest", "town", "field"]
    data = tmp_path / "pairs.lance"
    write_pairs(
        data,
        pair_rows(
            {
                "satellite": pictures,
                "ground": pictures,
                "text": [f"a {words[i % 4]} {i % 3}" for i in range(n)],
            }
        ),
        {"satellite": "binary", "ground": "binary", "text": "string"},
    )
    space = fake_space(str(data))
    assert trained_pairs(space) == [
        ("ground", "text", str(data)),
        ("satellite", "ground", str(data)),
    ]
    result = floor_table(space, str(data), list(range(n)), ks=(1, 10))
    by_pair = {(r["query"], r["gallery"]): r for r in result["retrieval"]}
    assert set(by_pair) == {
        ("ground", "text"),
        ("text", "ground"),
        ("satellite", "ground"),
        ("ground", "satellite"),
    }
    assert by_pair["satellite", "ground"]["R@1"] == 1.0  # the same picture on both sides
    assert by_pair["satellite", "ground"]["fit_rows"] == n // 2  # pair_rows: half are train
    assert all(r["gallery_size"] == n for r in result["retrieval"])


def test_floor_table_sets_the_learned_ranks_against_the_floors_with_an_interval(tmp_path):
    n = 40
    pictures = [png_bytes(i) for i in range(n)]
    data = tmp_path / "pairs.lance"
    write_pairs(
        data,
        pair_rows({"satellite": pictures, "ground": pictures}),
        {"satellite": "binary", "ground": "binary"},
    )
    space = SimpleNamespace(
        entries={
            "satellite": SimpleNamespace(
                aligned_to={"modality": "ground"}, recipe={"data": str(data)}
            )
        }
    )
    z = torch.nn.functional.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)))
    learned = {"satellite": z, "ground": z.roll(1, dims=0)}  # every place one row off
    rows = floor_table(space, str(data), list(range(n)), ks=(1, 10), learned=learned)
    by_pair = {(r["query"], r["gallery"]): r for r in rows["retrieval"]}
    # the floor finds every identical picture at rank 1; the learned space finds none
    assert by_pair["satellite", "ground"]["x_floor_95"]["R@1"] == [0.0, 0.0]
    mine = ranks(learned["satellite"], learned["ground"])
    floor_ranks = torch.ones(n, dtype=torch.long)
    assert by_pair["satellite", "ground"]["x_floor_95"]["R@10"] == list(
        ratio_interval(mine, floor_ranks, 10)
    )
    # without the learned embeddings there is nothing to set against
    plain = floor_table(space, str(data), list(range(n)), ks=(1,))
    assert all("x_floor_95" not in r for r in plain["retrieval"])


def test_ratio_interval_holds_one_for_level_spaces_and_not_for_a_better_one():
    gen = torch.Generator().manual_seed(0)
    n = 1000
    level_a = torch.randint(1, 101, (n,), generator=gen)  # R@10 about 10% each
    level_b = torch.randint(1, 101, (n,), generator=gen)
    lo, hi = ratio_interval(level_a, level_b, 10)
    assert lo < 1.0 < hi
    assert ratio_interval(level_a, level_a, 10) == (1.0, 1.0)  # the same ranks: exactly 1
    better = torch.where(torch.rand(n, generator=gen) < 0.25, 1, level_b)  # 25% more hits
    lo, hi = ratio_interval(better, level_b, 10)
    point = float((better <= 10).sum() / (level_b <= 10).sum())
    assert 1.0 < lo < point < hi
    # the interval narrows as more places are measured
    many = ratio_interval(better.repeat(4), level_b.repeat(4), 10)
    assert many[1] - many[0] < hi - lo
    # the same ranks give the same interval; no floor hit at k: no ratio
    assert ratio_interval(better, level_b, 10) == (lo, hi)
    assert ratio_interval(better, torch.full((n,), 500), 10) is None
    with pytest.raises(ValueError, match="one length"):
        ratio_interval(better, level_b[:10], 10)


def test_floor_table_says_why_a_pair_has_no_floor(tmp_path):
    data = tmp_path / "pairs.lance"
    write_pairs(
        data,
        pair_rows(
            {
                "satellite": [png_bytes(i) for i in range(8)],
                "ground": [png_bytes(i) for i in range(8)],
            }
        ),
        {"satellite": "binary", "ground": "binary"},
    )
    space = SimpleNamespace(
        entries={
            "satellite": SimpleNamespace(
                aligned_to={"modality": "ground"}, recipe={"data": str(tmp_path / "moved.lance")}
            )
        }
    )
    result = floor_table(space, str(data), list(range(8)), ks=(1,))
    assert result["retrieval"] == []
    assert "not readable" in result["skipped"]["satellite <-> ground"]


def test_recall_by_class_counts_each_query_under_its_dominant_class():
    from geobind.eval.breakdown import format_breakdown, recall_by_class

    rank = torch.tensor([1, 20, 3, 50, 2])
    labels = torch.tensor([0, 0, 2, 2, 2])
    out = recall_by_class(rank, labels, ["water", "sand", "forest"], k=10)
    assert out == {
        "water": {"places": 2, "R@10": 0.5},
        "forest": {"places": 3, "R@10": pytest.approx(2 / 3)},
    }
    text = format_breakdown(
        {"classes": ["water", "sand", "forest"], "k": 10, "pairs": {"a -> b": out}}
    )
    assert "water" in text and "sand" not in text.split("\n", 3)[3] and "66.7%" in text


def test_retrieval_by_class_reads_the_dataset_labels(tmp_path):
    import lance
    import pyarrow as pa

    from geobind.data.pairs import label_field, pair_schema, to_record_batch
    from geobind.eval.breakdown import retrieval_by_class

    n = 6
    fractions = [[1.0, 0.0], [0.0, 1.0]] * 3
    storages = {"satellite": "binary"}
    schema = pair_schema(storages).append(label_field("landcover", ["water", "sand"]))
    rows = [
        dict(r, landcover=f)
        for r, f in zip(pair_rows({"satellite": [png_bytes(i) for i in range(n)]}), fractions)
    ]
    lance.write_dataset(
        pa.Table.from_batches([to_record_batch(rows, schema, storages)]), str(tmp_path / "d.lance")
    )
    z = torch.eye(n)
    result = retrieval_by_class(
        {"a": z, "b": z}, str(tmp_path / "d.lance"), list(range(n)), [("a", "b"), ("a", "c")], k=1
    )
    assert result["pairs"] == {
        "a -> b": {"water": {"places": 3, "R@1": 1.0}, "sand": {"places": 3, "R@1": 1.0}}
    }


def test_a_moved_project_finds_its_training_data_beside_the_evaluated_dataset(tmp_path):
    import shutil

    from geobind.data.pairs import data_identity

    old, new = tmp_path / "old", tmp_path / "new"
    rows = {"satellite": [png_bytes(i) for i in range(20)]}
    rows["ground"] = rows["satellite"]
    for name in ("train.lance", "heldout.lance", "other.lance"):
        write_pairs(old / name, pair_rows(rows), {"satellite": "binary", "ground": "binary"})
    identity = data_identity(str(old / "train.lance"))
    assert identity != data_identity(str(old / "other.lance"))  # each write is its own data

    def space_trained_on(name: str, identity: str) -> SimpleNamespace:
        recipe = {"data": str(old / name), "data_identity": identity}
        entry = SimpleNamespace(aligned_to={"modality": "ground"}, recipe=recipe)
        return SimpleNamespace(entries={"satellite": entry})

    shutil.move(old, new)
    moved = floor_table(
        space_trained_on("train.lance", identity),
        str(new / "heldout.lance"),
        list(range(20)),
        ks=(1,),
    )
    assert moved["skipped"] == {} and moved["retrieval"][0]["fitted_on"] == str(new / "train.lance")
    # a dataset of the same name that is other data is not taken for it
    other = space_trained_on("other.lance", identity)
    result = floor_table(other, str(new / "heldout.lance"), list(range(20)), ks=(1,))
    assert result["retrieval"] == [] and "not readable" in result["skipped"]["satellite <-> ground"]
