"""Meta-tests: every hook is typed, documented in CONTRIBUTING.md, and has its own test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from geobind import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name in dir(hookspecs) if name.startswith("geobind_")]


def signature(name: str) -> str:
    """``name(arg: type, ...) -> type`` as written in the source."""
    sig = inspect.signature(getattr(hookspecs, name))
    args = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({args}) -> {sig.return_annotation}"


def test_there_are_hooks():
    assert "geobind_register_modalities" in HOOKS and "geobind_register_datasets" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_a_typed_documented_spec(name):
    function = getattr(hookspecs, name)
    assert hasattr(function, "geobind_spec"), f"{name} is not marked @hookspec"
    assert inspect.getdoc(function) and ":param" in inspect.getdoc(function)
    sig = inspect.signature(function)
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    assert sig.return_annotation is not inspect.Signature.empty


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_exact_signature(name):
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert signature(name) in contributing, f"CONTRIBUTING.md lacks `{signature(name)}`"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert re.search(rf"def test_hook_{name}\b", tests), f"no test_hook_{name} in tests/"
