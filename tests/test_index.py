"""Search and maps: index build, exact and approximate search, anchor checks, CLI, pictures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from geobind.cli import main
from geobind.data import write_pairs
from geobind.data.pairs import open_pairs, read_values
from geobind.data.raster import raster_beside, read_raster, write_raster
from geobind.errors import GeobindError, InputError
from geobind.search.index import build_index, find_index, list_indexes, open_index, search
from geobind.search.maps import similarity_map
from geobind.space import Space, SpaceError, load_space
from geobind.testing import TINY_AUDIO, TINY_VISION, pair_rows, png_bytes

TINY_TEXT = dict(embed_dim=32, context_length=16, width=64, heads=2, layers=1)


def make_space(path: Path, seed: int, audio: bool = True) -> Space:
    """A space of randomly initialised encoders: enough to test the plumbing of search."""
    from geobind.encoders.encoder import build_encoder

    torch.manual_seed(seed)
    space = Space(path)
    anchor = space.put(build_encoder("satellite", TINY_VISION), stage="anchor")
    aligned = {"modality": "satellite", "sha256": anchor.sha256}
    space.put(build_encoder("text", TINY_TEXT), stage="text", aligned_to=aligned)
    if audio:
        space.put(build_encoder("audio", TINY_AUDIO), stage="audio", aligned_to=aligned)
    return load_space(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny space, a small synthetic world, and the index of its audio dataset."""
    from geobind.data.world_source import WorldOptions, make_world

    root = tmp_path_factory.mktemp("index")
    make_world(WorldOptions(out=str(root / "world"), places=60, workers=1), progress=False)
    space = make_space(root / "space", seed=0)
    data = root / "world" / "audio.lance"
    return {"root": root, "space": space, "data": data, "index": build_index(space, data)}


def tiles(data: Path) -> tuple[list[str], list[bytes]]:
    ds = open_pairs(data)
    rows = range(ds.count_rows())
    return read_values(ds, "id", rows), read_values(ds, "satellite", rows)


def test_exact_search_finds_each_tile_first_with_sorted_scores(setup):
    space, index = setup["space"], setup["index"]
    assert index == space.path / "index" / "audio.lance"
    meta = json.loads(index.with_suffix(".json").read_text())
    assert meta["dataset"] == str(setup["data"].resolve()) and meta["dataset_version"] >= 1
    assert meta["anchor_sha256"] == space.entry("satellite").sha256
    assert meta["vector_index"] is None and not open_index(space, index).ann
    ids, images = tiles(setup["data"])
    results = search(space, "satellite", images, top=5, data=setup["data"])
    assert [hits[0]["id"] for hits in results] == ids
    for hits in results:
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True) and len(hits) == 5
        assert scores[0] == pytest.approx(1.0, abs=1e-4)
        assert set(hits[0]) == {"id", "lat", "lon", "score"}


def test_vector_index_agrees_with_exact_search_and_rebuild_replaces(setup):
    space = setup["space"]
    out = setup["root"] / "ann" / "tiles.lance"
    build_index(space, setup["data"], out=out, min_rows_for_ann=1)  # tiny threshold
    index = open_index(space, out)
    assert (
        index.ann
        and json.loads(out.with_suffix(".json").read_text())["vector_index"]["index_type"]
        == "IVF_HNSW_SQ"
    )
    ids, images = tiles(setup["data"])
    queries = space.embed("satellite", images)
    approximate = index.query(queries, top=3)
    exact = index.query(queries, top=3, exact=True)
    assert [h[0]["id"] for h in approximate] == [h[0]["id"] for h in exact] == ids
    assert all(
        [x["score"] for x in h] == sorted([x["score"] for x in h], reverse=True)
        for h in approximate
    )
    build_index(space, setup["data"], out=out)  # a rebuild replaces the table whole
    assert not open_index(space, out).ann
    assert approximate == index.query(queries, top=3)  # the old handle reads its old version
    assert sorted(p.name for p in out.parent.iterdir()) == [".lock", "tiles.json", "tiles.lance"]


def test_an_index_of_another_anchor_is_refused_naming_both_hashes(setup, tmp_path):
    other = make_space(tmp_path / "other", seed=1, audio=False)
    mine, theirs = setup["space"].entry("satellite").sha256, other.entry("satellite").sha256
    with pytest.raises(
        SpaceError, match=f"sha256 {mine[:12]}…, but space .* holds {theirs[:12]}…: rebuild it"
    ):
        search(other, "text", "a beach", index=setup["index"])


def test_cli_search_prints_ranked_rows_and_draws_a_grid(setup, tmp_path, capsys):
    from PIL import Image

    ids, images = tiles(setup["data"])
    tile = tmp_path / "tile.png"
    tile.write_bytes(images[2])
    grid = tmp_path / "grid.png"
    space = str(setup["space"].path)
    assert (
        main(
            [
                "search",
                space,
                "--image",
                str(tile),
                "--data",
                str(setup["data"]),
                "--top",
                "4",
                "--grid",
                str(grid),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "id", "lat", "lon", "score"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and rows[0][1] == ids[2]
    assert [float(r[4]) for r in rows] == sorted((float(r[4]) for r in rows), reverse=True)
    with Image.open(grid) as picture:
        assert picture.size == (5 * 128, 44 + 128 + 30)
    assert main(["search", space, "--text", "waves on a sandy beach", "--top", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def panels_differ(path: Path, drawn) -> None:
    """Two panels side by side: a viridis heat map on the left, a mosaic on the right."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as picture:
        assert picture.size == drawn.size
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    (hx0, hy0, hx1, hy1), (mx0, my0, mx1, my1) = drawn.heat_box, drawn.mosaic_box
    assert hx1 <= mx0 and (hy0, hy1) == (my0, my1) and hx1 - hx0 == mx1 - mx0
    heat, mosaic = pixels[hy0:hy1, hx0:hx1], pixels[my0:my1, mx0:mx1]
    assert heat.std() > 5 and mosaic.std() > 5 and not np.array_equal(heat, mosaic)
    # viridis runs from purple through teal to yellow: blue exceeds red in its lower half
    assert (heat[..., 2] > heat[..., 0] + 40).mean() > 0.05


def test_maps_of_a_text_and_an_audio_query_over_a_world(setup, tmp_path, capsys):
    space, data = setup["space"], setup["data"]
    drawn = similarity_map(space, data, "text", "waves on a sandy beach", tmp_path / "t.png")
    panels_differ(drawn.path, drawn)
    assert drawn.source.startswith("index") and drawn.score_min < drawn.score_max
    assert [h["score"] for h in drawn.top] == sorted((h["score"] for h in drawn.top), reverse=True)
    sound = tmp_path / "clip.flac"
    sound.write_bytes(read_values(open_pairs(data), "audio", [0])[0])
    out = tmp_path / "a.png"
    assert (
        main(
            ["map", str(space.path), "--data", str(data), "--audio", str(sound), "--out", str(out)]
        )
        == 0
    )
    assert "map written to" in capsys.readouterr().out and out.is_file()


def test_heat_is_the_gaussian_weighted_mean_of_the_tiles_and_grey_far_from_them():
    import math
    from types import SimpleNamespace

    import numpy as np

    from geobind.search.maps import NO_DATA, Frame, _heat, colormap

    rng = np.random.default_rng(0)
    frame = Frame(lat_min=0.0, lat_max=1.0, lon_min=0.0, lon_max=2.0, width=40, height=20)
    # five tiles in the west half, none in the east: the east must fade to grey
    tiles = SimpleNamespace(lat=rng.uniform(0.2, 0.8, 5), lon=rng.uniform(0.2, 0.8, 5))
    scores, sigma = rng.uniform(0, 1, 5), 3.0
    got = np.asarray(_heat(tiles, scores, frame, 0.0, 1.0, sigma))
    # by the definition, pixel by pixel, at the half-resolution grid _heat draws and upsamples
    px, py = frame.xy(tiles.lat, tiles.lon)
    want = np.zeros((10, 20, 3))
    for j in range(10):
        for i in range(20):
            d2 = ((2 * i + 1) - px) ** 2 + ((2 * j + 1) - py) ** 2
            k = np.exp(-d2 / (2 * sigma**2))
            rgb = colormap(np.array([(k @ scores) / k.sum()]))[0].astype(float)
            alpha = np.clip((k.max() - math.exp(-4.5)) / (math.exp(-2.0) - math.exp(-4.5)), 0, 1)
            want[j, i] = rgb * alpha + np.array(NO_DATA, float) * (1 - alpha)
    small = Image.fromarray(want.round().astype(np.uint8))
    want_full = np.asarray(small.resize((40, 20), Image.Resampling.BILINEAR))
    assert np.abs(got.astype(int) - want_full.astype(int)).max() <= 1
    assert tuple(got[10, 39]) == tuple(NO_DATA)  # far east: no tile within reach
    assert tuple(got[10, 39]) != tuple(got[int(py[0]), int(px[0])])


def test_map_of_a_plain_dataset_pastes_its_tiles(setup, tmp_path):
    n = 12
    rows = pair_rows({"satellite": [png_bytes(i) for i in range(n)]})
    data = write_pairs(tmp_path / "plain.lance", rows, {"satellite": "binary"}).uri
    drawn = similarity_map(setup["space"], data, "text", "a road", tmp_path / "m.png")
    assert drawn.source == "embedded now" and len(drawn.top) == 10
    panels_differ(drawn.path, drawn)


def test_the_picture_beside_a_map_is_an_input(setup, tmp_path):
    space, data = setup["space"], setup["data"]
    world_map = raster_beside(data)  # written by geobind world make
    width, height = world_map.open().size
    beside = similarity_map(space, data, "text", "a road", tmp_path / "w.png")
    assert beside.mosaic_box[3] - beside.mosaic_box[1] == round(512 * height / width)
    red = tmp_path / "red.json"
    write_raster(
        Image.new("RGB", (100, 50), "red"),
        red,
        world_map.lat_min,
        world_map.lat_max,
        world_map.lon_min,
        world_map.lon_max,
    )
    drawn = similarity_map(
        space, data, "text", "a road", tmp_path / "r.png", mark=0, background=read_raster(red)
    )
    x0, y0, x1, y1 = drawn.mosaic_box
    assert (x1 - x0, y1 - y0) == (512, 256)
    assert Image.open(drawn.path).convert("RGB").getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == (
        255,
        0,
        0,
    )
    tiles = similarity_map(space, data, "text", "a road", tmp_path / "t.png", background=None)
    panels_differ(tiles.path, tiles)


def test_bad_queries_and_missing_indexes_are_clear_errors(setup, tmp_path, capsys):
    space, data = setup["space"], setup["data"]
    with pytest.raises(InputError, match="no satellite query"):
        search(space, "satellite", [], data=data)
    with pytest.raises(SpaceError, match="input file not found: .*nowhere.png"):
        search(space, "satellite", "/nowhere.png", data=data)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=f"{broken}: image: not a recognised image format"):
        search(space, "satellite", str(broken), data=data)
    with pytest.raises(SpaceError, match="no 'smell' encoder"):
        search(space, "smell", "x", data=data)
    with pytest.raises(InputError, match="empty"):
        search(space, "text", "", data=data)
    with pytest.raises(InputError, match="top must be >= 1"):
        search(space, "text", "a beach", top=0, data=data)
    with pytest.raises(GeobindError, match="has no 'satellite' column"):
        build_index(space, setup["root"] / "world" / "captions.lance", out=tmp_path / "x.lance")
    assert main(["search", str(space.path), "--text", "a", "--data", str(tmp_path / "q")]) == 1
    assert "no index at" in capsys.readouterr().err
    bare = Path(
        shutil.copytree(space.path, tmp_path / "bare", ignore=shutil.ignore_patterns("index"))
    )
    assert main(["search", str(bare), "--text", "a beach"]) == 1
    assert "has no index yet: run 'geobind index build" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", str(space.path), "--text", "a", "--audio", "x.wav"])


def test_search_without_index_takes_the_newest_and_names_the_others(setup, tmp_path, capsys):
    space = Space(Path(shutil.copytree(setup["space"].path, tmp_path / "two")))
    space = load_space(space.path)
    older = build_index(space, setup["data"])
    newer = build_index(space, setup["root"] / "world" / "ground.lance")
    assert [p.name for p in list_indexes(space)] == [older.name, newer.name]
    assert main(["search", str(space.path), "--text", "a beach", "--top", "3"]) == 0
    out, err = capsys.readouterr()
    assert "searching index 'ground', the newest (also: audio; choose with --index NAME)" in err
    ground_ids = set(tiles(setup["root"] / "world" / "ground.lance")[0])
    assert {line.split()[1] for line in out.strip().splitlines()[1:]} <= ground_ids
    build_index(space, setup["data"])  # a rebuild makes 'audio' the newest again
    assert main(["search", str(space.path), "--text", "a beach", "--index", "ground"]) == 0
    assert "searching index" not in capsys.readouterr().err  # chosen, so nothing to say
    assert find_index(space) == older
    assert main(["search", str(space.path), "--text", "a", "--index", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no index at nosuch (the indexes of space" in err and ": ground, audio)" in err


@pytest.mark.parametrize(
    "argv, said",
    [
        (["search", "SPACE", "--text", "x", "--grid", "DIR"], "--grid DIR: is a folder"),
        (["search", "SPACE", "--text", "x", "--grid", "g.jpg"], "this writes a PNG picture"),
        (["search", "SPACE", "--text", "x", "--geojson", "DIR"], "--geojson DIR: is a folder"),
        (["map", "SPACE", "--data", "D", "--text", "x", "--out", "DIR"], "is a folder"),
        (["map", "SPACE", "--data", "D", "--text", "x", "--out", "m"], "end the file name in .png"),
        (["export", "SPACE", "--to", "DIR"], "--to DIR: is a folder"),
        (["export", "SPACE", "--to", "t.csv"], "end the file name in .parquet or .geoparquet"),
        (["report", "SPACE", "--out", "r.pdf"], "end the file name in .html or .htm"),
        (["eval", "SPACE", "--data", "D", "--out", "FILE"], "--out FILE: is a file"),
        (["data", "show", "D", "--grid", "DIR"], "--grid DIR: is a folder"),
        (["demo", "--out", "FILE"], "--out FILE: is a file"),
        (["world", "make", "--out", "FILE"], "--out FILE: is a file"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    tmp_path, capsys, argv, said
):
    folder, file = tmp_path / "out", tmp_path / "f.txt"
    folder.mkdir()
    file.write_text("kept")
    names = {"SPACE": str(tmp_path / "no-space"), "D": str(tmp_path / "no-data.lance")}
    names.update(DIR=str(folder), FILE=str(file))
    said = said.replace("DIR", str(folder)).replace("FILE", str(file))
    assert main([names.get(a, a) for a in argv]) == 1
    assert said in capsys.readouterr().err  # not the missing space: nothing was started
    assert file.read_text() == "kept" and list(folder.iterdir()) == []


def test_a_map_that_fails_while_written_leaves_the_old_map_whole(setup, tmp_path, monkeypatch):
    import geobind.encoders.weights as weights

    out = tmp_path / "m.png"
    similarity_map(setup["space"], setup["data"], "text", "a beach", out)
    before = out.read_bytes()

    def full_disk(fd: int) -> None:  # the new picture's bytes are written, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        similarity_map(setup["space"], setup["data"], "text", "the sea", out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]
