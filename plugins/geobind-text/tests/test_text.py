"""geobind-text: text through CLIP's text tower and tokenizer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import geobind
from geobind_text import TextConfig

TINY_TEXT = dict(embed_dim=32, context_length=16, width=64, heads=2, layers=1)


def test_registered_by_this_distribution():
    assert geobind.get_registry().owner("text").distribution == "geobind-text"


def test_embeds_strings_as_unit_vectors():
    torch.manual_seed(0)
    encoder = geobind.build_encoder("text", TINY_TEXT)
    z = encoder.embed(["waves on a sandy beach", "a busy street at night", "ok"])
    assert z.shape == (3, 32)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(z[0], z[1])


def test_tokens_are_clip_bpe_padded_and_truncated():
    encoder = geobind.build_encoder("text", TINY_TEXT)
    short, long = encoder.collate(["a beach", "word " * 100])
    assert short.shape == long.shape == (16,)
    sot, eot = 49406, 49407  # CLIP's start and end of text tokens
    assert short[0] == sot and short[3] == eot and short[4:].eq(0).all()
    assert long[-1] == eot and long.ne(0).all()


@pytest.mark.parametrize("value, match", [("", "empty"), ("   ", "empty"), (b"bytes", "string")])
def test_bad_text_is_an_input_error(value, match):
    encoder = geobind.build_encoder("text", TINY_TEXT)
    with pytest.raises(geobind.InputError, match=match):
        encoder.embed([value])


def test_initialises_from_a_clip_checkpoint_and_matches_clip(tmp_path):
    import open_clip

    torch.manual_seed(1)
    clip = open_clip.CLIP(
        32,
        vision_cfg=dict(layers=1, width=64, patch_size=8, image_size=16, head_width=32),
        text_cfg=dict(context_length=16, width=64, heads=2, layers=1),
    )
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    encoder = geobind.build_encoder("text", TINY_TEXT, weights=path).eval()
    tokens = encoder.collate(["a forest near a river"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(clip.encode_text(tokens), dim=-1)
    torch.testing.assert_close(encoder(tokens), expected)


def test_paper_size_config_is_clip_vit_b32_text_tower():
    config = TextConfig(embed_dim=512, context_length=77, width=512, heads=8, layers=12)
    encoder = geobind.build_encoder("text", config)
    params = sum(p.numel() for p in encoder.parameters())
    assert 63_000_000 < params < 64_000_000  # CLIP ViT-B/32's text tower: 63.4M


def test_import_is_light():
    code = "import sys, geobind_text; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_arch_names_the_open_clip_text_tower():
    config = TextConfig(arch="ViT-B-32-quickgelu")
    assert (
        config.embed_dim,
        config.context_length,
        config.width,
        config.heads,
        config.layers,
        config.quick_gelu,
    ) == (512, 77, 512, 8, 12, True)
    assert TextConfig(arch="ViT-B-32").quick_gelu is False
    assert TextConfig().context_length == 32  # no arch: the tiny defaults
    with pytest.raises(geobind.ConfigError, match=r"heads=4 but ViT-B-32 has 8"):
        TextConfig(arch="ViT-B-32", heads=4)


def test_ddp_prefixed_and_wrapped_checkpoints_load(tmp_path):
    import open_clip

    torch.manual_seed(2)
    clip = open_clip.CLIP(
        32,
        vision_cfg=dict(layers=1, width=64, patch_size=8, image_size=16, head_width=32),
        text_cfg=dict(context_length=16, width=64, heads=2, layers=1),
    )
    path = tmp_path / "epoch_5.pt"
    torch.save(
        {"epoch": 5, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path
    )
    encoder = geobind.build_encoder("text", TINY_TEXT, weights=path).eval()
    tokens = encoder.collate(["rice paddies on a hillside"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(clip.encode_text(tokens), dim=-1)
    torch.testing.assert_close(encoder(tokens), expected)


def test_a_caption_is_tokenized_once_per_preprocess(monkeypatch):
    import geobind_text

    prep = geobind.build_encoder("text", TINY_TEXT).preprocess(train=True)
    first = prep("a sandy beach")
    calls = []
    real = geobind_text.tokenizer
    monkeypatch.setattr(geobind_text, "tokenizer", lambda n: calls.append(n) or real(n))
    again = prep("a sandy beach")
    assert calls == [] and torch.equal(first, again)
    again[0] = -1  # what a caller does to its ids does not change the kept ones
    assert torch.equal(prep("a sandy beach"), first)
    with pytest.raises(geobind.InputError, match="empty"):
        prep("  ")
