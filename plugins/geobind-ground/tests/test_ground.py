"""geobind-ground: ground photos through CLIP's image tower."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
from PIL import Image

import geobind
from geobind.testing import TINY_VISION, png_bytes


def photo(seed: int, fmt: str, size=(120, 80)) -> bytes:
    image = Image.open(io.BytesIO(png_bytes(seed, 64))).resize(size)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_registered_by_this_distribution():
    assert geobind.get_registry().owner("ground").distribution == "geobind-ground"


def test_embeds_png_and_jpeg_photos_of_any_size():
    torch.manual_seed(0)
    encoder = geobind.build_encoder("ground", TINY_VISION)
    z = encoder.embed([photo(1, "PNG"), photo(2, "JPEG", (300, 200)), photo(3, "JPEG")])
    assert z.shape == (3, TINY_VISION["embed_dim"])
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))


def test_training_preprocess_augments_but_keeps_the_size():
    encoder = geobind.build_encoder("ground", TINY_VISION)
    batch = encoder.collate([photo(1, "PNG")] * 2, train=True)
    assert batch.shape == (2, 3, 32, 32)


def test_truncated_jpeg_is_rejected_by_check():
    modality = geobind.get_registry().modality("ground")
    modality.check(photo(1, "JPEG"))
    with pytest.raises(geobind.InputError, match="truncated"):
        modality.check(photo(1, "JPEG")[:150])


def test_import_is_light():
    code = "import sys, geobind_ground; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
