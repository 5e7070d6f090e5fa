"""The command line: plugin listing, and a start-up that imports nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "laion_clap",
    "open_clip",
    "lance",
    "pyarrow",
    "numpy",
    "scipy",
    "PIL",
    "rasterio",
    "pyproj",
    "shapely",
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120
    )


def geobind_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_python(
        f"import sys; from geobind.cli import main; sys.exit(main({list(args)!r}))", **env
    )


def test_plugins_json_lists_the_shipped_plugins_and_their_modalities():
    result = geobind_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    by_dist = {p["distribution"]: p for p in listing["plugins"]}
    assert by_dist["geobind"]["modalities"] == ["satellite"] and by_dist["geobind"]["builtin"]
    for name in ("ground", "text", "audio", "location"):
        plugin = by_dist[f"geobind-{name}"]
        assert plugin["modalities"] == [name]
        assert plugin["hooks"] == ["geobind_register_modalities"]
        assert plugin["version"] == "0.1.0"
    assert listing["broken"] == []


def test_plugins_text_listing_and_allow_list():
    result = geobind_cli("plugins", GEOBIND_LOAD_PLUGINS="geobind-text")
    assert result.returncode == 0, result.stderr
    assert "geobind-text 0.1.0" in result.stdout and "text (" in result.stdout
    assert "geobind-audio" not in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["recipes"]])
def test_cli_imports_nothing_heavy(args):
    code = (
        f"import sys\nfrom geobind.cli import main\ntry:\n    main({args!r})\n"
        "except SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_console_script_is_installed():
    bindir = os.path.dirname(sys.executable)
    result = subprocess.run(
        [os.path.join(bindir, "geobind"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("geobind 0.1")
