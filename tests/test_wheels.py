"""From wheels, as a user gets geobind: geobind and the shipped plugins are built as wheels and
installed into a fresh virtualenv with no source tree on its path; there, a small ``geobind
demo``, a plugin's own stage (``geobind train location``), a query of it, and the plugin that
CONTRIBUTING.md walks through, built from the page's own files and run with the page's own
commands.

The fresh virtualenv gets the wheels only (``--no-deps``); torch and the other dependencies
come from this environment through a ``.pth`` file that appends its site-packages directory.
A plain path line in a ``.pth`` file does not run the ``.pth`` files inside that directory, so
this environment's editable installs of geobind and the plugins stay invisible there (the
first test proves it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from geobind.recipes import find_recipe, read_recipe_file
from geobind.testing import png_bytes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = [
    ROOT,
    *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()),
]
#: what a wheel is built from: never the checkout's virtualenv, outputs or tests
LEFT_OUT = shutil.ignore_patterns(
    ".venv", ".git", "tests", "plugins", "benchmarks", "build", "dist", "*.egg-info",
    "__pycache__", ".*_cache", "geobind-demo",
)  # fmt: skip
PLACES = 160  # the demo world: 48 places per training set, 16 held out
STEPS = ["max_steps=2", "batch_size=16", "val_every=0", "checkpoint_every=2", "warmup_steps=1"]


class Venv:
    """A fresh virtualenv and how to run commands in it, from a folder outside the checkout."""

    def __init__(self, root: Path) -> None:
        self.root = root / "venv"
        self.bin = self.root / "bin"
        self.python = self.bin / "python"
        self.cwd = root / "user"
        self.cwd.mkdir()

    def env(self) -> dict[str, str]:
        drop = ("PYTHONPATH", "GEOBIND_LOAD_PLUGINS", "GEOBIND_STRICT_PLUGINS", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(HF_HUB_OFFLINE="1", PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}")
        return env

    def run(self, *args: str | Path, timeout: int = 300) -> str:
        """Run a command there; its stdout, or a failure showing both streams."""
        result = subprocess.run(
            [str(a) for a in args], cwd=self.cwd, env=self.env(), capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def geobind(self, *args: str | Path, timeout: int = 300) -> str:
        return self.run(self.bin / "geobind", *args, timeout=timeout)


def build_wheel(project: Path, dist: Path, work: Path) -> None:
    # built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = work / project.name
    shutil.copytree(project, src, ignore=LEFT_OUT)
    pip("wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", dist, src)


def pip(*args: str | Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("wheels")
    dist = root / "dist"
    for project in PROJECTS:
        build_wheel(project, dist, root / "src")
    env = Venv(root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env.root], check=True)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == len(PROJECTS), wheels
    pip("--python", env.python, "install", "--no-deps", "--no-index", "--quiet", *wheels)
    site = env.run(env.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (Path(site.strip()) / "geobind-test-dependencies.pth").write_text(
        "\n".join(sorted(ours)) + "\n"
    )
    return env


def test_geobind_and_its_plugins_come_from_the_wheels_not_the_source_tree(venv):
    code = (
        "import json, geobind, geobind_audio, geobind_ground, geobind_location, geobind_text\n"
        "mods = [geobind, geobind_audio, geobind_ground, geobind_location, geobind_text]\n"
        "print(json.dumps([m.__file__ for m in mods]))"
    )
    for path in map(Path, json.loads(venv.run(venv.python, "-c", code))):
        assert path.is_relative_to(venv.root) and not path.is_relative_to(ROOT), path
    listed = json.loads(venv.geobind("recipes", "--json"))
    by_name = {r["name"]: r for r in listed}
    assert {"audio", "location", "world/demo", "paper/paper"} <= set(by_name)
    assert by_name["location"]["plugin"] == "geobind-location"
    assert all(Path(r["path"]).is_relative_to(venv.root) for r in listed), listed


@pytest.fixture(scope="module")
def demo(venv) -> Path:
    """A small ``geobind demo`` run in the fresh environment."""
    stages = read_recipe_file(find_recipe("world/demo"))["stages"]
    small = [f"stages.{name}.{setting}" for name in stages for setting in STEPS]
    out = venv.geobind("demo", "--places", str(PLACES), *small, timeout=600)
    assert "demo finished" in out and "location -> satellite" in out, out
    return venv.cwd / "geobind-demo"


def test_a_small_demo_runs_from_the_installed_packages_alone(venv, demo):
    assert (demo / "report.html").stat().st_size > 0
    manifest = json.loads((demo / "space" / "manifest.json").read_text())
    assert {"satellite", "ground", "text", "audio", "location"} <= set(manifest["modalities"])
    assert "location: " in (demo / "report.html").read_text()  # its example query


def test_a_plugin_stage_trains_by_name_and_answers_queries(venv, demo):
    out = venv.geobind(
        "train", "location", "--space", "geobind-demo/space",
        "--data", "geobind-demo/world/ground.lance", *STEPS,
    )  # fmt: skip
    assert "stage location: steps 2" in out, out
    entry = json.loads((demo / "space" / "manifest.json").read_text())["modalities"]["location"]
    assert entry["plugin"] == "geobind-location" and entry["aligned_to"]["modality"] == "satellite"
    hits = venv.geobind(
        "search", "geobind-demo/space", "--query", "location=40.5,-74.0",
        "--data", "geobind-demo/world/heldout.lance", "--top", "3",
    ).splitlines()  # fmt: skip
    assert hits[0].split() == ["rank", "id", "lat", "lon", "score"] and len(hits) == 4


def contributing_blocks() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """CONTRIBUTING.md's files (``<!-- file: PATH -->``) and commands (``<!-- run -->``)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    block = r"<!-- (file: (?P<path>\S+)|run) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```"
    files, runs = {}, []
    for m in re.finditer(block, text, flags=re.DOTALL):
        if m["path"]:
            files[m["path"]] = m["body"]
        else:
            runs.append((m["lang"], m["body"]))
    return files, runs


def write_places(folder: Path, n: int = 120) -> None:
    """A table of places in the demo world's box, with tiles and a climate."""
    (folder / "tiles").mkdir()
    lines = ["id,lat,lon,tile,temperature,rainfall"]
    for i in range(n):
        (folder / "tiles" / f"p{i:04d}.png").write_bytes(png_bytes(i, 64))
        lat, lon = 40.0 + (i % 12) / 12, -74.5 + (i // 12) / 8
        lines.append(f"p{i:04d},{lat:.4f},{lon:.4f},tiles/p{i:04d}.png,{5 + i % 20},{300 + 7 * i}")
    (folder / "places.csv").write_text("\n".join(lines) + "\n")


def test_the_plugin_contributing_walks_through_builds_tests_trains_and_answers(venv, demo):
    files, runs = contributing_blocks()
    assert {"geobind-climate/pyproject.toml", "geobind-climate/tests/test_climate.py"} <= set(files)
    for path, body in files.items():
        (venv.cwd / path).parent.mkdir(parents=True, exist_ok=True)
        (venv.cwd / path).write_text(body)
    dist = venv.cwd / "dist"
    pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-w",
        dist,
        venv.cwd / "geobind-climate",
    )
    pip(
        "--python",
        venv.python,
        "install",
        "--no-deps",
        "--no-index",
        "--quiet",
        *dist.glob("*.whl"),
    )
    shutil.rmtree(venv.cwd / "geobind-climate" / "geobind_climate")  # the installed one is used
    assert "climate: climate -> satellite" in venv.geobind("recipes")
    venv.run(venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "geobind-climate/tests")
    write_places(venv.cwd)
    said = []
    for lang, body in runs:
        if lang == "python":
            said.append(venv.run(venv.python, "-c", body))
        else:
            said.append(venv.run("bash", "-euo", "pipefail", "-c", body))
    out = "\n".join(said)
    assert "imported 120 rows" in out and "stage climate: steps" in out, out
    assert "torch.Size([2, 64])" in out  # the demo anchor's width
    assert "climate -> satellite" in out and (venv.cwd / "climate.png").stat().st_size > 0
