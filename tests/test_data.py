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
from geobind.data.synthetic import DATASETS, WorldOptions, datasets_of, make_world, open_world
from geobind.world import COVER_WORDS, LAND_COVERS, WorldConfig

PLACES = 60


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    # as `geobind world make` and the demo write it (world.json records what it renders)
    world_source.make_world(WorldOptions(out=str(out), places=PLACES, workers=1), progress=False)
    return out


@pytest.mark.parametrize("overlap", [True, False])
def test_every_tenth_place_is_held_out_and_the_rest_train(overlap):
    counts = {name: sum(name in datasets_of(i, overlap) for i in range(1000)) for name in DATASETS}
    train = 900 if overlap else 300  # shared by the three training sets, or dealt out
    assert counts == {"captions": train, "ground": train, "audio": train, "heldout": 100}
    for i in range(1000):
        sets = datasets_of(i, overlap)
        assert ("heldout" in sets) == (i % 10 == 9) and ("heldout" not in sets or len(sets) == 1)


def test_world_datasets_have_their_modalities_labels_and_splits(world):
    ids = {}
    for name, modalities in DATASETS.items():
        ds = open_pairs(world / f"{name}.lance")
        assert set(modalities) | {"id", "lat", "lon", "split", "landcover"} == set(ds.schema.names)
        table = ds.to_table(columns=["id", "split", "landcover"]).to_pylist()
        ids[name] = {r["id"] for r in table}
        assert all(abs(sum(r["landcover"]) - 1) < 1e-4 for r in table)
        if name == "heldout":
            assert {r["split"] for r in table} == {"test"}
    assert ids["captions"] == ids["ground"] == ids["audio"]  # the training sets share places
    assert len(ids["captions"]) + len(ids["heldout"]) == PLACES
    assert not ids["heldout"] & ids["captions"]  # no held-out place is trained on

    def splits(name: str) -> set[tuple[str, str]]:
        table = open_pairs(world / f"{name}.lance").to_table(columns=["id", "split"])
        return {(r["id"], r["split"]) for r in table.to_pylist()}

    assert splits("ground") == splits("audio") == splits("captions")  # a place's split is one
    heldout = open_pairs(world / "heldout.lance")
    tile, sound, caption = (read_values(heldout, c, [0])[0] for c in ("satellite", "audio", "text"))
    geobind.get_registry().modality("audio").check(sound)
    assert Image.open(__import__("io").BytesIO(tile)).size == (64, 64) and caption


def test_a_world_with_sounds_pairs_each_audio_clip_with_what_is_heard_in_it(world, tmp_path):
    """``sounds``: one more dataset, the audio set's places, clips and splits, each clip with
    the caption of its sources as ``text``; the other datasets are the bytes of a world
    without it, and a default world writes no sounds.lance."""
    assert not (world / "sounds.lance").exists()
    make_world(WorldOptions(out=str(tmp_path), places=20, workers=1, sounds=True), progress=False)
    sounds, audio = open_pairs(tmp_path / "sounds.lance"), open_pairs(world / "audio.lance")
    assert set(sounds.schema.names) == {"id", "lat", "lon", "split", "audio", "text", "landcover"}
    rows = sounds.to_table(columns=["id", "split", "text"]).to_pylist()
    theirs = audio.to_table(columns=["id", "split"]).to_pylist()[: len(rows)]
    assert [(r["id"], r["split"]) for r in rows] == [(r["id"], r["split"]) for r in theirs]
    n = len(rows)
    assert read_values(sounds, "audio", range(n)) == read_values(audio, "audio", range(n))
    made = open_world(tmp_path)
    for r in rows[:3]:
        place = made.place(int(r["id"].rsplit("-", 1)[1]), modalities=("audio",))
        assert r["text"] == place.sound_caption and "wind" in r["text"]
    with pytest.raises(geobind.GeobindError, match=r"sounds.lance \(no such .* --sounds"):
        open_pairs(world / "sounds.lance")  # a world made without them says how to make them
    first = open_pairs(tmp_path / "captions.lance").to_table(columns=["id", "text"]).to_pylist()
    assert (
        first
        == open_pairs(world / "captions.lance")
        .to_table(columns=["id", "text"])
        .to_pylist()[: len(first)]
    )


def test_disjoint_training_sets_share_no_place(tmp_path):
    make_world(WorldOptions(out=str(tmp_path), places=40, workers=1, overlap=False), progress=False)
    ids = {
        n: set(
            open_pairs(tmp_path / f"{n}.lance").to_table(columns=["id"]).column("id").to_pylist()
        )
        for n in DATASETS
    }
    assert sum(len(v) for v in ids.values()) == 40 and len(set.union(*ids.values())) == 40


def test_a_second_run_adds_what_is_missing_and_gives_the_bytes_of_one_run(world, tmp_path):
    make_world(WorldOptions(out=str(tmp_path), places=PLACES // 2, workers=1), progress=False)
    reports = make_world(WorldOptions(out=str(tmp_path), places=PLACES, workers=1), progress=False)
    assert reports["ground"].already_present == len([i for i in range(PLACES // 2) if i % 10 != 9])
    for name in DATASETS:
        a, b = open_pairs(world / f"{name}.lance"), open_pairs(tmp_path / f"{name}.lance")
        ids = a.to_table(columns=["id"]).column("id").to_pylist()
        assert ids == b.to_table(columns=["id"]).column("id").to_pylist()
        assert read_values(
            a, "satellite" if name != "captions" else "text", range(len(ids))
        ) == read_values(b, "satellite" if name != "captions" else "text", range(len(ids)))


def test_a_run_over_a_whole_world_renders_no_chunk_again(tmp_path, monkeypatch):
    from geobind.data import synthetic

    monkeypatch.setattr(synthetic, "CHUNK", 20)
    make_world(WorldOptions(out=str(tmp_path), places=40, workers=1), progress=False)
    rendered: list[list[int]] = []
    start = synthetic._start
    monkeypatch.setattr(
        synthetic, "_start", lambda pool, ix, o: rendered.append(ix) or start(pool, ix, o)
    )
    reports = make_world(WorldOptions(out=str(tmp_path), places=60, workers=1), progress=False)
    assert rendered == [list(range(40, 60))]  # the first two chunks were all there
    assert reports["heldout"].already_present + reports["heldout"].imported == 6
    assert reports["ground"].imported == len([i for i in range(40, 60) if i % 10 != 9])


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


def test_two_workers_render_the_world_one_does(world, tmp_path):
    # what lets the demo take a world made with any number of workers as its own
    make_world(WorldOptions(out=str(tmp_path), places=PLACES, workers=2), progress=False)
    for name in DATASETS:
        one = open_pairs(world / f"{name}.lance").to_table()
        assert open_pairs(tmp_path / f"{name}.lance").to_table().equals(one), name


class _DiesWhenUnpickled:
    """A world whose copy kills the worker process that receives it."""

    def __init__(self, config):
        self.config = config

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_a_world_worker_that_dies_is_an_error_not_a_hang(tmp_path):
    from geobind.data.synthetic import _world_config
    from geobind.errors import GeobindError

    options = WorldOptions(out=str(tmp_path), places=30, workers=2)
    dying = _DiesWhenUnpickled(_world_config(options))
    with pytest.raises(GeobindError, match="a worker process rendering places died"):
        make_world(options, progress=False, world=dying)


def test_a_world_of_older_class_words_is_brought_up_to_date(world, tmp_path):
    import json
    import shutil

    from geobind.data.pairs import name_classes
    from geobind.demo import ensure_world

    shutil.copytree(world, tmp_path, dirs_exist_ok=True)
    # made with one worker, the demo's two: the same world (the workers render the same bits)
    assert json.loads((tmp_path / "world.json").read_text())["workers"] != WorldOptions().workers
    old = {**COVER_WORDS, "farmland": ("farm", "field", "crop")}  # "field": no caption's word
    for name in DATASETS:
        name_classes(tmp_path / f"{name}.lance", "landcover", LAND_COVERS, old)

    def rows(name: str):
        return open_pairs(tmp_path / f"{name}.lance").to_table().drop(["landcover"])

    before = {name: rows(name) for name in DATASETS}
    said: list[str] = []
    assert ensure_world(tmp_path, places=PLACES, seed=0, say=said.append) == tmp_path
    assert said[0].endswith("(already generated)")
    assert said[1].startswith("world: class words of heldout brought up to date")
    words = {c: list(w) for c, w in COVER_WORDS.items()}
    for name in DATASETS:
        ds = open_pairs(tmp_path / f"{name}.lance")
        # a training set left as it was: a new version would make every stage train again
        kept = {c: list(w) for c, w in old.items()} if name != "heldout" else words
        assert label_classes(ds, "landcover") == (list(LAND_COVERS), kept)
        assert rows(name).equals(before[name])  # no row touched
    assert world_source.refresh_class_words(tmp_path) == ["captions", "ground", "audio"]
    assert world_source.refresh_class_words(tmp_path) == []  # once is enough


def test_a_world_another_version_rendered_is_generated_again(world, tmp_path):
    import json
    import shutil

    from geobind.demo import ensure_world

    shutil.copytree(world, tmp_path, dirs_exist_ok=True)
    made = json.loads((tmp_path / "world.json").read_text())
    assert len(made["renders"]) == 64  # make_world records what its generator renders
    said: list[str] = []
    ensure_world(tmp_path, places=PLACES, seed=0, say=said.append)
    assert said[0].endswith("(already generated)")
    (tmp_path / "audio.lance" / "stale-marker").write_text("yesterday's sounds")
    # as if an older geobind, whose sounds were otherwise, had written it: generated again
    (tmp_path / "world.json").write_text(json.dumps({**made, "renders": "0" * 64}))
    (tmp_path / "other.txt").write_text("not the world's")
    said.clear()
    ensure_world(tmp_path, places=PLACES, seed=0, say=said.append)
    assert (
        "holds another world (rendered by another version of the world); generating it again"
        in said[0]
    )
    assert said[1].startswith(f"world: {PLACES} places in")
    assert json.loads((tmp_path / "world.json").read_text())["renders"] == made["renders"]
    assert not (tmp_path / "audio.lance" / "stale-marker").exists()  # replaced, not added to
    assert open_pairs(tmp_path / "audio.lance").count_rows() == made["datasets"]["audio"]
    assert (tmp_path / "other.txt").read_text() == "not the world's"  # only the datasets go


def _rows(folder) -> dict[str, object]:
    return {name: open_pairs(folder / f"{name}.lance").to_table() for name in DATASETS}


@pytest.mark.parametrize(
    "args, why",
    [
        (["--seed", "1"], "seed 0, not 1"),
        (["--places", "30"], f"places {PLACES}, not 30"),
        (["--audio-format", "flac"], "audio_format 'wav', not 'flac'"),
    ],
    ids=["another-seed", "fewer-places", "other-sound-files"],
)
def test_world_make_into_a_folder_of_another_world_refuses_and_keeps_it(
    world, tmp_path, capsys, args, why
):
    import shutil

    shutil.copytree(world, tmp_path, dirs_exist_ok=True)
    before, stamp = _rows(tmp_path), (tmp_path / "world.json").read_bytes()
    # imports skip the ids already there: without the check the two worlds' places would mix
    assert main(["world", "make", "--out", str(tmp_path), "--workers", "1", *args]) == 1
    err = capsys.readouterr().err
    assert f"world: {tmp_path} holds another world ({why})" in err and "Traceback" not in err
    assert _rows(tmp_path) == before and (tmp_path / "world.json").read_bytes() == stamp
    assert not (tmp_path / "world.partial.json").exists()


@pytest.mark.parametrize("places", [0, 9])
def test_a_world_too_small_to_hold_out_a_place_is_refused_before_any_write(tmp_path, places):
    from geobind.errors import ConfigError

    with pytest.raises(ConfigError, match=f"places={places}: must be >= 10"):
        world_source.make_world(WorldOptions(out=str(tmp_path / "w"), places=places), False)
    assert not (tmp_path / "w").exists()


def test_world_make_into_datasets_no_world_recorded_refuses(world, tmp_path):
    import shutil

    from geobind.errors import ConfigError

    shutil.copytree(world / "audio.lance", tmp_path / "audio.lance")
    with pytest.raises(ConfigError, match=r"holds audio.lance but no world.json"):
        world_source.make_world(WorldOptions(out=str(tmp_path), places=20, workers=1), False)
    assert (
        open_pairs(tmp_path / "audio.lance").count_rows()
        == open_pairs(world / "audio.lance").count_rows()
    )


def test_an_interrupted_world_is_recorded_as_under_way_and_resumed(world, tmp_path, monkeypatch):
    import json

    from geobind.data import synthetic
    from geobind.demo import ensure_world
    from geobind.errors import ConfigError

    monkeypatch.setattr(synthetic, "CHUNK", 20)
    writes = 0
    write = synthetic._write

    def killed_after_one_chunk(*a, **k):
        nonlocal writes
        writes += 1
        if writes == 2:
            raise KeyboardInterrupt  # a kill between two chunks
        return write(*a, **k)

    monkeypatch.setattr(synthetic, "_write", killed_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        world_source.make_world(WorldOptions(out=str(tmp_path), places=PLACES, workers=1), False)
    monkeypatch.setattr(synthetic, "_write", write)
    assert not (tmp_path / "world.json").exists()  # no claim of a whole world
    under_way = json.loads((tmp_path / "world.partial.json").read_text())
    assert under_way["places"] == PLACES and len(under_way["renders"]) == 64
    # another world is refused over it, nothing written
    with pytest.raises(ConfigError, match=r"holds another world \(seed 0, not 2\)"):
        world_source.make_world(WorldOptions(out=str(tmp_path), places=PLACES, seed=2), False)
    said: list[str] = []
    ensure_world(tmp_path, places=PLACES, seed=0, say=said.append)  # the demo finishes it
    assert said[0] == f"world: {tmp_path} was left unfinished; generating the rest"
    assert not (tmp_path / "world.partial.json").exists()
    assert json.loads((tmp_path / "world.json").read_text())["datasets"]["heldout"] == PLACES // 10
    for name in DATASETS:  # the bytes of one run
        a, b = open_pairs(tmp_path / f"{name}.lance"), open_pairs(world / f"{name}.lance")
        rows = range(b.count_rows())
        for column in b.schema.names:
            assert read_values(a, column, rows) == read_values(b, column, rows), (name, column)


def test_the_demo_generates_its_world_again_for_other_options(world, tmp_path):
    import json
    import shutil

    from geobind.demo import ensure_world

    shutil.copytree(world, tmp_path, dirs_exist_ok=True)
    said: list[str] = []
    ensure_world(tmp_path, places=PLACES // 2, seed=0, say=said.append)
    assert said[0] == (
        f"world: {tmp_path} holds another world (places {PLACES}, not {PLACES // 2}); "
        "generating it again"
    )
    made = json.loads((tmp_path / "world.json").read_text())
    assert made["places"] == PLACES // 2
    assert open_pairs(tmp_path / "heldout.lance").count_rows() == PLACES // 20  # none kept


def test_the_demo_grows_a_world_of_fewer_places_into_the_bytes_of_one_run(world, tmp_path):
    from geobind.demo import ensure_world

    world_source.make_world(WorldOptions(out=str(tmp_path), places=PLACES // 2), False)
    said: list[str] = []
    ensure_world(tmp_path, places=PLACES, seed=0, say=said.append)
    assert said[0] == f"world: {tmp_path} holds fewer places; generating the rest"
    for name in DATASETS:
        a, b = open_pairs(tmp_path / f"{name}.lance"), open_pairs(world / f"{name}.lance")
        rows = range(b.count_rows())
        assert a.count_rows() == b.count_rows()
        for column in ("id", "landcover"):
            assert read_values(a, column, rows) == read_values(b, column, rows), (name, column)


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


def test_later_epochs_read_nothing_and_get_the_same_values(world, monkeypatch):
    from geobind.data import reader

    tiles, text = geobind.build_encoder("satellite"), geobind.build_encoder("text")
    prep = {"satellite": tiles.preprocess(False), "text": text.preprocess(False)}
    data = PairDataset(world / "captions.lance", {"text": prep["text"]}, split="train")
    tiles_data = PairDataset(world / "ground.lance", {"satellite": prep["satellite"]})
    first = [data[i] for i in range(len(data))], [tiles_data[i] for i in range(len(tiles_data))]
    reads = []
    real = reader.read_inputs
    monkeypatch.setattr(reader, "read_inputs", lambda *a: reads.append(a[2]) or real(*a))
    again = [data[i] for i in range(len(data))], [tiles_data[i] for i in range(len(tiles_data))]
    assert reads == []
    for a, b in zip(first[0] + first[1], again[0] + again[1]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != "row")
    small = PairDataset(world / "ground.lance", {"satellite": prep["satellite"]})
    small.KEEP_BYTES = 3 * len(read_values(small.dataset, "satellite", [0])[0])
    [small[i] for i in range(5)]  # keeps what fits, reads the rest every time
    reads.clear()
    assert torch.equal(small[4]["satellite"], tiles_data[4]["satellite"]) and reads == [[4]]
    assert len(small._kept["satellite"]) <= 3


def test_reader_works_in_spawned_workers(world):
    text = geobind.build_encoder("text")
    data = PairDataset(world / "captions.lance", {"text": text.preprocess(False)})
    rows = [b["row"] for b in pair_loader(data, batch_size=5, workers=2)]
    assert sorted(torch.cat(rows).tolist()) == list(range(len(data)))


def test_sounds_are_stored_as_wav_or_flac_with_the_same_samples(world, tmp_path):
    import io

    import soundfile as sf

    flac = tmp_path / "flac"
    make_world(WorldOptions(out=str(flac), places=20, workers=1, audio_format="flac"), False)
    rows = [0, 1]  # places 9 and 19, held out in both worlds
    as_wav = read_values(open_pairs(world / "heldout.lance"), "audio", rows)
    as_flac = read_values(open_pairs(flac / "heldout.lance"), "audio", rows)
    for w, f in zip(as_wav, as_flac):
        assert w[:4] == b"RIFF" and f[:4] == b"fLaC" and len(f) < len(w)
        assert (sf.read(io.BytesIO(w))[0] == sf.read(io.BytesIO(f))[0]).all()


def test_a_world_built_for_other_options_is_refused(tmp_path):
    from geobind.world import World

    options = WorldOptions(out=str(tmp_path / "w"), places=PLACES, workers=1, seed=1)
    other = World(WorldConfig(seed=0, places=PLACES))
    with pytest.raises(ValueError, match="built for"):
        make_world(options, progress=False, world=other)
    assert not any((tmp_path / "w").glob("*.lance"))


def test_a_bad_world_option_is_named_and_writes_nothing(tmp_path):
    with pytest.raises(geobind.ConfigError, match="audio_format='mp3'"):
        make_world(WorldOptions(out=str(tmp_path / "w"), places=20, audio_format="mp3"), False)
    assert not (tmp_path / "w").exists()


def test_a_generated_world_opens_again_and_replays_its_places(world, tmp_path):
    """``open_world`` rebuilds the World a folder came from: its places render to the bytes
    the datasets hold (the ceiling benchmarks replay them); a folder without a record is named."""
    from geobind.errors import GeobindError

    again = open_world(world)
    ds = open_pairs(world / "heldout.lance")
    ids = ds.to_table(columns=["id"]).column("id").to_pylist()[:3]
    for row, pid in enumerate(ids):
        place = again.place(int(pid.rsplit("-", 1)[1]))
        assert place.id == pid
        assert place.audio == read_values(ds, "audio", [row])[0]
        assert place.satellite == read_values(ds, "satellite", [row])[0]
    with pytest.raises(GeobindError, match="world.json"):
        open_world(tmp_path)
