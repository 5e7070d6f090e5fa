"""The third-party path: a plugin package pip-installed into this environment is discovered."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "geobind-acme-smell"
version = "0.3.1"
dependencies = ["geobind>=0.1,<1"]

[project.entry-points.geobind]
smell = "geobind_acme_smell"
"""

MODULE = '''
"""A third-party modality: a smell as a vector of 6 chemical intensities."""
from dataclasses import dataclass

from geobind import InputError, Modality, hookimpl


@dataclass
class SmellConfig:
    embed_dim: int = 16


def build(config, weights):
    import torch
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, config.embed_dim))


def check(value):
    parts = value.split(",")
    if len(parts) != 6:
        raise InputError(f"smell: expected 6 comma-separated intensities, got {len(parts)}")


def preprocess(config, train):
    return parse


def parse(value):
    import torch
    check(value)
    return torch.tensor([float(x) for x in value.split(",")])


@hookimpl
def geobind_register_modalities(register):
    register(Modality(name="smell", config=SmellConfig, build_encoder=build,
                      build_preprocess=preprocess, check=check, storage="string",
                      description="smells as six intensities"))
'''

USE = """
import json, geobind
encoder = geobind.build_encoder("smell")
z = encoder.embed(["1,0,0,0,0,2", "0,1,0,3,0,0"])
print(json.dumps({"shape": list(z.shape), "norms": z.norm(dim=-1).tolist(),
                  "owner": geobind.get_registry().owner("smell").distribution}))
"""


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def installed_plugin(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "geobind_acme_smell.py").write_text(textwrap.dedent(MODULE))
    # no build isolation: the test must not depend on fetching setuptools
    result = pip("install", "--quiet", "--no-deps", "--no-build-isolation", str(tmp_path))
    assert result.returncode == 0, result.stderr
    yield
    pip("uninstall", "--yes", "geobind-acme-smell")


def test_pip_installed_plugin_is_discovered_listed_and_usable(installed_plugin):
    listing = subprocess.run(
        [sys.executable, "-m", "geobind.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    plugins = {p["distribution"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plugins["geobind-acme-smell"]["version"] == "0.3.1"
    assert plugins["geobind-acme-smell"]["modalities"] == ["smell"]

    used = subprocess.run([sys.executable, "-c", USE], capture_output=True, text=True, timeout=120)
    assert used.returncode == 0, used.stderr
    result = json.loads(used.stdout)
    assert result["shape"] == [2, 16] and result["owner"] == "geobind-acme-smell"
    assert all(abs(n - 1) < 1e-5 for n in result["norms"])


def test_uninstalled_plugin_is_gone(installed_plugin):
    assert pip("uninstall", "--yes", "geobind-acme-smell").returncode == 0
    listing = subprocess.run(
        [sys.executable, "-m", "geobind.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = [p["distribution"] for p in json.loads(listing.stdout)["plugins"]]
    assert "geobind-acme-smell" not in names
