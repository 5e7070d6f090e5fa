"""A checkpoint in laion_clap's layout, written from laion_clap's own randomly initialised
HTSAT-tiny, loads into the paper-size encoder and embeds exactly as laion's audio branch does."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import geobind
from geobind_audio import paper_config

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")


@pytest.fixture(scope="module")
def laion_audio():
    """laion_clap's HTSAT-tiny audio branch and a CLAP audio projection (768 -> 512, ReLU)."""
    from geobind_audio.model import audio_cfg, import_htsat

    htsat = import_htsat()
    cfg = audio_cfg(paper_config())
    cfg.model_name = "tiny"
    torch.manual_seed(7)
    branch = htsat.create_htsat_model(cfg)
    with torch.no_grad():  # non-default batch-norm statistics, so buffers must load too
        branch.bn0.running_mean.uniform_(-1, 1)
        branch.bn0.running_var.uniform_(0.5, 2)
    projection = nn.Sequential(nn.Linear(768, 512), nn.ReLU(), nn.Linear(512, 512))
    return branch.eval(), projection.eval()


def write_laion_checkpoint(branch: nn.Module, projection: nn.Module, path) -> None:
    """As laion_clap saves a CLAP model trained under DDP: ``{"state_dict": {"module.*"}}``,
    text side included."""
    state = {f"module.audio_branch.{k}": v for k, v in branch.state_dict().items()}
    state.update({f"module.audio_projection.{k}": v for k, v in projection.state_dict().items()})
    state.update(
        {
            "module.text_branch.embeddings.word_embeddings.weight": torch.randn(50, 8),
            "module.text_branch.encoder.layer.0.attention.self.query.weight": torch.randn(8, 8),
            "module.text_projection.0.weight": torch.randn(512, 8),
            "module.logit_scale_a": torch.tensor(math.log(1 / 0.07)),
            "module.logit_scale_t": torch.tensor(math.log(1 / 0.07)),
        }
    )
    torch.save({"epoch": 45, "name": "HTSAT-tiny", "state_dict": state}, path)


@pytest.mark.slow
def test_laion_clap_checkpoint_embeds_like_laion_clap(laion_audio, tmp_path):
    branch, projection = laion_audio
    path = tmp_path / "630k-audioset-best.pt"
    write_laion_checkpoint(branch, projection, path)
    config = paper_config()
    encoder = geobind.build_encoder("audio", config, weights=path).eval()

    torch.manual_seed(0)
    t = torch.arange(config.clip_samples) / config.sample_rate
    # one clip: HTS-AT's cost is that of its 256 x 256 spectrogram image, whatever the length
    waves = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(t.numel()))[None]
    with torch.no_grad():
        expected = F.normalize(
            projection(branch({"waveform": waves}, device=waves.device)["embedding"]), dim=-1
        )
        ours = encoder(waves)
    difference = (ours - expected).abs().max().item()
    assert ours.shape == (1, 512) and difference < 1e-4, difference
    print(f"laion_clap vs geobind audio embedding: max |difference| {difference:.3g}")
