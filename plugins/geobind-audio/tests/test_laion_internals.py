"""laion_clap's internals that geobind_audio.model builds on, and the pin that holds them.

When an upgrade moves one, these tests fail naming it, so the fix is made in model.py rather
than discovered in a traceback from inside HTS-AT.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from pathlib import Path

import pytest
import torch

from geobind_audio import AudioConfig
from geobind_audio.model import INTERNALS, AudioEncoder, import_htsat

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints.txt"


@pytest.mark.parametrize(
    "module, name, arguments", INTERNALS, ids=[f"{m}.{n}" for m, n, _ in INTERNALS]
)
def test_laion_clap_internal_is_where_the_encoder_calls_it(module, name, arguments):
    import_htsat()  # offline, and without leaving laion_clap's folder on sys.path
    value = getattr(importlib.import_module(module), name, None)
    assert value is not None, f"laion_clap internal {module}.{name} is gone"
    try:
        inspect.signature(value).bind(**dict.fromkeys(arguments))
    except TypeError as exc:
        pytest.fail(
            f"laion_clap internal {module}.{name} no longer takes {', '.join(arguments)}: {exc}"
        )


def test_the_built_swin_has_the_parts_the_encoder_reads():
    encoder = AudioEncoder(AudioConfig())
    branch = encoder.audio_branch
    for part in ("head", "tscam_conv", "num_features", "spec_augmenter"):
        assert hasattr(branch, part), f"laion_clap's HTSAT_Swin_Transformer has no {part!r}"
    with torch.no_grad():
        out = branch({"waveform": torch.zeros(1, AudioConfig().clip_samples)}, device="cpu")
    assert "embedding" in out, f"HTS-AT returns {sorted(out)}, no 'embedding'"


def test_laion_clap_is_pinned_at_the_installed_version():
    installed = importlib.metadata.version("laion_clap")
    pinned = [
        line.split("#")[0].strip()
        for line in CONSTRAINTS.read_text().splitlines()
        if line.startswith("laion_clap")
    ]
    assert pinned == [f"laion_clap=={installed}"], (
        f"constraints.txt pins {pinned}, laion_clap {installed} is installed: run these "
        f"tests against it, then move the pin"
    )
