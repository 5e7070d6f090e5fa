"""The HTML report, opened in headless Chromium: it loads cleanly and shows everything."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from geobind.data.world_source import WorldOptions, make_world
from geobind.eval.report import write_report
from geobind.testing import train_tiny_space

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
    "--dump-dom",
]


def chromium() -> str:
    """Debian's chromium; CI installs it (.ci/run), elsewhere the test says how to get it."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium); CI installs it")
    return path


def open_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after load, and every console message it logged."""
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


@pytest.fixture(scope="module")
def space_and_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    make_world(WorldOptions(out=str(root / "world"), places=60, workers=1), progress=False)
    world = root / "world"
    space = train_tiny_space(
        root / "space", world / "captions.lance", world / "ground.lance", batch_size=4
    )
    return space, world / "heldout.lance"


def test_report_loads_without_console_errors_and_shows_every_part(space_and_data, tmp_path):
    space, data = space_and_data
    out = write_report(
        space,
        tmp_path / "report.html",
        data=data,
        queries=["waves on a sandy beach", "a busy street"],
        top=4,
    )
    page = out.read_text()
    for heading in (
        "Encoders",
        "Training",
        "Retrieval on",
        "Where it works",
        "Zero-shot",
        "Example queries",
    ):
        assert heading in page
    # 6 held-out places: the comparison is read at R@5, the largest cut-off in the gallery
    assert "<th>floor R@5</th><th>x floor</th><th>x floor, 95%</th><th>ceiling R@5</th>" in page
    assert 'aria-label="clip: loss"' in page and 'aria-label="anchor: loss"' in page
    assert page.count("<img") == 4  # top tiles and a map for each of the two queries

    dom, console = open_in_chromium(out, tmp_path / "profile")
    assert console == [], console
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body))
    assert attrs["ready"] == "yes"
    assert attrs["images"] == attrs["images-loaded"] == "4"
    assert int(attrs["tables"]) == 4  # encoders, retrieval, by land cover, zero-shot


def test_report_without_data_still_shows_encoders_and_curves(space_and_data, tmp_path):
    space, _ = space_and_data
    out = write_report(space, tmp_path / "r.html")
    dom, console = open_in_chromium(out, tmp_path / "profile")
    assert console == []
    assert 'data-tables="1"' in dom and "satellite" in dom


def test_cli_report(space_and_data, tmp_path, capsys):
    from geobind.cli import main

    space, data = space_and_data
    out = tmp_path / "cli.html"
    assert (
        main(["report", str(space), "--out", str(out), "--data", str(data), "--query", "a forest"])
        == 0
    )
    assert f"report written to {out}" in capsys.readouterr().out
    assert out.read_text().count("<img") == 2


def test_report_zero_shot_names_class_words_its_text_tower_never_read():
    from geobind.eval.report import _zeroshot

    scores = {"accuracy": 0.5, "chance": 0.125, "majority": 0.4, "majority_class": "farmland"}
    result = {"skipped": None, "modalities": {"satellite": {**scores, "places": 10}}}
    assert "untrained" not in _zeroshot({**result, "unlearned_words": {}})
    page = _zeroshot({**result, "unlearned_words": {"farmland": ["field"], "forest": ["wood"]}})
    assert "untrained tokens (farmland: field; forest: wood)" in page
