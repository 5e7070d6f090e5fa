"""The anchor and the encoder wrapper: configs, shapes, normalisation, weights, bad input."""

from __future__ import annotations

import io
import types
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

import geobind
from geobind.testing import TINY_VISION, png_bytes


def jpeg_bytes(seed: int, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed, size))).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_anchor_embeds_png_and_jpeg_as_unit_vectors(tiny_anchor):
    z = tiny_anchor.embed([png_bytes(1), jpeg_bytes(2), png_bytes(3, size=80)])
    assert z.shape == (3, TINY_VISION["embed_dim"])
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(z[0], z[1])


def test_embedding_is_deterministic_in_eval(tiny_anchor):
    tiny_anchor.train()  # embed() must switch to eval and back
    a = tiny_anchor.embed([png_bytes(5)])
    b = tiny_anchor.embed([png_bytes(5)])
    torch.testing.assert_close(a, b)
    assert tiny_anchor.training


def test_preprocess_gives_the_configured_size(tiny_anchor):
    batch = tiny_anchor.collate([png_bytes(1, size=100), png_bytes(2, size=20)])
    assert batch.shape == (2, 3, TINY_VISION["image_size"], TINY_VISION["image_size"])


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"definitely not an image", "not a recognised image format"),
        (png_bytes(1)[:60], "corrupt or truncated"),
        (jpeg_bytes(1)[:200], "corrupt or truncated"),
    ],
)
def test_bad_images_raise_an_input_error_saying_why(tiny_anchor, data, reason):
    with pytest.raises(geobind.InputError, match=reason):
        tiny_anchor.embed([data])


def test_unknown_config_key_names_it_and_the_valid_keys():
    with pytest.raises(
        geobind.ConfigError,
        match=r"modality 'satellite' config: unknown key 'widht'.*valid keys: "
        r"embed_dim, image_size",
    ):
        geobind.build_encoder("satellite", {"widht": 64})


def test_wrong_config_type_is_a_config_error():
    with pytest.raises(geobind.ConfigError, match="layers"):
        geobind.build_encoder("satellite", {"layers": "many"})


@dataclass
class ShapeConfig:
    embed_dim: int = 8


class WrongShape(torch.nn.Module):
    def forward(self, batch):
        return torch.zeros(batch.shape[0], 5)


def register_modality(register_plugin, name: str, net: torch.nn.Module, prep, plugin: str):
    """Register a modality of ``ShapeConfig`` whose encoder is ``net`` and whose
    preprocessing is ``prep``, as the distribution ``plugin``."""
    modality = geobind.Modality(
        name=name,
        config=ShapeConfig,
        build_encoder=lambda c, w: net,
        build_preprocess=lambda c, train: prep,
        check=lambda v: None,
    )

    @geobind.hookimpl
    def geobind_register_modalities(register):
        register(modality)

    register_plugin(
        types.SimpleNamespace(geobind_register_modalities=geobind_register_modalities),
        name=plugin,
    )


def test_wrong_output_shape_names_the_plugin_and_shapes(register_plugin):
    register_modality(
        register_plugin, "wrongshape", WrongShape(), lambda v: torch.tensor([v]), "acme-wrongshape"
    )
    encoder = geobind.build_encoder("wrongshape")
    with pytest.raises(
        geobind.EncoderShapeError,
        match=r"'wrongshape' \(plugin acme-wrongshape\) returned \(3, 5\), "
        r"expected .*\[3, 8\]",
    ):
        encoder.embed([1.0, 2.0, 3.0])


def test_a_value_of_several_views_is_the_mean_of_their_unit_embeddings(register_plugin):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 8)

    def prep(value):  # up to 4 numbers: one input; more: a view per 4 (a long recording's)
        t = torch.tensor(value, dtype=torch.float32)
        return t if len(t) == 4 else geobind.Views(t.split(4))

    register_modality(register_plugin, "chunked", net, prep, "acme-chunked")
    encoder = geobind.build_encoder("chunked").train()
    one, five = [1.0, 2.0, 3.0, 4.0], [float(i) for i in range(20)]
    out = encoder.embed([one, five, one, five[:8]], batch_size=3)  # five views, batches of 3

    unit = torch.nn.functional.normalize
    with torch.no_grad():
        views = unit(net(torch.tensor(five).view(5, 4)), dim=1)
        expected = [unit(net(torch.tensor(one)), dim=0), unit(views.mean(0), dim=0)]
        expected += [expected[0], unit(views[:2].mean(0), dim=0)]
    torch.testing.assert_close(out, torch.stack(expected))
    assert not torch.allclose(out[1], views[2])  # pooled, not one view chosen
    assert encoder.training  # embed leaves the mode it found


def clip_state_dict(embed_dim: int = 32) -> tuple:
    """A small open_clip CLIP and its state dict, as a CLIP checkpoint holds it."""
    import open_clip

    torch.manual_seed(3)
    vision = {k: v for k, v in TINY_VISION.items() if k != "embed_dim"}
    model = open_clip.CLIP(
        embed_dim, vision_cfg=vision, text_cfg=dict(context_length=16, width=64, heads=2, layers=1)
    )
    return model.state_dict(), model


def test_anchor_initialises_from_a_clip_checkpoint_vision_tower(tmp_path):
    state, model = clip_state_dict()
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": state}, path)
    anchor = geobind.build_encoder("satellite", TINY_VISION, weights=path)
    pixels = anchor.collate([png_bytes(7)])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
    torch.testing.assert_close(anchor.eval()(pixels), expected)


def test_mismatching_weights_name_the_differing_keys(tmp_path):
    state, _ = clip_state_dict()
    state = {k: v for k, v in state.items() if k != "visual.proj"}
    state["visual.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "clip.safetensors"
    geobind.save_state_dict(path, state)
    with pytest.raises(
        geobind.WeightsError,
        match=r"1 missing \(first: \['proj'\]\), 1 unexpected \(first: "
        r"\['extra_head.weight'\]\)",
    ):
        geobind.build_encoder("satellite", TINY_VISION, weights=path)


@pytest.mark.parametrize("content, match", [(None, "not found"), (b"garbage", "cannot read")])
def test_unreadable_weights_file_is_named(tmp_path, content, match):
    path = tmp_path / "anchor.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(geobind.WeightsError, match=f"{match}.*anchor.pt"):
        geobind.build_encoder("satellite", TINY_VISION, weights=path)


def test_torch_checkpoints_never_build_the_objects_they_pickle(tmp_path):
    import argparse

    path = tmp_path / "objects.pt"
    payload = argparse.Namespace(x=1)  # an arbitrary class: weights_only refuses to unpickle it
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": payload}, path)
    assert geobind.read_state_dict(path)["x"].tolist() == [0.0]
    from geobind.encoders.torch_pickle import Inert, load_inert

    obj = load_inert(path)["obj"]
    assert isinstance(obj, Inert) and not isinstance(obj, argparse.Namespace)
    assert (obj.pickled_as, obj["x"]) == ("argparse.Namespace", 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(geobind.WeightsError, match="cannot read"):
        geobind.read_state_dict(path)


def test_saved_weights_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    geobind.save_state_dict(path, {"a": torch.ones(2)})
    import geobind.encoders.weights as weights

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights.os, "fsync", crash)
    with pytest.raises(OSError):
        geobind.save_state_dict(path, {"a": torch.zeros(2)})
    assert geobind.read_state_dict(path)["a"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_dihedral_augmentation_draws_the_eight_symmetries_of_the_tile():
    encoder = geobind.build_encoder("satellite", {"augment": "dihedral", "image_size": 32})
    tile = png_bytes(3)
    plain = encoder.preprocess(train=False)(tile)
    symmetries = {
        tuple(torch.flip(torch.rot90(plain, k, dims=(1, 2)), dims=flip).flatten().tolist())
        for k in range(4)
        for flip in ((), (2,))
    }
    assert len(symmetries) == 8
    torch.manual_seed(0)
    train = encoder.preprocess(train=True)
    drawn = {tuple(train(tile).flatten().tolist()) for _ in range(64)}
    assert drawn == symmetries  # every one of them, and nothing else
    with pytest.raises(geobind.ConfigError, match="augment 'spin' is not one of"):
        geobind.build_encoder("satellite", {"augment": "spin"})


def test_a_tower_reads_panoramas_that_are_not_square():
    from geobind.world import World, WorldConfig

    panorama = World(WorldConfig(seed=0, places=2, mosaic_width=512)).place(0).ground
    encoder = geobind.build_encoder(
        "ground", {"image_size": 32, "image_width": 128, "patch_size": 16, "augment": "none"}
    )
    pixels = encoder.preprocess(train=True)(panorama)
    assert pixels.shape == (3, 32, 128)
    assert torch.equal(pixels, encoder.preprocess(train=False)(panorama))  # augment: none
    assert encoder(pixels[None]).shape == (1, encoder.embed_dim)
    # 2 x 8 patches, as many as a 64 x 64 tile's 4 x 4: the anchor can start from this tower
    tile = geobind.build_encoder("satellite", {"image_size": 64, "patch_size": 16})
    tile.net.load_state_dict(encoder.net.state_dict())


def test_heading_augmentation_turns_and_mirrors_a_panorama_round_its_columns():
    from geobind.world import World, WorldConfig

    panorama = World(WorldConfig(seed=0, places=2, mosaic_width=512)).place(0).ground
    config = {"image_size": 32, "image_width": 128, "patch_size": 16, "augment": "heading"}
    encoder = geobind.build_encoder("ground", config)
    plain = encoder.preprocess(train=False)(panorama)
    views = {
        tuple(torch.flip(torch.roll(plain, s, dims=2), dims=flip).flatten().tolist())
        for s in range(128)
        for flip in ((), (2,))
    }
    torch.manual_seed(0)
    train = encoder.preprocess(train=True)
    drawn = [train(panorama) for _ in range(400)]
    assert all(tuple(d.flatten().tolist()) in views for d in drawn)  # only turns and mirrors
    assert len({tuple(d.flatten().tolist()) for d in drawn}) > 150  # of many headings
    # every column of the picture is still there, and each row keeps its place (the horizon)
    for d in drawn[:5]:
        assert torch.allclose(d.sum(2), plain.sum(2), atol=1e-4)
    assert torch.equal(encoder.preprocess(train=False)(panorama), plain)  # eval: as it is
    with pytest.raises(geobind.ConfigError, match="augment 'heading' turns a 360-degree"):
        geobind.build_encoder("satellite", {"augment": "heading", "image_size": 32})


def test_training_pictures_without_augmentation_are_decoded_once_and_come_out_the_same(
    monkeypatch,
):
    from geobind.encoders import vision

    pictures = [png_bytes(i, size=40) for i in range(6)]
    kept = vision.ImagePreprocess(32, train=True, augment="none")
    plain = vision.ImagePreprocess(32, train=False)
    first = [kept(p) for p in pictures]
    decoded = []
    real = vision.decode_image
    monkeypatch.setattr(vision, "decode_image", lambda d, m=None: decoded.append(d) or real(d, m))
    again = [kept(p) for p in pictures]
    assert decoded == []  # the second epoch decodes nothing
    for a, b, p in zip(first, again, pictures):
        assert torch.equal(a, b) and torch.equal(a, plain(p))  # same to the bit as eval
    kept.CACHE_BYTES = 0  # a full cache keeps nothing more, and still answers
    fresh = png_bytes(99, size=40)
    assert torch.equal(kept(fresh), plain(fresh))
    decoded.clear()
    kept(fresh)
    assert len(decoded) == 1 and len(kept._kept) == len(pictures)


def test_cropped_training_tiles_are_decoded_once_and_crop_as_open_clip_does(monkeypatch):
    from open_clip.constants import OPENAI_DATASET_STD

    from geobind.encoders import vision

    tiles = [png_bytes(i, size=40) for i in range(4)]
    kept = vision.ImagePreprocess(32, train=True, augment="crop")
    first = [kept(t) for t in tiles]
    assert all(p.shape == (3, 32, 32) and p.dtype == torch.float32 for p in first)
    decoded = []
    real = vision.decode_image
    monkeypatch.setattr(vision, "decode_image", lambda d, m=None: decoded.append(d) or real(d, m))
    pil = kept._transform  # open_clip's train transform, through PIL
    for tile in tiles:
        torch.manual_seed(7)
        ours = kept(tile)
        torch.manual_seed(7)  # the same crop drawn; torch's bicubic differs from PIL's by a
        theirs = pil(real(tile))  # few grey levels at most on noise, a quarter on average
        level = 1 / 255 / min(OPENAI_DATASET_STD)
        diff = (ours - theirs).abs()
        assert diff.max() <= 5 * level and diff.mean() <= 0.3 * level
    assert decoded == []  # later epochs decode nothing
    torch.manual_seed(0)
    drawn = {tuple(kept(tiles[0]).flatten()[:64].tolist()) for _ in range(8)}
    assert len(drawn) > 1  # still a random crop, not one fixed picture
