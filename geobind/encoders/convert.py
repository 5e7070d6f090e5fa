"""Peer checkpoints in open_clip's layout: Hugging Face CLIP vision towers, Sat2Cap's anchor.

Sat2Cap (Dhakal et al., arXiv 2307.15904) trains its satellite ("overhead") encoder as a Hugging
Face ``CLIPVisionModelWithProjection`` inside a PyTorch Lightning module and saves Lightning
checkpoints: ``{"state_dict": {"imo_encoder.vision_model.vision_model.*",
"imo_encoder.vision_model.visual_projection.weight", "img_encoder.*" (the frozen ground CLIP),
"temp_layer.*", "queue", ...}, ...}``. :func:`sat2cap_to_open_clip` maps the satellite tower to
the keys of open_clip's ``VisionTransformer``, so it loads as geobind's anchor;
:func:`geobind.encoders.anchor.convert_sat2cap` writes it as safetensors. The anchor also loads
such a checkpoint directly (``build_encoder("satellite", config, weights="sat2cap.ckpt")``).

Key mapping (HF -> open_clip), per encoder layer ``N``:

==========================================  ===============================================
``embeddings.class_embedding``              ``class_embedding``
``embeddings.patch_embedding.weight``       ``conv1.weight``
``embeddings.position_embedding.weight``    ``positional_embedding``
``pre_layrnorm.*``                          ``ln_pre.*``
``encoder.layers.N.self_attn.{q,k,v}_proj`` ``transformer.resblocks.N.attn.in_proj_*`` (q;k;v)
``encoder.layers.N.self_attn.out_proj.*``   ``transformer.resblocks.N.attn.out_proj.*``
``encoder.layers.N.layer_norm{1,2}.*``      ``transformer.resblocks.N.ln_{1,2}.*``
``encoder.layers.N.mlp.fc{1,2}.*``          ``transformer.resblocks.N.mlp.c_{fc,proj}.*``
``post_layernorm.*``                        ``ln_post.*``
``visual_projection.weight``                ``proj`` (transposed)
==========================================  ===============================================

Both libraries use layer-norm eps 1e-5 and pool the class token after the final norm; OpenAI's
CLIP (and so Sat2Cap, initialised from ``openai/clip-vit-base-patch32``) uses QuickGELU
(``hidden_act="quick_gelu"``), so the open_clip tower must too (``arch: ViT-B-32-quickgelu``).
Sat2Cap normalises overhead images with its own statistics (mean ``[0.3670, 0.3827, 0.3338]``,
std ``[0.2209, 0.1975, 0.1988]``): set ``image_mean`` / ``image_std`` to match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from geobind.encoders.openclip import QUICK_GELU_HINT
from geobind.errors import WeightsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "SAT2CAP_IMAGE_MEAN",
    "SAT2CAP_IMAGE_STD",
    "check_sat2cap_activation",
    "hf_clip_vision_to_open_clip",
    "hf_vision_towers",
    "is_sat2cap",
    "sat2cap_to_open_clip",
]

#: Sat2Cap's satellite encoder, and its frozen ground-level CLIP, in its Lightning checkpoints.
SAT2CAP_SATELLITE = "imo_encoder."
SAT2CAP_GROUND = "img_encoder."
#: Sat2Cap's normalisation of overhead images (its ``Clip`` module's imo_mean / imo_std).
SAT2CAP_IMAGE_MEAN = [0.3670, 0.3827, 0.3338]
SAT2CAP_IMAGE_STD = [0.2209, 0.1975, 0.1988]

_MARK = "embeddings.class_embedding"
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")
#: HF buffers that carry no weights (older transformers saved ``position_ids``).
_IGNORED = ("embeddings.position_ids",)


def hf_vision_towers(state: Mapping[str, Any]) -> list[str]:
    """The key prefixes of the Hugging Face CLIP vision transformers in ``state``.

    A prefix ``P`` has ``P + "embeddings.class_embedding"`` and ``P + "pre_layrnorm.weight"``
    (e.g. ``"vision_model."`` for a ``CLIPVisionModelWithProjection``).
    """
    return sorted(
        key[: -len(_MARK)]
        for key in state
        if key.endswith(_MARK) and key[: -len(_MARK)] + "pre_layrnorm.weight" in state
    )


def _projection_key(prefix: str) -> str:
    outer = prefix[: -len("vision_model.")] if prefix.endswith("vision_model.") else prefix
    return outer + "visual_projection.weight"


def hf_clip_vision_to_open_clip(
    state: Mapping[str, torch.Tensor], prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """One HF CLIP vision tower (with its ``visual_projection``) as an open_clip state dict.

    ``prefix``: the tower's key prefix (see :func:`hf_vision_towers`); needed only when
    ``state`` holds several towers. Every entry of the tower must be mapped: a key this
    conversion does not know is an error, not silently dropped.
    """
    import torch

    towers = hf_vision_towers(state)
    if prefix is None:
        if len(towers) != 1:
            raise WeightsError(
                f"expected one Hugging Face CLIP vision tower, found {len(towers)}: {towers}"
            )
        prefix = towers[0]
    if prefix not in towers:
        raise WeightsError(
            f"no Hugging Face CLIP vision tower at prefix {prefix!r} (found: {towers or 'none'})"
        )
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise WeightsError(f"Hugging Face CLIP vision tower {prefix!r}: missing {key!r}")
        used.add(key)
        return state[key]

    def hf(name: str) -> torch.Tensor:
        return take(prefix + name)

    out = {
        "class_embedding": hf("embeddings.class_embedding"),
        "conv1.weight": hf("embeddings.patch_embedding.weight"),
        "positional_embedding": hf("embeddings.position_embedding.weight"),
    }
    for kind in ("weight", "bias"):
        out[f"ln_pre.{kind}"] = hf(f"pre_layrnorm.{kind}")
        out[f"ln_post.{kind}"] = hf(f"post_layernorm.{kind}")
    layers = sorted(
        {
            int(m.group(1))
            for k in state
            if k.startswith(prefix)
            for m in [_LAYER.match(k[len(prefix) :])]
            if m
        }
    )
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [hf(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            )
            out[f"{dst}attn.out_proj.{kind}"] = hf(f"{src}self_attn.out_proj.{kind}")
            out[f"{dst}ln_1.{kind}"] = hf(f"{src}layer_norm1.{kind}")
            out[f"{dst}ln_2.{kind}"] = hf(f"{src}layer_norm2.{kind}")
            out[f"{dst}mlp.c_fc.{kind}"] = hf(f"{src}mlp.fc1.{kind}")
            out[f"{dst}mlp.c_proj.{kind}"] = hf(f"{src}mlp.fc2.{kind}")
    projection = _projection_key(prefix)
    if projection not in state:
        raise WeightsError(
            f"Hugging Face CLIP vision tower {prefix!r} has no "
            f"{projection!r}: a CLIPVisionModelWithProjection is needed"
        )
    out["proj"] = take(projection).t().contiguous()
    left = [k for k in state if k.startswith(prefix) and k not in used and not k.endswith(_IGNORED)]
    if left:
        raise WeightsError(
            f"Hugging Face CLIP vision tower {prefix!r}: {len(left)} entries "
            f"this conversion does not map (first: {left[:5]})"
        )
    return out


def sat2cap_to_open_clip(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Sat2Cap's satellite encoder as an open_clip ``VisionTransformer`` state dict.

    ``state``: a Sat2Cap Lightning checkpoint as loaded (``{"state_dict": ...}``) or its state
    dict. The satellite tower is the one under ``imo_encoder.``; a checkpoint holding a single
    HF CLIP vision tower (e.g. a bare ``CLIPVisionModelWithProjection``) is taken as it is.
    """
    if isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    towers = hf_vision_towers(state)
    chosen = [t for t in towers if t.startswith(SAT2CAP_SATELLITE)]
    if not chosen and len(towers) == 1:
        chosen = towers
    if len(chosen) != 1:
        raise WeightsError(
            f"not a Sat2Cap checkpoint: expected one Hugging Face CLIP vision "
            f"tower under {SAT2CAP_SATELLITE!r}, found "
            f"{towers or 'no tower'}"
        )
    return hf_clip_vision_to_open_clip(state, chosen[0])


def is_sat2cap(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` holds a tower in Sat2Cap's Lightning layout."""
    return any(t.startswith((SAT2CAP_SATELLITE, SAT2CAP_GROUND)) for t in hf_vision_towers(state))


def check_sat2cap_activation(state: Mapping[str, Any], config: Any, source: str) -> None:
    """Sat2Cap's towers are OpenAI CLIP (QuickGELU): refuse to load them into a GELU tower."""
    if is_sat2cap(state) and not config.quick_gelu:
        raise WeightsError(
            f"{source}: Sat2Cap's encoders are Hugging Face CLIP models of "
            f"openai/clip-vit-* (hidden_act 'quick_gelu'), but this tower uses "
            f"GELU; {QUICK_GELU_HINT}"
        )
