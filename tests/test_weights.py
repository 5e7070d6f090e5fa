"""Published weights in their real layouts: open_clip archs, CLIP files of every kind, Sat2Cap.

Every checkpoint here is written by the test from a randomly initialised model, in the layout
the published file has; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import geobind
from geobind.encoders.anchor import convert_sat2cap
from geobind.encoders.convert import (
    SAT2CAP_IMAGE_MEAN,
    SAT2CAP_IMAGE_STD,
    hf_clip_vision_to_open_clip,
    sat2cap_to_open_clip,
)
from geobind.encoders.openclip import is_torchscript
from geobind.testing import png_bytes

SMALL_VISION = dict(layers=2, width=64, patch_size=8, image_size=32, head_width=32)
SMALL_TEXT = dict(context_length=16, width=64, heads=2, layers=1)
SMALL = dict(embed_dim=32, quick_gelu=True, **SMALL_VISION)
SMALL_TEXT_CONFIG = dict(embed_dim=32, quick_gelu=True, **SMALL_TEXT)


def small_clip(seed: int = 0, quick_gelu: bool = True):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(
        32, vision_cfg=SMALL_VISION, text_cfg=SMALL_TEXT, quick_gelu=quick_gelu
    ).eval()


def reference(clip, pixels=None, tokens=None) -> torch.Tensor:
    with torch.no_grad():
        z = clip.encode_image(pixels) if pixels is not None else clip.encode_text(tokens)
    return F.normalize(z, dim=-1)


# -- open_clip architectures by name ------------------------------------------------------
def test_arch_gives_the_sizes_of_the_open_clip_architecture():
    import open_clip

    config = geobind.make_config(
        geobind.get_registry().modality("satellite").config, {"arch": "ViT-B-32-quickgelu"}
    )
    arch = open_clip.get_model_config("ViT-B-32-quickgelu")
    assert (
        config.embed_dim,
        config.image_size,
        config.patch_size,
        config.width,
        config.layers,
        config.head_width,
        config.quick_gelu,
    ) == (arch["embed_dim"], 224, 32, 768, 12, 64, True)
    plain = geobind.make_config(type(config), {"arch": "ViT-B-32"})
    assert plain.quick_gelu is False and plain.width == 768
    text = geobind.make_config(
        geobind.get_registry().modality("text").config, {"arch": "ViT-B-32-quickgelu"}
    )
    assert (
        text.embed_dim,
        text.context_length,
        text.vocab_size,
        text.width,
        text.heads,
        text.layers,
        text.quick_gelu,
    ) == (512, 77, 49408, 512, 8, 12, True)
    # a config written back from a space (every size explicit) builds the same config again
    assert geobind.make_config(type(config), dataclasses.asdict(config)) == config


def test_arch_towers_match_open_clip_parameter_for_parameter():
    import open_clip

    reference_model = open_clip.create_model("ViT-B-32-quickgelu")  # random init, no download
    vision = geobind.build_encoder("satellite", {"arch": "ViT-B-32-quickgelu"}).net
    text = geobind.build_encoder("text", {"arch": "ViT-B-32-quickgelu"}).net
    assert {k: v.shape for k, v in vision.state_dict().items()} == {
        k[len("visual.") :]: v.shape
        for k, v in reference_model.state_dict().items()
        if k.startswith("visual.")
    }
    assert sum(p.numel() for p in text.parameters()) == sum(
        p.numel()
        for n, p in reference_model.named_parameters()
        if not n.startswith("visual.") and n != "logit_scale"
    )


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"arch": "ViT-B-32", "width": 128}, r"width=128 but ViT-B-32 has 768"),
        ({"arch": "ViT-B-32", "embed_dim": 64}, r"embed_dim=64 but ViT-B-32 has 512"),
        (
            {"arch": "ViT-B-32-quickgelu", "quick_gelu": False},
            r"quick_gelu=False but ViT-B-32-quickgelu has True",
        ),
        ({"arch": "ViT-B-23"}, r"'ViT-B-23' is not an open_clip architecture; did you mean"),
        ({"arch": "RN50"}, r"not an open_clip VisionTransformer"),
        ({"arch": "hf-hub:laion/CLIP-ViT-B-32"}, r"never reaches a model hub"),
    ],
)
def test_contradicting_or_unknown_arch_is_a_config_error(overrides, match):
    with pytest.raises(geobind.ConfigError, match=match):
        geobind.build_encoder("satellite", overrides)


def test_text_arch_contradiction_names_both_values():
    with pytest.raises(geobind.ConfigError, match=r"context_length=32 but ViT-B-32 has 77"):
        geobind.build_encoder("text", {"arch": "ViT-B-32", "context_length": 32})


def test_an_explicit_size_that_agrees_with_the_arch_is_fine():
    config = geobind.build_encoder(
        "satellite", {"arch": "ViT-B-32", "width": 768, "quick_gelu": True}
    ).config
    assert config.width == 768 and config.quick_gelu is True  # ViT-B-32 leaves it open


# -- CLIP checkpoints in each published layout ----------------------------------------------
def _save_open_clip(clip, path, layout: str) -> None:
    state = clip.state_dict()
    if layout == "safetensors":
        geobind.save_state_dict(path, state)
    elif layout == "bin":  # a bare open_clip state dict, as open_clip_pytorch_model.bin
        torch.save(state, path)
    elif layout == "ddp-wrapped":  # open_clip's training checkpoints (epoch_N.pt)
        torch.save(
            {"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()}},
            path,
        )
    elif layout == "remoteclip":  # RemoteCLIP-ViT-B-32.pt: the open_clip CLIP state dict
        torch.save({k: v.half() for k, v in state.items()}, path)


@pytest.mark.parametrize(
    "layout, suffix",
    [
        ("safetensors", ".safetensors"),
        ("bin", ".bin"),
        ("ddp-wrapped", ".pt"),
        ("remoteclip", ".pt"),
    ],
)
def test_clip_checkpoint_layouts_load_both_towers(tmp_path, layout, suffix):
    clip = small_clip()
    path = tmp_path / f"clip{suffix}"
    _save_open_clip(clip, path, layout)
    if layout == "remoteclip":  # fp16 on disk, as published: compare with the rounded model
        clip.load_state_dict({k: v.half().float() for k, v in clip.state_dict().items()})
    for modality in ("satellite", "ground"):
        encoder = geobind.build_encoder(modality, SMALL, weights=path).eval()
        pixels = encoder.collate([png_bytes(3), png_bytes(4)])
        torch.testing.assert_close(encoder(pixels), reference(clip, pixels=pixels))
    text = geobind.build_encoder("text", SMALL_TEXT_CONFIG, weights=path).eval()
    tokens = text.collate(["a harbour with boats", "a pine forest"])
    torch.testing.assert_close(text(tokens), reference(clip, tokens=tokens))


@pytest.fixture(scope="module")
def openai_archive(tmp_path_factory):
    """A TorchScript CLIP archive as OpenAI publishes ViT-B-32.pt: traced, fp16, with its
    ``input_resolution`` / ``context_length`` / ``vocab_size`` entries."""
    import warnings

    clip = small_clip(seed=5)
    for name, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 49408)):
        if name in vars(clip):
            delattr(clip, name)  # open_clip keeps these as plain ints, OpenAI's JIT as tensors
        clip.register_buffer(name, torch.tensor(value))
    clip = clip.half().float()  # values exactly representable in fp16
    reference_clip = small_clip(seed=5)
    reference_clip.load_state_dict(
        {
            k: v
            for k, v in clip.state_dict().items()
            if k not in ("input_resolution", "context_length", "vocab_size")
        }
    )
    path = tmp_path_factory.mktemp("openai") / "ViT-B-32.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        traced = torch.jit.trace(
            clip.half(),
            (torch.randn(1, 3, 32, 32).half(), torch.zeros(1, 16, dtype=torch.long)),
            check_trace=False,
        )
        traced.save(str(path))
    return path, reference_clip


def test_openai_torchscript_archive_loads_without_unpickling(openai_archive):
    path, clip = openai_archive
    assert is_torchscript(path)
    with pytest.raises(RuntimeError, match="weights_only"), pytest.warns(UserWarning):
        torch.load(path, weights_only=True)  # why it needs a reader of its own
    anchor = geobind.build_encoder("satellite", SMALL, weights=path).eval()
    pixels = anchor.collate([png_bytes(1), png_bytes(2)])
    torch.testing.assert_close(anchor(pixels), reference(clip, pixels=pixels))
    text = geobind.build_encoder("text", SMALL_TEXT_CONFIG, weights=path).eval()
    tokens = text.collate(["a quiet village square"])
    torch.testing.assert_close(text(tokens), reference(clip, tokens=tokens))


def test_openai_archive_in_a_gelu_tower_says_to_use_quickgelu(openai_archive):
    path, _ = openai_archive
    for modality, config in (("satellite", SMALL), ("text", SMALL_TEXT_CONFIG)):
        with pytest.raises(geobind.WeightsError, match=r"QuickGELU.*ViT-B-32-quickgelu"):
            geobind.build_encoder(modality, {**config, "quick_gelu": False}, weights=path)


def test_checkpoint_of_another_architecture_names_keys_and_shapes(tmp_path):
    path = tmp_path / "clip.safetensors"
    geobind.save_state_dict(path, small_clip().state_dict())
    with pytest.raises(
        geobind.WeightsError,
        match=r"does not match the architecture: .*of another shape \(first: "
        r"\['positional_embedding \(17, 64\) vs \(65, 64\)",
    ):
        geobind.build_encoder("satellite", {**SMALL, "patch_size": 4}, weights=path)
    with pytest.raises(
        geobind.WeightsError,
        match=r"12 missing \(first: \['transformer"
        r"\.resblocks\.2\.ln_1\.weight'",
    ):
        geobind.build_encoder("satellite", {**SMALL, "layers": 3}, weights=path)


def test_a_damaged_torchscript_archive_is_named(tmp_path, openai_archive):
    path, _ = openai_archive
    broken = tmp_path / "ViT-B-32.pt"
    data = path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(geobind.WeightsError, match=r"ViT-B-32\.pt"):
        geobind.build_encoder("satellite", SMALL, weights=broken)


# -- Sat2Cap ----------------------------------------------------------------------------------
HF_SMALL = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
    projection_dim=32,
    hidden_act="quick_gelu",
)


def hf_vision(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**HF_SMALL)).eval()
    with torch.no_grad():  # HF initialises norms to 1/0 and the class token small: perturb all
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def sat2cap_ckpt(tmp_path_factory):
    """A Sat2Cap Lightning checkpoint: ``Clip`` modules holding ``vision_model`` (an HF
    CLIPVisionModelWithProjection) as ``imo_encoder`` (trained) and ``img_encoder`` (frozen)."""
    overhead, ground = hf_vision(1), hf_vision(2)
    state = {f"imo_encoder.vision_model.{k}": v for k, v in overhead.state_dict().items()}
    state.update({f"img_encoder.vision_model.{k}": v for k, v in ground.state_dict().items()})
    state.update(
        {
            "temp_layer.logit_scale": torch.tensor(2.6),
            "queue": torch.randn(32, 64),
            "queue_ptr": torch.zeros(1, dtype=torch.long),
        }
    )
    path = tmp_path_factory.mktemp("sat2cap") / "epoch=22-step=16215.ckpt"
    torch.save(
        {
            "epoch": 22,
            "global_step": 16215,
            "pytorch-lightning_version": "1.9.0",
            "state_dict": state,
            "hyper_parameters": {"vit": "32", "learning_rate": 5e-5},
        },
        path,
    )
    return path, overhead


def hf_embeds(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(model(pixel_values=pixels).image_embeds, dim=-1)


def test_layer_norm_eps_agrees_between_hf_clip_and_open_clip():
    from transformers import CLIPVisionConfig

    tower = geobind.build_encoder("satellite", SMALL).net
    eps = {m.eps for m in tower.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {CLIPVisionConfig(**HF_SMALL).layer_norm_eps} == {1e-5}


def test_sat2cap_converts_to_the_same_embeddings_as_hugging_face(sat2cap_ckpt, tmp_path):
    path, overhead = sat2cap_ckpt
    out = tmp_path / "sat2cap-anchor.safetensors"
    config = convert_sat2cap(path, out, SMALL)
    anchor = geobind.build_encoder("satellite", config, weights=out).eval()
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # the embedding path (MultiheadAttention's fused kernel)
        ours = anchor(pixels)
    difference = (ours - hf_embeds(overhead, pixels)).abs().max().item()
    assert difference < 1e-4, difference
    # the unnormalised projections agree too, relative to their scale
    with torch.no_grad():
        raw, hf_raw = anchor.net(pixels), overhead(pixel_values=pixels).image_embeds
    assert (raw - hf_raw).abs().max().item() < 1e-4 * hf_raw.abs().max().item()
    # the same straight from the Lightning checkpoint, and from the pure function
    direct = geobind.build_encoder("satellite", SMALL, weights=path).eval()
    assert (direct(pixels) - hf_embeds(overhead, pixels)).abs().max().item() < 1e-4
    state = torch.load(path, weights_only=True)
    assert sat2cap_to_open_clip(state).keys() == direct.net.state_dict().keys()


def test_sat2cap_defaults_are_vit_b32_quickgelu_with_its_normalisation(tmp_path):
    model = hf_vision(3)
    state = {f"imo_encoder.vision_model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "small.ckpt")
    with pytest.raises(geobind.WeightsError, match="of another shape"):  # a small tower
        convert_sat2cap(tmp_path / "small.ckpt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    from geobind.config import make_config
    from geobind.encoders.anchor import AnchorConfig

    default = make_config(
        AnchorConfig,
        {
            "arch": "ViT-B-32-quickgelu",
            "image_mean": SAT2CAP_IMAGE_MEAN,
            "image_std": SAT2CAP_IMAGE_STD,
        },
    )
    prep = geobind.build_encoder("satellite", default).preprocess(False)
    assert prep(png_bytes(0, 64)).shape == (3, 224, 224)
    normalize = [t for t in prep._transform.transforms if type(t).__name__ == "Normalize"][0]
    assert list(normalize.mean) == SAT2CAP_IMAGE_MEAN and list(normalize.std) == SAT2CAP_IMAGE_STD


def test_sat2cap_in_a_gelu_tower_is_refused(sat2cap_ckpt, tmp_path):
    path, _ = sat2cap_ckpt
    with pytest.raises(geobind.WeightsError, match=r"hidden_act 'quick_gelu'.*quickgelu"):
        geobind.build_encoder("satellite", {**SMALL, "quick_gelu": False}, weights=path)
    with pytest.raises(geobind.WeightsError, match="quick_gelu"):
        convert_sat2cap(path, tmp_path / "x.safetensors", {**SMALL, "quick_gelu": False})


def test_a_vision_tower_other_than_the_anchor_must_choose_among_sat2cap_towers(sat2cap_ckpt):
    path, _ = sat2cap_ckpt
    with pytest.raises(
        geobind.WeightsError,
        match=r"2 Hugging Face CLIP vision towers "
        r"\(img_encoder\..*imo_encoder\.",
    ):
        geobind.build_encoder("ground", SMALL, weights=path)


def test_hf_conversion_refuses_keys_it_does_not_map():
    state = dict(hf_vision(4).state_dict())
    state["vision_model.encoder.layers.0.self_attn.extra_norm.weight"] = torch.ones(64)
    with pytest.raises(geobind.WeightsError, match=r"does not map.*extra_norm"):
        hf_clip_vision_to_open_clip(state)
    del state["vision_model.encoder.layers.0.self_attn.extra_norm.weight"]
    del state["visual_projection.weight"]
    with pytest.raises(geobind.WeightsError, match="CLIPVisionModelWithProjection"):
        hf_clip_vision_to_open_clip(state)


def test_a_hugging_face_vision_model_file_loads_as_the_anchor(tmp_path):
    """E.g. a CLIPVisionModelWithProjection's model.safetensors (Sat2Cap's Hub release)."""
    model = hf_vision(6)
    path = tmp_path / "model.safetensors"
    geobind.save_state_dict(path, model.state_dict())
    anchor = geobind.build_encoder("satellite", SMALL, weights=path).eval()
    pixels = torch.randn(2, 3, 32, 32)
    assert (anchor(pixels) - hf_embeds(model, pixels)).abs().max().item() < 1e-4


def test_a_lightning_checkpoint_with_pickled_hparams_converts(sat2cap_ckpt, tmp_path):
    import argparse
    import pickle

    path, _ = sat2cap_ckpt
    state = torch.load(path, weights_only=True)
    state["hyper_parameters"] = argparse.Namespace(vit="32")  # as Lightning pickles them
    torch.save(state, tmp_path / "sat2cap.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(tmp_path / "sat2cap.ckpt", weights_only=True)  # why it needs another reader
    convert_sat2cap(tmp_path / "sat2cap.ckpt", tmp_path / "out.safetensors", SMALL)
    convert_sat2cap(path, tmp_path / "plain.safetensors", SMALL)
    out, plain = (geobind.read_state_dict(tmp_path / f"{n}.safetensors") for n in ("out", "plain"))
    assert out.keys() == plain.keys() and all(torch.equal(out[k], plain[k]) for k in out)
