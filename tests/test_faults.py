"""Bad inputs and injected faults that any later change must keep handling.

Corrupt, empty and bomb images and sounds, bad coordinates, non-UTF-8 text; a failure and a
SIGKILL at each write point of a space commit and of a checkpoint; a full disk; searches during
index rebuilds. Each test names the case of "nothing lost, nothing half-written" it covers:
(1) zero-length stages, (2) atomic writes, (3) bombs, (4) search during a rebuild, (5) one-line
errors and exit codes, (6) text per row, (7) logs, (8) the smaller ones, (9) Lightning pickles.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from write_points import commit_new_towers, fault_at, new_towers

from geobind.cli import main
from geobind.data import open_pairs
from geobind.data.importing import Candidate, import_pairs
from geobind.encoders.media import MAX_PIXELS_ENV, decode_image
from geobind.encoders.weights import is_temporary
from geobind.errors import ConfigError, InputError
from geobind.eval.evaluate import run_eval
from geobind.eval.report import write_report
from geobind.plugins import get_registry
from geobind.search.index import build_index, open_index
from geobind.space import Space, SpaceError, last_run, load_space, log_records
from geobind.testing import png_bytes, train_tiny_space, write_tiny_pairs
from geobind.train import load_recipe, train
from geobind.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from geobind.train.stage import StageRun

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A pair dataset, a space trained on it (its recipe beside it), an index of its tiles."""
    root = tmp_path_factory.mktemp("faults")
    write_tiny_pairs(root / "pairs.lance", 32)
    train_tiny_space(root / "space", root / "pairs.lance")
    build_index(load_space(root / "space"), root / "pairs.lance")
    return root


@pytest.fixture
def space(world, tmp_path) -> Path:
    """A copy of the trained space."""
    return Path(shutil.copytree(world / "space", tmp_path / "space"))


@pytest.fixture
def recipe(world, space) -> list[str]:
    """The recipe that trained the space, and the override that makes it train the copy."""
    return [str(world / "space-recipe.yaml"), f"space={space}"]


def cli(capsys, *args) -> tuple[int, list[str]]:
    """Run ``geobind ARGS``: the exit code and the lines it wrote to stderr (no progress bars)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.replace("\r", "\n")
    return code, [line for line in err.splitlines() if line.startswith("geobind:")]


def shas(space: Path) -> dict[str, str]:
    return {name: e.sha256 for name, e in Space(space).entries.items()}


def leftovers(folder: Path) -> list[str]:
    """Temporaries anywhere under ``folder``, and weights files no manifest names."""
    found = [str(p) for p in folder.rglob("*") if is_temporary(p)]
    if (folder / "manifest.json").exists():
        named = {e.weights for e in Space(folder).entries.values()}
        found += [p.name for p in folder.glob("*.safetensors") if p.name not in named]
    return found


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: tiny on disk, huge decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    rows = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def sound(seconds: float, rate: int = 16000, silent: bool = False) -> bytes:
    wave = np.zeros(int(seconds * rate), "float32")
    if not silent:
        wave = 0.1 * np.random.default_rng(0).standard_normal(wave.shape[0]).astype("float32")
    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, format="FLAC")
    return buf.getvalue()


# -- (1) a stage of no steps never replaces trained weights -------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("epochs", 0, ">= 1"),
        ("epochs", -1, ">= 1"),
        ("batch_size", -64, ">= 1"),
        ("batch_size", 0, ">= 1"),
        ("lr", -0.001, "> 0"),
        ("lr", "nan", "> 0"),
        ("weight_decay", -0.1, ">= 0"),
        ("warmup_steps", -1, ">= 0"),
        ("checkpoint_every", 0, ">= 1"),
        ("val_every", -5, ">= 0"),
        ("val_rows", 0, ">= 2"),
        ("workers", -1, ">= 0"),
        ("temperature", 0, "> 0"),
        ("max_steps", -1, ">= 0"),
        ("betas", "[0.9,1.5]", "two numbers in"),
    ],
)
def test_stage_settings_out_of_range_are_refused_naming_the_key(recipe, key, value, rule):
    with pytest.raises(ConfigError, match=rf"stages\.anchor\.{key} must be {rule}"):
        load_recipe(recipe[0], [*recipe[1:], f"stages.anchor.{key}={value}"])


def test_a_zero_epoch_stage_fails_and_keeps_the_trained_weights(space, recipe, capsys):
    before = {p.name: p.read_bytes() for p in space.glob("*.safetensors")}
    code, lines = cli(capsys, "train", *recipe, "stages.anchor.epochs=0")
    assert code == 1 and lines == [
        f"geobind: error: {recipe[0]}: stages.anchor.epochs must be >= 1, got 0"
    ]
    assert {p.name: p.read_bytes() for p in space.glob("*.safetensors")} == before


def test_only_an_import_stage_with_weights_may_have_zero_steps(space, recipe, tmp_path):
    with pytest.raises(ConfigError, match=r"max_steps is 0 .*student.weights is 'space:ground'"):
        load_recipe(recipe[0], [*recipe[1:], "stages.anchor.max_steps=0"])
    text = Space(space).weights_path("text")
    with pytest.raises(ConfigError, match=r"max_steps is 0 .*teacher.weights is not given"):
        load_recipe(recipe[0], ["stages.clip.max_steps=0", f"stages.clip.student.weights={text}"])
    imported = load_recipe(
        recipe[0],
        [
            "stages.clip.max_steps=0",
            f"stages.clip.student.weights={text}",
            f"stages.clip.teacher.weights={Space(space).weights_path('ground')}",
            f"space={tmp_path / 'imported'}",
        ],
    )
    imported.stages["anchor"].enabled = False
    train(imported, say=str)  # the documented way published towers enter a space
    assert Space(tmp_path / "imported").weights_path("text").read_bytes() == text.read_bytes()


# -- (2) a commit is atomic: a crash at any write point leaves the old space or the new ---------
def test_a_failure_at_each_write_point_of_a_commit_leaves_the_old_space_or_the_new(space, tmp_path):
    old = shas(space)
    towers, new = new_towers(space)
    probe = Path(shutil.copytree(space, tmp_path / "probe"))
    with fault_at(None, probe) as points:
        commit_new_towers(probe, towers)
    assert len(points) >= 16  # three weights files and the manifest: made, synced, renamed
    for point, name in enumerate(points):
        copy = Path(shutil.copytree(space, tmp_path / f"at-{point}"))
        with pytest.raises(OSError) as failed, fault_at(point, copy):
            commit_new_towers(copy, towers)
        assert failed.value.errno == errno.ENOSPC, name
        if not name.startswith("unlink"):
            assert failed.value.filename, name  # a full disk names the file
        assert shas(load_space(copy).path) in (old, new), f"point {point} ({name})"
        commit_new_towers(copy, towers)  # the next write collects what the failed one left
        assert leftovers(copy) == [], f"point {point} ({name})"
        load_space(copy)


def test_sigkill_at_each_write_point_of_a_commit_leaves_a_loadable_space(space, tmp_path):
    old = shas(space)
    shutil.copytree(space, tmp_path / "kills" / "base")
    ends = run_worker("space", tmp_path / "kills")
    assert all(ends["killed"]) and len(ends["killed"]) >= 16
    new = shas(tmp_path / "kills" / "count")
    seen = set()
    for point in range(len(ends["killed"])):
        copy = tmp_path / "kills" / str(point)
        now = shas(load_space(copy).path)
        assert now in (old, new), f"point {point} ({ends['points'][point]})"
        seen.add(now == new)
        Space(copy).put(Space(copy).encoder("text"), "again", Space(copy).entry("text").aligned_to)
        assert leftovers(copy) == [], f"point {point}"
    assert seen == {False, True}  # killed before the commit point, and after it


def run_worker(kind: str, root: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / "fault_worker.py"), kind, str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_failure_or_sigkill_at_each_write_point_of_a_checkpoint_keeps_one_to_resume(tmp_path):
    base = tmp_path / "ckpt" / "base"
    torch.manual_seed(0)
    first = torch.nn.Linear(4, 4)
    save_checkpoint(base, 1, {"student": first}, {"recipe": "r"})
    ends = run_worker("checkpoint", tmp_path / "ckpt")
    assert all(ends["killed"]) and len(ends["killed"]) >= 6
    for point, name in enumerate(ends["points"]):
        for folder in (tmp_path / "ckpt" / str(point), failed_save(base, tmp_path, point)):
            latest = latest_checkpoint(folder)
            assert latest is not None and latest.name in ("step-0000001", "step-0000002"), name
            module = torch.nn.Linear(4, 4)
            assert load_checkpoint(latest, {"student": module})["step"] in (1, 2)
            if latest.name == "step-0000001":
                assert torch.equal(module.weight, first.weight), f"point {point} ({name})"
            save_checkpoint(folder, 3, {"student": module}, {"recipe": "r"})
            assert sorted(p.name for p in folder.iterdir()) == ["step-0000003"], name


def failed_save(base: Path, tmp_path: Path, point: int) -> Path:
    """A copy of ``base`` where saving a second checkpoint met a full disk at ``point``."""
    folder = Path(shutil.copytree(base, tmp_path / f"failed-{point}"))
    try:
        with fault_at(point, folder):
            torch.manual_seed(1)
            save_checkpoint(folder, 2, {"student": torch.nn.Linear(4, 4)}, {"recipe": "r"})
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        assert [p for p in folder.iterdir() if is_temporary(p)] == []  # a failed save cleans up
    # else: the fault hit the removal of the old checkpoint, which waits for the next save
    return folder


def test_a_reader_never_loads_a_mix_while_a_writer_commits(space):
    old = shas(space)
    views: list[dict] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            views.append(shas(load_space(space).path))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        news = []
        for _ in range(5):
            towers, sha = new_towers(space)
            commit_new_towers(space, towers)
            news.append(sha)
    finally:
        stop.set()
        reader.join()
    assert views and all(view in [old, *news] for view in views)


# -- (3) bombs, huge, empty and corrupt images and sounds ---------------------------------------
def test_bad_images_sounds_and_coordinates_are_rejected_row_by_row(tmp_path, capsys):
    files = {
        "good.png": png_bytes(1),
        "bomb.png": png_bomb(20000, 20000),  # 400 megapixels in a few dozen kilobytes
        "huge.png": png_bomb(12000, 12000),  # legal, but over the default limit
        "empty.png": b"",
        "cut.png": png_bytes(2)[:60],
        "good.flac": sound(0.5),
        "empty.flac": b"",
        "noise.flac": b"fLaC" + bytes(200),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rows = [
        ("ok", 1, 2, "good.png", "good.flac"),
        ("bomb", 1, 2, "bomb.png", "good.flac"),
        ("huge", 1, 2, "huge.png", "good.flac"),
        ("blank", 1, 2, "empty.png", "good.flac"),
        ("cut", 1, 2, "cut.png", "good.flac"),
        ("mute", 1, 2, "good.png", "empty.flac"),
        ("noise", 1, 2, "good.png", "noise.flac"),
        ("north", 91, 2, "good.png", "good.flac"),
        ("west", 1, -180.5, "good.png", "good.flac"),
        ("word", "abc", 2, "good.png", "good.flac"),
        ("nan", "NaN", 2, "good.png", "good.flac"),
        ("none", "", 2, "good.png", "good.flac"),
    ]
    (tmp_path / "t.csv").write_text(
        "id,lat,lon,tile,sound\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    code, lines = cli(
        capsys,
        *("import", "table", "--table", tmp_path / "t.csv", "--out", tmp_path / "x.lance"),
        *("--columns", "satellite=tile", "--columns", "audio=sound"),
        *("--rejects", tmp_path / "rejects.jsonl"),
    )
    assert code == 0 and lines == []
    reasons = {
        r["id"]: r["reason"]
        for r in map(json.loads, (tmp_path / "rejects.jsonl").read_text().splitlines())
    }
    expected = {
        "bomb": "400000000 pixels is over the limit of 64000000 pixels",
        "huge": "12000x12000 pixels is over the limit",
        "blank": "image: empty file",
        "cut": "corrupt or truncated",
        "mute": "audio:",
        "noise": "audio:",
        "north": "lat out of range: 91",
        "west": "lon out of range: -180.5",
        "word": "bad lat: 'abc' is not a number",
        "nan": "bad lat: NaN",
        "none": "missing lat",
    }
    assert reasons.keys() == expected.keys()
    for row_id, words in expected.items():
        assert words in reasons[row_id], (row_id, reasons[row_id])
    assert open_pairs(tmp_path / "x.lance").to_table(columns=["id"]).column("id").to_pylist() == [
        "ok"
    ]


def test_a_bomb_query_is_one_error_line_naming_the_file(space, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    code, lines = cli(capsys, "search", space, "--image", bomb)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"geobind: error: {bomb}: image: 400000000 pixels is over")


def test_the_pixel_limit_is_configurable_per_modality_and_by_environment(monkeypatch):
    image = png_bytes(3, size=64)  # 4096 pixels
    with pytest.raises(InputError, match="64x64 pixels is over the limit of 4000 pixels"):
        decode_image(image, 4000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "4000")
    with pytest.raises(InputError, match="over the limit of 4000"):
        decode_image(image)
    assert decode_image(image, 5000).size == (64, 64)  # a modality's own limit wins
    from geobind.encoders.vision import VisionConfig, vision_preprocess

    small = vision_preprocess(VisionConfig(max_pixels=1000), train=False)
    with pytest.raises(InputError, match="over the limit of 1000"):
        small(image)


def test_a_long_sound_is_checked_and_read_in_bounded_memory():
    import tracemalloc

    from geobind.config import make_config

    hour = sound(3600, rate=8000, silent=True)  # 28.8 M samples: 115 MB as float32
    audio = get_registry().modality("audio")
    prep = audio.build_preprocess(make_config(audio.config, {"sample_rate": 8000}), False)
    tracemalloc.start()
    try:
        audio.check(hour)
        clips = prep(hour)  # embedded as 12 clips spread over the hour, each read alone
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [tuple(c.shape) for c in clips] == [(5 * 8000,)] * 12
    assert peak < 16 * 2**20


# -- (4) searches during rebuilds ---------------------------------------------------------------
def test_searches_keep_answering_while_the_index_is_rebuilt(world, space, tmp_path):
    opened = load_space(space)
    data = world / "pairs.lance"
    out = tmp_path / "index" / "tiles.lance"
    build_index(opened, data, out=out)
    ids = open_pairs(data).to_table(columns=["id"]).column("id").to_pylist()[:4]
    queries = opened.embed("satellite", [png_bytes(i) for i in range(4)])
    held = open_index(opened, out)  # opened before every rebuild, used after them
    done, failures, answered = threading.Event(), [], []

    def rebuild() -> None:
        try:
            for turn in range(8):  # with and without a vector index, in turn
                build_index(opened, data, out=out, min_rows_for_ann=1 if turn % 2 else 10**9)
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    builder = threading.Thread(target=rebuild)
    builder.start()
    try:
        while not done.is_set() or len(answered) < 2:
            for index in (open_index(opened, out), held):
                answered.append([hits[0]["id"] for hits in index.query(queries, top=1)])
    finally:
        done.wait()
        builder.join()
    assert failures == [] and all(found == ids for found in answered)


def test_searches_from_another_process_survive_rebuilds(world, space, tmp_path):
    opened = load_space(space)
    data, out = world / "pairs.lance", tmp_path / "tiles.lance"
    build_index(opened, data, out=out)
    first, stop = tmp_path / "first", tmp_path / "stop"
    loop = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, sys\nfrom geobind.cli import main\nn = 0\n"
            f"while not pathlib.Path({str(stop)!r}).exists():\n"
            f"    code = main(['search', {str(space)!r}, '--index', {str(out)!r}, "
            "'--text', 'a place with 3 trees', '--top', '3'])\n"
            "    if code:\n        sys.exit(f'search {n} failed')\n"
            f"    n += 1\n    pathlib.Path({str(first)!r}).touch()\nprint(n)\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not first.exists():  # the searcher is up before the rebuilds begin
            assert loop.poll() is None, loop.stderr.read()[-2000:]
            threading.Event().wait(0.05)
        for turn in range(6):
            build_index(opened, data, out=out, min_rows_for_ann=1 if turn % 2 else 10**9)
    finally:
        stop.touch()
        out_text, err = loop.communicate(timeout=300)
    assert loop.returncode == 0, err[-2000:]
    assert int(out_text.splitlines()[-1]) >= 1


# -- (5) one line, naming what is at fault; the exit code says whether anything was done --------
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("stages.anchor.lr=-1e-3", "stages.anchor.lr must be > 0, got -0.001"),
        ("stages.anchor.batch_size=0", "stages.anchor.batch_size must be >= 1, got 0"),
        ("stages.anchor.checkpoint_every=0", "stages.anchor.checkpoint_every must be >= 1"),
    ],
)
def test_bad_stage_settings_are_one_error_line(recipe, capsys, override, words):
    code, lines = cli(capsys, "train", *recipe, override)
    assert code == 1 and len(lines) == 1 and words in lines[0]


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ("[]", "expected a JSON object, got list"),
        ('{"format": "1", "anchor": "satellite", "modalities": {}}', "'format' must be a whole"),
        ('{"format": 1, "anchor": "satellite", "modalities": []}', "'modalities' must be"),
        ('{"format": 1, "anchor": "satellite", "modalities": {"text": {}}}', "lacks modality"),
        ("{", "not valid JSON"),
    ],
)
def test_a_malformed_manifest_is_one_error_line(space, capsys, manifest, words):
    (space / "manifest.json").write_text(manifest)
    code, lines = cli(capsys, "search", space, "--text", "a beach")
    assert code == 1 and len(lines) == 1 and words in lines[0] and "manifest.json" in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--text", "a beach", "--top", "0"], "--top must be at least 1, got 0"),
        (["--text", "   "], "--text: empty query"),
        (["--audio", "/nowhere/rain.flac"], "/nowhere/rain.flac: query file not found"),
    ],
)
def test_cheap_argument_checks_come_before_any_model_loads(space, capsys, monkeypatch, args, words):
    import geobind.cli.search as commands

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(commands, "load_space", no_model)
    code, lines = cli(capsys, "search", space, *args)
    assert code == 1 and lines == [f"geobind: error: {words}"]


@pytest.mark.parametrize(
    ("flag", "name", "data", "words"),
    [
        ("--audio", "cut.wav", None, "too short to embed"),
        ("--audio", "noise.flac", b"fLaC" + bytes(range(256)) * 4, "audio"),
        ("--image", "tile.png", b"not a picture at all", "not a recognised image format"),
    ],
)
def test_a_query_file_that_does_not_decode_fails_before_any_model_loads(
    space, tmp_path, capsys, monkeypatch, flag, name, data, words
):
    import geobind.cli.search as commands

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the query file was checked")

    path = tmp_path / name
    if data is None:  # a WAV cut short: its header and 8 ms of samples
        buf = io.BytesIO()
        soundfile.write(buf, np.zeros(16000, np.float32), 16000, format="WAV", subtype="PCM_16")
        data = buf.getvalue()[:300]
    path.write_bytes(data)
    monkeypatch.setattr(commands, "load_space", no_model)
    code, lines = cli(capsys, "search", space, flag, path)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"geobind: error: {path}: ") and words in lines[0]


def test_a_full_disk_says_so_and_leaves_no_temporaries(space, tmp_path, capsys):
    out = tmp_path / "report.html"
    with fault_at(None, tmp_path) as calls:
        assert main(["report", str(space), "--out", str(out)]) == 0
    out.write_text("the old report")
    fsync = next(i for i, c in enumerate(calls) if c.startswith("fsync") and "report" in c)
    with fault_at(fsync, tmp_path):
        code, lines = cli(capsys, "report", space, "--out", out)
    assert code == 1 and lines == [
        f"geobind: error: the disk is full: {out}; nothing half-written was kept: "
        f"free some space and run the command again"
    ]
    assert out.read_text() == "the old report" and leftovers(tmp_path) == []


def test_a_full_disk_while_saving_a_checkpoint_says_so(tmp_path):
    folder = tmp_path / "ckpt"
    with fault_at(None, folder) as calls:
        save_checkpoint(folder, 1, {"student": torch.nn.Linear(2, 2)}, {})
    state_write = next(i for i, c in enumerate(calls) if c.startswith("fsync") and "state" in c)
    with (
        pytest.raises(OSError, match=r"No space left on device: .*state\.pt"),
        fault_at(state_write, folder),
    ):
        save_checkpoint(folder, 2, {"student": torch.nn.Linear(2, 2)}, {})
    assert sorted(p.name for p in folder.iterdir()) == ["step-0000001"]


def full_tmpfs(
    tmp_path: Path, command: list[str], size: str = "256k"
) -> subprocess.CompletedProcess:
    """Run ``geobind COMMAND`` with ``DISK`` replaced by a tmpfs of ``size``, mounted in a
    mount namespace of its own (nothing outside the command sees it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size={size} tmpfs {disk} && exec "$@"'
    argv = [a.replace("DISK", str(disk)) for a in command]
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs t /mnt"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("no unprivileged mount namespace here to mount a small tmpfs in")
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
        + [sys.executable, "-m", "geobind.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lance_writes_on_a_full_disk_say_so_and_leave_nothing(world, space, tmp_path):
    shutil.copytree(world / "pairs.lance", tmp_path / "pairs.lance")
    rows = "id,lat,lon,tile\n" + "".join(f"p{i},1,2,t{i}.png\n" for i in range(40))
    (tmp_path / "t.csv").write_text(rows)
    for i in range(40):
        (tmp_path / f"t{i}.png").write_bytes(png_bytes(i, size=96))
    done = full_tmpfs(
        tmp_path,
        [
            *("import", "table", "--table", str(tmp_path / "t.csv"), "--out", "DISK/x.lance"),
            *("--columns", "satellite=tile", "--rejects", "DISK/rejects.jsonl"),
        ],
    )
    lines = [line for line in done.stderr.splitlines() if "geobind: error:" in line]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-2000:]
    assert "the disk is full" in lines[0] and "/rust/" not in lines[0]
    assert not (tmp_path / "disk").exists() or not any((tmp_path / "disk").iterdir())


def test_a_failure_after_a_stored_stage_exits_3_naming_what_was_stored(world, tmp_path, capsys):
    code, lines = cli(
        capsys,
        *("train", world / "space-recipe.yaml", f"space={tmp_path / 'new'}"),
        f"stages.anchor.data={tmp_path / 'gone.lance'}",
    )
    assert code == 3 and len(lines) == 1
    assert "not a Lance pair dataset" in lines[0] and "before it: clip" in lines[0]
    assert Space(tmp_path / "new").has("text") and not Space(tmp_path / "new").has("satellite")


# -- (6) text columns are decoded row by row ----------------------------------------------------
def test_a_non_utf8_caption_rejects_only_its_row(tmp_path, capsys):
    (tmp_path / "tile.png").write_bytes(png_bytes(1))
    table = b"id,lat,lon,tile,caption\n"
    table += b"a,1,2,tile.png,a sunny beach\n"
    table += b"b,1,2,tile.png,caf\xe9 by the road\n"  # latin-1
    table += b"c,1,2,tile.png,a forest\n"
    (tmp_path / "t.csv").write_bytes(table)
    common = [
        "--table",
        tmp_path / "t.csv",
        "--columns",
        "satellite=tile",
        "--columns",
        "text=caption",
    ]
    assert cli(capsys, "import", "table", *common, "--out", tmp_path / "x.lance")[0] == 0
    ds = open_pairs(tmp_path / "x.lance")
    assert ds.to_table(columns=["id"]).column("id").to_pylist() == ["a", "c"]
    rejects = tmp_path / "r.jsonl"
    main(
        [
            "import",
            "table",
            *map(str, common),
            "--out",
            str(tmp_path / "y.lance"),
            "--rejects",
            str(rejects),
        ]
    )
    assert json.loads(rejects.read_text())["reason"].startswith(
        "bad text: not valid UTF-8 (byte 0xe9"
    )
    main(
        [
            "import",
            "table",
            *map(str, common),
            "--out",
            str(tmp_path / "z.lance"),
            "--encoding",
            "latin-1",
        ]
    )
    texts = open_pairs(tmp_path / "z.lance").to_table(columns=["text"]).column("text").to_pylist()
    assert texts[1] == "café by the road"


# -- (7) each run of a stage starts its log afresh; a resumed run repeats no step ---------------
def _interrupted_at_step_3(retrain, monkeypatch) -> None:
    """Train ``retrain``'s anchor stage until its checkpoint at step 2 and one step more."""
    step = StageRun.train_step
    calls = []

    def dying(self, batch):
        calls.append(1)
        if len(calls) == 4:  # after the checkpoint at step 2 and the log of step 3
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(StageRun, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train(retrain, say=str)
    monkeypatch.setattr(StageRun, "train_step", step)


def test_a_retrained_then_resumed_stage_logs_each_step_once(space, recipe, monkeypatch):
    # another run of the anchor stage: 3 epochs of 2 steps, a checkpoint every 2
    again = ["stages.anchor.epochs=3", "stages.anchor.checkpoint_every=2"]
    retrain = load_recipe(recipe[0], [*recipe[1:], *again])
    _interrupted_at_step_3(retrain, monkeypatch)
    train(retrain, say=str)
    records = log_records((space / "logs" / "anchor.jsonl").read_text())
    steps = [r["step"] for r in records if not r.get("final")]
    assert steps == list(range(1, 7)) and [r["step"] for r in records if r.get("final")] == [6]


def test_a_checkpoint_of_another_recipe_or_teacher_is_never_where_a_run_starts(
    space, recipe, monkeypatch, tmp_path
):
    fresh = Path(shutil.copytree(space, tmp_path / "fresh"))
    again = ["stages.anchor.epochs=3", "stages.anchor.checkpoint_every=2"]
    _interrupted_at_step_3(load_recipe(recipe[0], [*recipe[1:], *again]), monkeypatch)
    checkpoints = space / "checkpoints" / "anchor"
    assert (checkpoints / "step-0000002").is_dir()
    # the recipe changed since: the run starts afresh, from the initialisation, not from the
    # weights of the other recipe's checkpoint
    other = [*again, "stages.anchor.lr=2e-3"]
    train(load_recipe(recipe[0], [*recipe[1:], *other]), say=str)
    train(load_recipe(recipe[0], [f"space={fresh}", *other]), say=str)
    assert shas(space)["satellite"] == shas(fresh)["satellite"]

    # a checkpoint of this very recipe, but learned against another frozen teacher (its
    # student weights changed to tell them apart): never resumed; with today's teacher, it is
    from safetensors.torch import load_file, save_file

    def tampered(teacher: str | None) -> None:
        _interrupted_at_step_3(load_recipe(recipe[0], [*recipe[1:], *third]), monkeypatch)
        step = checkpoints / "step-0000002"
        weights = {k: v + 0.01 for k, v in load_file(step / "student.safetensors").items()}
        save_file(weights, step / "student.safetensors")
        state = torch.load(step / "state.pt", weights_only=True)
        torch.save({**state, "teacher": teacher or state["teacher"]}, step / "state.pt")
        train(load_recipe(recipe[0], [*recipe[1:], *third]), say=str)

    third = [*again, "stages.anchor.lr=3e-3"]
    train(load_recipe(recipe[0], [f"space={fresh}", *third]), say=str)
    tampered("0" * 64)
    assert shas(space)["satellite"] == shas(fresh)["satellite"]
    fourth = [*again, "stages.anchor.lr=4e-3"]
    third[:] = fourth  # another recipe again, so that the stage trains once more
    train(load_recipe(recipe[0], [f"space={fresh}", *fourth]), say=str)
    tampered(None)  # the right teacher: resumed from the changed weights
    assert shas(space)["satellite"] != shas(fresh)["satellite"]


def test_the_report_plots_the_last_run_of_a_log_that_holds_several(space, tmp_path):
    import re

    runs = [
        *({"step": s, "loss": 9.0} for s in (1, 2, 3)),
        {"step": 3, "final": True},
        *({"step": s, "loss": 1.0} for s in (1, 2)),
        {"step": 2, "final": True},
    ]  # as an older geobind appended a second run to the first
    text = "".join(json.dumps(r) + "\n" for r in runs) + '{"step": 3, "lo'  # cut by a kill
    (space / "logs" / "anchor.jsonl").write_text(text)
    assert [r["step"] for r in last_run(log_records(text))] == [1, 2, 2]
    page = write_report(space, tmp_path / "report.html").read_text()
    curve = re.search(r'aria-label="anchor: loss".*?points="([^"]*)"', page)
    assert curve is not None and len(curve.group(1).split()) == 2  # the last run's two steps


# -- (8) the smaller ones -----------------------------------------------------------------------
def test_import_counts_versions_and_exit_codes(tmp_path, capsys):
    (tmp_path / "tile.png").write_bytes(png_bytes(1))
    (tmp_path / "t.csv").write_text(
        "id,lat,lon,tile\na,1,2,tile.png\na,1,2,tile.png\nb,NaN,2,tile.png\n"
    )
    args = ["import", "table", "--table", tmp_path / "t.csv", "--columns", "satellite=tile"]
    out = tmp_path / "x.lance"
    assert cli(capsys, *args, "--out", out)[0] == 0
    version = open_pairs(out).version
    assert main([str(a) for a in [*args, "--out", out]]) == 0
    summary = capsys.readouterr().out
    assert open_pairs(out).version == version  # a no-op import adds no version
    assert "imported 0 rows, 1 already present, rejected 2" in summary
    assert "duplicate id" in summary and "bad lat: NaN is not a coordinate" in summary
    (tmp_path / "bad.csv").write_text("id,lat,lon,tile\nc,100,2,tile.png\n")
    code, lines = cli(
        capsys,
        "import",
        "table",
        "--table",
        tmp_path / "bad.csv",
        "--columns",
        "satellite=tile",
        "--out",
        tmp_path / "y.lance",
    )
    assert code == 1 and lines == [
        f"geobind: error: nothing imported into {tmp_path / 'y.lance'}: every row was rejected"
    ]
    assert not (tmp_path / "y.lance").exists()


def test_an_aborted_import_writes_no_rejects_file(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text("an older list\n")
    satellite = get_registry().modality("satellite")

    def rows():
        yield Candidate("bad", 95, 0, {"satellite": png_bytes(1)})
        yield Candidate("ok", 1, 0, {"satellite": png_bytes(2)})
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        import_pairs(tmp_path / "x.lance", rows(), {"satellite": satellite}, rejects=rejects)
    assert rejects.read_text() == "an older list\n" and leftovers(tmp_path) == []
    assert not (tmp_path / "x.lance").exists()


def test_lance_errors_name_the_users_whole_path_and_not_lances_sources(tmp_path, capsys):
    folder = tmp_path / "not-a-dataset.lance"
    folder.mkdir()
    code, lines = cli(capsys, "data", "show", folder)
    assert code == 1 and len(lines) == 1
    assert f"not a Lance pair dataset: {folder} (" in lines[0]
    assert ".rs:" not in lines[0] and f" {str(folder)[1:]}" not in lines[0]
    code, lines = cli(capsys, "data", "show", tmp_path / "missing.lance")
    assert code == 1 and lines == [
        f"geobind: error: not a Lance pair dataset: {tmp_path / 'missing.lance'} "
        f"(no such file or folder)"
    ]


def test_eval_of_a_space_with_a_stale_modality_evaluates_the_others(world, space, tmp_path):
    manifest = json.loads((space / "manifest.json").read_text())
    entries = manifest["modalities"]
    # text was aligned to an anchor since retrained; ground to the anchor of now
    entries["ground"]["aligned_to"] = {
        "modality": "satellite",
        "sha256": entries["satellite"]["sha256"],
    }
    entries["text"]["aligned_to"] = {"modality": "satellite", "sha256": "0" * 64}
    (space / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpaceError, match="'text' was aligned to 'satellite'"):
        load_space(space)
    said: list[str] = []
    result = run_eval(space, str(world / "pairs.lance"), out=tmp_path / "eval", say=said.append)
    assert result["modalities"] == ["ground", "satellite"] and list(result["stale"]) == ["text"]
    assert {(r["query"], r["gallery"]) for r in result["retrieval"]} == {
        ("ground", "satellite"),
        ("satellite", "ground"),
    }
    assert "not evaluated, stale: 'text' was aligned to 'satellite'" in said[0]


def test_the_report_is_written_with_the_mode_of_any_new_file(space, tmp_path):
    old = os.umask(0o022)
    try:
        write_report(space, tmp_path / "report.html")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644


# -- (9) a Lightning checkpoint loads without running or importing what it pickles --------------
def test_a_lightning_checkpoint_loads_without_unpickling_its_code(tmp_path, monkeypatch):
    import geobind

    marker = tmp_path / "ran"
    (tmp_path / "lightning_like.py").write_text(
        "import argparse, os\n"
        "class AttributeDict(dict):\n"
        "    def __setstate__(self, state):\n"
        f"        open({str(marker)!r}, 'w').write('setstate ran')\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import lightning_like

    hparams = lightning_like.AttributeDict(lr=5e-5, vit="32")
    hparams.__dict__["extra"] = 1  # so that it pickles a state to set
    state = {"imo_encoder.weight": torch.ones(2, 3), "bias": torch.nn.Parameter(torch.zeros(2))}
    path = tmp_path / "sat2cap.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": hparams, "callbacks": lightning_like.Payload()},
        path,
    )
    del sys.modules["lightning_like"]
    (tmp_path / "lightning_like.py").unlink()  # the class can no longer be imported
    loaded = geobind.read_state_dict(path)
    assert torch.equal(loaded["imo_encoder.weight"], torch.ones(2, 3))
    assert isinstance(loaded["bias"], torch.nn.Parameter)
    assert not marker.exists() and "lightning_like" not in sys.modules
    from geobind.encoders.torch_pickle import Inert, load_inert

    whole = load_inert(path)
    assert isinstance(whole["hyper_parameters"], Inert) and whole["hyper_parameters"]["lr"] == 5e-5
    assert whole["callbacks"].pickled_as in ("posix.system", "nt.system")
    assert not marker.exists()


def test_the_torch_internal_the_unpickler_relies_on_is_there():
    from geobind.encoders.torch_pickle import torch_allowed_globals

    allowed = torch_allowed_globals()  # torch._weights_only_unpickler._get_allowed_globals
    assert allowed["torch._utils._rebuild_tensor_v2"] is torch._utils._rebuild_tensor_v2
    assert "builtins.eval" not in allowed and "os.system" not in allowed
