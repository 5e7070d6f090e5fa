"""open_clip's internals that geobind.encoders.openclip calls, and the pins that hold them.

When an upgrade moves one, these tests fail naming it (module, name and the arguments geobind
passes), so the fix is made in the one adapter module rather than discovered in a traceback.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path

import pytest

from geobind.encoders import openclip

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    """``name -> specifier`` of every requirement in constraints.txt."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = line.split("=")[0].split("<")[0].split(">")[0].strip()
            out[name] = line[len(name) :].strip()
    return out


@pytest.mark.parametrize(
    "module, name, arguments",
    openclip.INTERNALS,
    ids=[f"{m}.{n}" for m, n, _ in openclip.INTERNALS],
)
def test_open_clip_internal_is_where_geobind_calls_it(module, name, arguments):
    value = openclip.internal(module, name)  # raises naming the internal and the versions
    if arguments:
        try:
            inspect.signature(value).bind(**dict.fromkeys(arguments))
        except TypeError as exc:
            pytest.fail(
                f"open_clip internal {module}.{name} no longer takes {', '.join(arguments)}: {exc}"
            )


def test_open_clip_ships_its_model_configs():
    assert (openclip.model_configs_folder() / "ViT-B-32-quickgelu.json").is_file()


def test_every_internal_is_checked_and_none_moved():
    assert openclip.check_internals() == []


def test_an_internal_that_moved_is_named(monkeypatch):
    moved = ("open_clip.model", "_build_gone_tower", ("embed_dim",))
    monkeypatch.setattr(openclip, "INTERNALS", (*openclip.INTERNALS, moved))
    problems = openclip.check_internals()
    assert len(problems) == 1 and "open_clip.model._build_gone_tower" in problems[0]
    assert "constraints.txt" in problems[0]
    with pytest.raises(openclip.OpenClipChanged, match=r"open_clip\.model\._build_gone_tower"):
        openclip.internal("open_clip.model", "_build_gone_tower")


def test_open_clip_is_pinned_at_the_installed_version():
    installed = importlib.metadata.version("open_clip_torch")
    assert pins().get("open_clip_torch") == f"=={installed}", (
        f"constraints.txt pins open_clip_torch{pins().get('open_clip_torch')}, "
        f"{installed} is installed: run tests/test_openclip.py against it, then move the pin"
    )


def test_lance_blob_api_geobind_reads_through_is_there():
    import lance
    from lance.blob import BlobType  # noqa: F401  read_values tells blob columns by it

    assert callable(lance.blob_field) and callable(lance.blob_array)
    assert "preserve_order" in inspect.signature(lance.LanceDataset.read_blobs).parameters
