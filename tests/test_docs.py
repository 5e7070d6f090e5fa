"""CONTRIBUTING.md documents what a plugin author can use: every public name, every field of a
Modality, every fixture and helper of geobind.testing (the page's walkthrough itself is built
and run by tests/test_wheels.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import geobind
import geobind.testing

CONTRIBUTING = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()


def section(title: str) -> str:
    return CONTRIBUTING.split(f"\n## {title}\n", 1)[1].split("\n## ")[0]


def table_names(text: str) -> set[str]:
    """The names in the first column of a Markdown table (`name` or `a`, `b`)."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return {n for row in rows for n in re.findall(r"`([\w.]+)", row.split("|")[1])}


@pytest.mark.parametrize(
    "name", sorted(set(geobind.__all__) - {"__version__", "PUBLIC_MODULES", "hookspec"})
)
def test_every_public_name_is_in_the_api_table(name):
    assert name in table_names(section("The public API a plugin uses")), name


def test_every_public_module_is_in_the_api_table():
    assert set(geobind.PUBLIC_MODULES) <= table_names(section("The public API a plugin uses"))


def test_every_modality_field_is_explained():
    documented = table_names(section("Writing a modality plugin"))
    fields = {f.name for f in dataclasses.fields(geobind.Modality)}
    assert fields <= documented, sorted(fields - documented)


def test_every_fixture_and_helper_of_geobind_testing_is_listed():
    documented = table_names(section("Writing a modality plugin"))
    fixtures = {"register_plugin", "tiny_anchor", "tiny_pair_dataset", "pair_dataset_factory"}
    helpers = set(geobind.testing.__all__)
    assert fixtures | helpers <= documented, sorted((fixtures | helpers) - documented)
