"""laion_clap's HTS-AT audio branch with CLAP's audio projection, built to any size.

Submodules are named ``audio_branch`` and ``audio_projection`` as in laion_clap's ``CLAP``,
so the audio half of a (non-fusion) laion_clap checkpoint loads into this module unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from torch import nn

from geobind import ConfigError, load_into, read_state_dict, strip_prefix
from geobind_audio.config import AudioConfig, check_geometry

__all__ = [
    "INTERNALS",
    "AudioEncoder",
    "FFTSTFT",
    "audio_cfg",
    "audio_state",
    "build_audio_encoder",
    "import_htsat",
]

#: The checkpoint entries that belong to the audio side of a CLAP model.
AUDIO_PREFIXES = ("audio_branch.", "audio_projection.")

#: laion_clap internals this module builds on, as (module, name, the keyword arguments it
#: passes), checked by tests/test_laion_internals.py against the version constraints.txt pins.
#: The built Swin is read through its ``head``, ``tscam_conv``, ``num_features`` and
#: ``spec_augmenter`` attributes and returns its pooled vector as ``"embedding"``.
INTERNALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "laion_clap.clap_module.htsat",
        "HTSAT_Swin_Transformer",
        (
            "spec_size",
            "patch_size",
            "patch_stride",
            "num_classes",
            "embed_dim",
            "depths",
            "num_heads",
            "window_size",
            "mlp_ratio",
            "drop_path_rate",
            "config",
        ),
    ),
    (
        "laion_clap.clap_module.htsat",
        "SpecAugmentation",
        ("time_drop_width", "time_stripes_num", "freq_drop_width", "freq_stripes_num"),
    ),
)


def import_htsat() -> ModuleType:
    """``laion_clap.clap_module.htsat``, imported without running laion_clap's ``__init__``.

    laion_clap's package ``__init__`` imports its whole CLAP training stack (transformers, its
    tokenizers, timm, open_clip-like factories: about 4 s) and appends its folder to
    ``sys.path``; online, transformers may also reach the Hugging Face Hub and hang. The audio
    branch needs none of it: ``htsat`` imports only torch, torchlibrosa and two sibling
    modules. So the two parent packages are stood in for by bare package objects while
    ``htsat`` loads, then removed, so a later ``import laion_clap`` runs its ``__init__`` as
    usual.
    """
    name = "laion_clap.clap_module.htsat"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the audio encoder needs laion_clap; pip install 'laion_clap>=1.1.4'")
    root = Path(next(iter(spec.submodule_search_locations)))
    stand_ins = {}
    for package, folder in (("laion_clap", root), ("laion_clap.clap_module", root / "clap_module")):
        if package not in sys.modules:
            module = ModuleType(package)
            module.__path__ = [str(folder)]
            stand_ins[package] = sys.modules[package] = module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # timm deprecations in its imports
            return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"the audio encoder needs laion_clap's HTS-AT ({exc}); pip install 'laion_clap>=1.1.4'"
        ) from exc
    finally:
        for package, module in stand_ins.items():
            if sys.modules.get(package) is module:
                del sys.modules[package]


class FFTSTFT(nn.Module):
    """torchlibrosa's ``STFT`` by ``torch.stft``: the same numbers in a fraction of the time.

    HTS-AT builds its spectrogram with torchlibrosa, which computes the STFT as two dense
    ``Conv1d`` whose ``n_fft``-wide kernels are the windowed DFT matrix: ``n_fft**2`` multiplies a
    frame, which made a training step of the demo's small HTS-AT on a CPU a third slower (forward
    and backward for 64 five-second clips at n_fft 1024: 190 ms, 145 with the FFT).
    ``torch.stft`` is an FFT. This module keeps torchlibrosa's
    ``conv_real``/``conv_imag`` weights, so laion_clap checkpoints load into it unchanged, and runs
    the FFT while those weights are the windowed DFT they were built as (laion_clap freezes them);
    weights that are anything else (a checkpoint that trained them) run through the convolutions.
    """

    window: torch.Tensor

    def __init__(self, stft: Any) -> None:
        super().__init__()
        self.n_fft, self.hop_length = int(stft.n_fft), int(stft.hop_length)
        self.center, self.pad_mode = bool(stft.center), str(stft.pad_mode)
        self.conv_real: nn.Conv1d = stft.conv_real
        self.conv_imag: nn.Conv1d = stft.conv_imag
        # The window the kernels were built with is their DC row: W[0, k] = 1 for every k.
        self.register_buffer(
            "window", self.conv_real.weight[0, 0].detach().clone(), persistent=False
        )
        self._checked: tuple[int, int] | None = None
        self._is_dft = False

    def _weights_are_dft(self) -> bool:
        """Whether the kernels are still the windowed DFT (checked again after every load)."""
        version = (self.conv_real.weight._version, self.conv_imag.weight._version)
        if version != self._checked:
            n = self.n_fft
            k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None]
            angle = -2 * torch.pi * k * torch.arange(n, dtype=torch.float64)[None] / n
            window = self.conv_real.weight[0, 0].detach().double().cpu()
            real = (torch.cos(angle) * window).to(self.conv_real.weight.dtype)
            imag = (torch.sin(angle) * window).to(self.conv_imag.weight.dtype)
            self.window = window.to(self.window)
            self._is_dft = torch.allclose(
                self.conv_real.weight[:, 0].detach().cpu(), real, atol=1e-6
            ) and torch.allclose(self.conv_imag.weight[:, 0].detach().cpu(), imag, atol=1e-6)
            self._checked = version
        return self._is_dft

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[batch, samples]`` -> real and imaginary parts, each ``[batch, 1, frames, bins]``."""
        if not self._weights_are_dft():
            x = x[:, None, :]
            if self.center:
                pad = self.n_fft // 2
                x = torch.nn.functional.pad(x, (pad, pad), mode=self.pad_mode)
            return (
                self.conv_real(x)[:, None].transpose(2, 3),
                self.conv_imag(x)[:, None].transpose(2, 3),
            )
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(x.device, x.dtype),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )  # [batch, bins, frames]
        spec = spec.transpose(1, 2)[:, None]
        return spec.real, spec.imag


def audio_cfg(config: AudioConfig) -> SimpleNamespace:
    """The ``audio_cfg`` object HTS-AT reads its spectrogram settings from."""
    return SimpleNamespace(
        model_type="HTSAT",
        model_name="custom",
        sample_rate=config.sample_rate,
        clip_samples=config.clip_samples,
        window_size=config.window,
        hop_size=config.hop,
        mel_bins=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        class_num=config.class_num,
    )


class AudioEncoder(nn.Module):
    """Mono waveforms ``[batch, clip_samples]`` -> ``[batch, embed_dim]`` (not normalised).

    HTS-AT turns each waveform into a log-mel spectrogram, folds it into a square image and
    pools its Swin features into one vector (``"embedding"``); CLAP's projection (Linear, ReLU,
    Linear) maps that vector into the joint space.

    With ``band_stats``, the projection also reads the mean, spread and peak over time of each
    mel band as HTS-AT's own batch norm left it: statistics pooling, as x-vectors pool mean and
    spread and PANNs mean and maximum over time. A small Swin trained from scratch for a few
    hundred steps is slow to learn how loud each steady source of a soundscape is (wind, traffic,
    water), which these carry directly (the demo's audio stage over five seeds: satellite -> audio
    8.7% -> 9.3%, zero-shot land cover from sound 41% -> 50%; BENCHMARKS.md).
    """

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        htsat = import_htsat()
        self.audio_branch = htsat.HTSAT_Swin_Transformer(
            spec_size=config.spec_size,
            patch_size=config.patch_size,
            patch_stride=(config.patch_stride, config.patch_stride),
            num_classes=config.class_num,
            embed_dim=config.swin_dim,
            depths=list(config.depths),
            num_heads=list(config.num_heads),
            window_size=config.swin_window,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
            config=audio_cfg(config),
        )
        self.audio_branch.spec_augmenter = (  # HTS-AT hard-codes widths for 1001 frames
            htsat.SpecAugmentation(
                time_drop_width=config.time_drop_width,
                time_stripes_num=2,
                freq_drop_width=config.freq_drop_width,
                freq_stripes_num=2,
            )
            if config.spec_augment
            else nn.Identity()
        )
        extractor = self.audio_branch.spectrogram_extractor
        extractor.stft = FFTSTFT(extractor.stft)
        # The tagging head is off the embedding path: frozen, so DDP expects no grads for it.
        for module in (self.audio_branch.head, self.audio_branch.tscam_conv):
            module.requires_grad_(False)
        width = self.audio_branch.num_features
        self.band_stats = bool(config.band_stats)
        self._bands: list[torch.Tensor] = []
        if self.band_stats:
            width += 3 * config.n_mels
            self.audio_branch.bn0.register_forward_hook(self._keep_bands)
        self.audio_projection = nn.Sequential(
            nn.Linear(width, config.embed_dim),
            nn.ReLU(),
            nn.Linear(config.embed_dim, config.embed_dim),
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(
                f"audio encoder: expected waveforms [batch, samples], got {list(waveform.shape)}"
            )
        self._bands.clear()
        out = self.audio_branch({"waveform": waveform}, device=waveform.device)
        pooled = out["embedding"]
        if self.band_stats:
            if len(self._bands) != 1:
                raise RuntimeError(
                    "audio encoder: band_stats expects HTS-AT to normalise one log-mel "
                    f"spectrogram per forward (its bn0 ran {len(self._bands)} times)"
                )
            bands = self._bands.pop()[..., 0]  # bn0 sees [batch, mels, frames, 1]
            pooled = torch.cat([pooled, bands.mean(-1), bands.std(-1), bands.amax(-1)], dim=1)
        return self.audio_projection(pooled)

    def _keep_bands(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self._bands.append(output)


def audio_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The audio entries of a laion_clap checkpoint, or a plain state dict of this module.

    A ``module.`` prefix (laion_clap saves its DDP wrapper) is removed and text-side entries
    are dropped; a state holding no audio entry is returned whole, so a mismatch names its keys.
    """
    state = strip_prefix(state, "module.")
    audio = {k: v for k, v in state.items() if k.startswith(AUDIO_PREFIXES)}
    return audio or dict(state)


def build_audio_encoder(config: AudioConfig, weights: Path | None = None) -> AudioEncoder:
    """The encoder for ``config``, optionally loaded from a local weights file.

    ``weights``: a laion_clap checkpoint (non-fusion, same sizes: :func:`paper_config` for
    HTSAT-tiny) or a state dict of :class:`AudioEncoder`, as safetensors or a torch file.
    """
    problems = check_geometry(config)
    if problems:
        raise ConfigError("audio config: " + "; ".join(problems))
    # HTS-AT's Swin calls torch.meshgrid without `indexing`; the default it warns about is right
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    model = AudioEncoder(config)
    if weights is not None:
        load_into(model, audio_state(read_state_dict(weights)), f"audio weights {weights}")
    return model
