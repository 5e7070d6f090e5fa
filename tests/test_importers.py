"""Importers of real layouts, on fixture files made here in those exact layouts, and bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

import geobind
from geobind.data import open_pairs, read_values
from geobind.data.importers import (
    Sat2CapOptions,
    SoundingEarthOptions,
    TableOptions,
    import_sat2cap,
    import_soundingearth,
    import_table,
)
from geobind.data.importing import Candidate, assign_split, import_pairs
from geobind.testing import png_bytes


def jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed, 40))).save(buf, format="JPEG")
    return buf.getvalue()


def sound(seed: int, fmt: str = "WAV", seconds: float = 0.5, rate: int = 22050) -> bytes:
    rng = np.random.default_rng(seed)
    wave = 0.1 * rng.standard_normal((int(seconds * rate), 2)).astype("float32")
    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, format=fmt)
    return buf.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, parts in samples:
            for suffix, data in parts.items():
                add_member(tar, f"{key}.{suffix}", data)


def sat2cap_sample(i: int, lat: float = 40.0, lon: float = -74.0, **overrides) -> tuple:
    meta = json.dumps({"latitude": lat + i / 100, "longitude": lon, "date_taken": "2012"})
    parts = {
        "groundlevel.jpg": jpeg(i),
        "overhead.jpg": jpeg(100 + i),
        "metadata.json": meta.encode(),
    }
    parts.update(overrides)
    return f"{i:09d}", {k: v for k, v in parts.items() if v is not None}


@pytest.fixture
def sat2cap_shards(tmp_path: Path) -> Path:
    root = tmp_path / "shards"
    root.mkdir()
    write_shard(root / "00000.tar", [sat2cap_sample(i) for i in range(5)])
    write_shard(
        root / "00001.tar",
        [
            sat2cap_sample(5),
            sat2cap_sample(6, **{"overhead.jpg": jpeg(1)[:120]}),  # truncated
            sat2cap_sample(7, **{"groundlevel.jpg": b"<html>not found</html>"}),  # not an image
            sat2cap_sample(8, **{"groundlevel.jpg": None}),  # missing member
            sat2cap_sample(9, lat=95.0),  # out of range
            sat2cap_sample(3),  # duplicate id
        ],
    )
    return root


def test_sat2cap_imports_good_rows_and_reports_bad_ones(sat2cap_shards, tmp_path):
    out, rejects = tmp_path / "pairs.lance", tmp_path / "rejects.jsonl"
    report = import_sat2cap(
        Sat2CapOptions(shards=str(sat2cap_shards), out=str(out), rejects=str(rejects))
    )
    assert report.imported == 6 and report.rejected == 5
    reasons = dict(report.examples)
    assert "truncated" in reasons["000000006"] and "bad satellite" in reasons["000000006"]
    assert "not a recognised image" in reasons["000000007"]
    assert "missing file: 000000008.groundlevel.jpg in 00001.tar" in reasons["000000008"]
    assert "lat out of range" in reasons["000000009"]
    assert reasons["000000003"].startswith("duplicate id")
    assert len(rejects.read_text().splitlines()) == 5

    ds = open_pairs(out)
    table = ds.to_table(columns=["id", "lat", "lon", "split"]).to_pylist()
    assert [r["id"] for r in table] == [f"{i:09d}" for i in (0, 1, 2, 3, 4, 5)]
    assert table[1]["lat"] == pytest.approx(40.01) and table[1]["lon"] == -74.0
    assert read_values(ds, "ground", [2]) == [jpeg(2)]
    assert read_values(ds, "satellite", [4]) == [jpeg(104)]


def test_the_same_import_twice_adds_no_duplicates(sat2cap_shards, tmp_path):
    options = Sat2CapOptions(shards=str(sat2cap_shards), out=str(tmp_path / "p.lance"))
    first = import_sat2cap(options)
    again = import_sat2cap(options)
    # the 6 imported rows are present; the in-shard duplicate of row 3 is rejected again
    assert again.imported == 0 and again.already_present == 6
    assert again.reasons == first.reasons and again.version == first.version
    assert open_pairs(options.out).count_rows() == 6


def test_an_import_that_dies_part_way_leaves_the_dataset_as_it_was(tmp_path):
    columns = {"satellite": geobind.get_registry().modality("satellite")}
    uri = tmp_path / "p.lance"
    good = [
        Candidate(id=f"a{i}", lat=1, lon=2, values={"satellite": png_bytes(i)}) for i in range(3)
    ]
    import_pairs(uri, good, columns)
    version = open_pairs(uri).version

    def dying():
        for i in range(600):  # past one write batch, so Lance has data files in flight
            yield Candidate(id=f"b{i}", lat=1, lon=2, values={"satellite": png_bytes(i)})
        raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        import_pairs(uri, dying(), columns)
    ds = open_pairs(uri)
    assert ds.version == version and ds.count_rows() == 3


@pytest.fixture
def soundingearth(tmp_path: Path) -> Path:
    root = tmp_path / "SoundingEarth"
    (root / "images").mkdir(parents=True)
    (root / "mp3").mkdir()
    rows = ["key,latitude,longitude,description"]
    for i in range(6):
        key = f"rec{i}"
        rows.append(f"{key},{51 + i / 10},{-0.1 * i},birds and wind")
        (root / "images" / f"{key}.jpg").write_bytes(jpeg(i))
        (root / "mp3" / f"{key}.{'wav' if i % 2 else 'flac'}").write_bytes(
            sound(i, "WAV" if i % 2 else "FLAC")
        )
    (root / "mp3" / "rec1.wav").write_bytes(b"")  # empty audio
    (root / "mp3" / "rec2.flac").write_bytes(b"fLaC" + b"\0" * 100)  # undecodable
    (root / "images" / "rec3.jpg").unlink()  # missing image
    rows.append("rec9,-91,0,bad latitude")
    (root / "images" / "rec9.jpg").write_bytes(jpeg(9))
    (root / "mp3" / "rec9.wav").write_bytes(sound(9))
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_soundingearth_layout(soundingearth, tmp_path):
    out = tmp_path / "audio.lance"
    report = import_soundingearth(
        SoundingEarthOptions(
            metadata=str(soundingearth / "metadata.csv"),
            images=str(soundingearth / "images"),
            audio=str(soundingearth / "mp3"),
            out=str(out),
        )
    )
    reasons = dict(report.examples)
    assert report.imported == 3 and report.rejected == 4, report.summary()
    assert "bad audio" in reasons["rec1"] and "empty" in reasons["rec1"]
    assert "bad audio" in reasons["rec2"]
    assert "missing file" in reasons["rec3"] and "rec3.jpg" in reasons["rec3"]
    assert "lat out of range" in reasons["rec9"]
    ds = open_pairs(out)
    assert ds.to_table(columns=["id"]).column("id").to_pylist() == ["rec0", "rec4", "rec5"]
    assert read_values(ds, "audio", [1]) == [sound(4, "FLAC")]


def test_table_import_with_a_column_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "tiles").mkdir()
    for i in range(4):
        (tmp_path / "tiles" / f"t{i}.png").write_bytes(png_bytes(i))
    table = pa.table(
        {
            "place": ["p0", "p1", "p2", "p3"],
            "y": [10.0, 11.0, 12.0, 13.0],
            "x": [1.0, 2.0, 500.0, 4.0],
            "tile": [f"tiles/t{i}.png" for i in range(4)],
            "caption": ["a lake", "a field", "a road", ""],
            "fold": ["train", "val", "test", "train"],
        }
    )
    pq.write_table(table, tmp_path / "places.parquet")
    report = import_table(
        TableOptions(
            table=str(tmp_path / "places.parquet"),
            out=str(tmp_path / "t.lance"),
            id="place",
            lat="y",
            lon="x",
            split="fold",
            columns=["satellite=tile", "text=caption"],
        )
    )
    assert report.imported == 2 and report.rejected == 2
    assert "lon out of range" in dict(report.examples)["p2"]
    assert "bad text: text: empty string" in dict(report.examples)["p3"]
    ds = open_pairs(tmp_path / "t.lance")
    assert ds.to_table(columns=["split"]).column("split").to_pylist() == ["train", "val"]
    assert read_values(ds, "text", [1]) == ["a field"]


def test_table_import_names_a_missing_column(tmp_path):
    (tmp_path / "t.csv").write_text("id,lat,lon\na,1,2\n")
    with pytest.raises(geobind.ConfigError, match=r"no column 'tile' \(columns: id, lat, lon\)"):
        import_table(
            TableOptions(
                table=str(tmp_path / "t.csv"), out=str(tmp_path / "o"), columns=["satellite=tile"]
            )
        )


def test_cli_import_table(tmp_path, capsys):
    from geobind.cli import main

    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "t.csv").write_text("id,lat,lon,tile\na,1,2,a.png\nb,1,2,missing.png\n")
    code = main(
        [
            "import",
            "table",
            "--table",
            str(tmp_path / "t.csv"),
            "--out",
            str(tmp_path / "o.lance"),
            "--columns",
            "satellite=tile",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "imported 1 rows" in out and "rejected 1" in out
    assert "missing file" in out


def test_splits_are_stable_and_roughly_proportional():
    splits = [assign_split(f"id-{i}") for i in range(4000)]
    assert splits == [assign_split(f"id-{i}") for i in range(4000)]
    assert 0.87 < splits.count("train") / 4000 < 0.93
    assert splits.count("val") > 100 and splits.count("test") > 100


def test_table_import_keeps_the_columns_it_does_not_map_labels_and_all(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geobind.data.pairs import label_classes, label_field

    (tmp_path / "tiles").mkdir()
    for i in range(3):
        (tmp_path / "tiles" / f"t{i}.png").write_bytes(png_bytes(i))
    landcover = label_field("landcover", ["water", "forest"], {"water": ["lake"]})
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("tile", pa.string()),
            ("depth_m", pa.int64()),
            ("temperature", pa.float64()),
            landcover,
        ]
    )
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "lat": [1.0, 2.0, 3.0],
            "lon": [4.0, 5.0, 6.0],
            "tile": [f"tiles/t{i}.png" for i in range(3)],
            "depth_m": [12, 7, None],
            "temperature": [21.5, 19.0, 3.25],
            "landcover": [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]],
        },
        schema=schema,
    )
    pq.write_table(table, tmp_path / "places.parquet")
    options = TableOptions(
        table=str(tmp_path / "places.parquet"),
        out=str(tmp_path / "kept.lance"),
        columns=["satellite=tile", "text=depth_m"],  # a string modality from numbers
    )
    report = import_table(options)
    assert report.imported == 2 and report.rejected == 1
    assert (
        dict(report.examples)["c"]
        == "column 'depth_m': expected text or a number, got an empty cell"
    )
    ds = open_pairs(tmp_path / "kept.lance")
    assert ds.schema.names == [
        "id",
        "lat",
        "lon",
        "split",
        "satellite",
        "text",
        "temperature",
        "landcover",
    ]
    assert read_values(ds, "text", [0, 1]) == ["12", "7"]
    assert read_values(ds, "temperature", [0, 1]) == [21.5, 19.0]
    assert label_classes(ds, "landcover") == (["water", "forest"], {"water": ["lake"]})
    again = import_table(options)  # a re-import keeps the same columns and adds nothing
    assert again.imported == 0 and again.already_present == 2

    only = import_table(
        TableOptions(
            table=str(tmp_path / "places.parquet"),
            out=str(tmp_path / "only.lance"),
            columns=["satellite=tile"],
            keep=["landcover"],
        )
    )
    assert only.imported == 3
    assert open_pairs(tmp_path / "only.lance").schema.names[-2:] == ["satellite", "landcover"]


def test_a_kept_column_may_not_overwrite_a_dataset_column(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "t.csv").write_text("id,y,x,lat,tile\na,1,2,3,a.png\n")
    options = TableOptions(
        table=str(tmp_path / "t.csv"),
        out=str(tmp_path / "o"),
        lat="y",
        lon="x",
        columns=["satellite=tile"],
    )
    with pytest.raises(geobind.ConfigError, match="column 'lat' would overwrite"):
        import_table(options)


def test_soundingearth_passes_through_the_metadata_columns_asked_for(soundingearth, tmp_path):
    out = tmp_path / "audio.lance"
    import_soundingearth(
        SoundingEarthOptions(
            metadata=str(soundingearth / "metadata.csv"),
            images=str(soundingearth / "images"),
            audio=str(soundingearth / "mp3"),
            out=str(out),
            keep=["description"],
        )
    )
    assert read_values(open_pairs(out), "description", [0]) == ["birds and wind"]
