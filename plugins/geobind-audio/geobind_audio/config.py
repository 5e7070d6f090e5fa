"""The audio encoder's settings: an HTS-AT (Swin transformer on log-mel spectrograms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AudioConfig", "check_geometry", "paper_config"]


@dataclass
class AudioConfig:
    """An HTS-AT audio encoder and the fixed-length clips it reads.

    Defaults are a tiny model that trains on a CPU: 16 kHz, 5 s clips, 64 mel bins on a
    128 x 128 spectrogram image, a 4-stage Swin of width 32 with one block per stage.
    :func:`paper_config` gives laion_clap's HTSAT-tiny (48 kHz, 10 s, embed_dim 512).

    Geometry, as HTS-AT folds the spectrogram into a square image: ``freq_ratio =
    spec_size // n_mels`` must make ``n_mels * freq_ratio == spec_size``, a clip's
    ``clip_samples // hop + 1`` frames must fit in ``spec_size * freq_ratio``, and every Swin
    stage's grid (``spec_size // patch_stride`` halved per stage) must tile into windows.
    """

    #: Output dimension (the joint space); the projection is Linear -> ReLU -> Linear.
    embed_dim: int = 64
    #: Waveforms are resampled to this rate (Hz).
    sample_rate: int = 16000
    #: Clips are repeat-padded or cropped to this length (seconds).
    clip_seconds: float = 5.0
    #: A recording longer than a clip is embedded as the mean of up to this many clips spread
    #: evenly over it (a minute at 5 s clips); training reads one random clip of it. 1: only
    #: the middle clip.
    clip_windows: int = 12
    #: Mel filter-bank bins.
    n_mels: int = 64
    #: STFT window (and FFT) length, in samples.
    window: int = 512
    #: STFT hop, in samples.
    hop: int = 320
    #: Lowest and highest mel filter frequencies (Hz).
    fmin: float = 50.0
    fmax: float = 8000.0
    #: Side of the square image the spectrogram is folded into.
    spec_size: int = 128
    #: Patch-embedding kernel and stride (square).
    patch_size: int = 4
    patch_stride: int = 4
    #: Width of the first Swin stage; it doubles at each stage.
    swin_dim: int = 32
    #: Blocks per Swin stage, and attention heads per stage.
    depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    num_heads: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    #: Swin attention window (tokens per side).
    swin_window: int = 8
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    #: Classes of HTS-AT's tagging head; unused for embeddings, sized 527 in laion_clap weights.
    class_num: int = 8
    #: SpecAugment while training; HTS-AT uses 64 time frames of 1001, 8 mel bins.
    spec_augment: bool = True
    time_drop_width: int = 16
    freq_drop_width: int = 8
    #: Statistics pooling beside the Swin's pooled vector: the mean, spread and peak over time
    #: of each normalised mel band (3 * n_mels more inputs to the projection). Off in
    #: laion_clap's HTS-AT, whose checkpoints then load unchanged (see ``AudioEncoder``).
    band_stats: bool = False

    @property
    def clip_samples(self) -> int:
        """Samples in one clip at ``sample_rate``."""
        return int(round(self.sample_rate * self.clip_seconds))


def paper_config(**overrides) -> AudioConfig:
    """laion_clap's HTSAT-tiny as GeoBind uses it: 48 kHz, 10 s, 64 mels, 512-d output."""
    settings: dict[str, Any] = dict(
        embed_dim=512,
        sample_rate=48000,
        clip_seconds=10.0,
        n_mels=64,
        window=1024,
        hop=480,
        fmin=50.0,
        fmax=14000.0,
        spec_size=256,
        patch_size=4,
        patch_stride=4,
        swin_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[4, 8, 16, 32],
        swin_window=8,
        class_num=527,
        time_drop_width=64,
        freq_drop_width=8,
        band_stats=False,
    )
    settings.update(overrides)
    return AudioConfig(**settings)


def check_geometry(config: AudioConfig) -> list[str]:
    """What is wrong with a config's shapes (empty when HTS-AT can be built and run on it)."""
    problems = []
    if len(config.depths) != len(config.num_heads) or not config.depths:
        problems.append(
            f"depths {list(config.depths)} and num_heads "
            f"{list(config.num_heads)} must be non-empty and of equal length"
        )
    ratio = config.spec_size // config.n_mels if config.n_mels > 0 else 0
    if ratio < 1 or ratio * config.n_mels != config.spec_size:
        problems.append(
            f"spec_size {config.spec_size} must be a multiple of n_mels {config.n_mels}"
        )
        return problems
    frames = config.clip_samples // config.hop + 1 if config.hop > 0 else 0
    if not 0 < frames <= config.spec_size * ratio:
        problems.append(
            f"a {config.clip_seconds} s clip gives {frames} frames at hop "
            f"{config.hop}; at most spec_size * freq_ratio = "
            f"{config.spec_size * ratio} fit"
        )
    if not isinstance(config.clip_windows, int) or config.clip_windows < 1:
        problems.append(
            f"clip_windows must be a whole number of clips, 1 or more, got {config.clip_windows!r}"
        )
    if config.window > config.clip_samples:
        problems.append(
            f"window {config.window} is longer than a clip ({config.clip_samples} samples)"
        )
    if not 0 < config.fmin < config.fmax <= config.sample_rate / 2:
        problems.append(
            f"need 0 < fmin < fmax <= sample_rate / 2, got fmin {config.fmin}, "
            f"fmax {config.fmax}, sample_rate {config.sample_rate}"
        )
    problems += _grid_problems(config, ratio)
    return problems


def _grid_problems(config: AudioConfig, ratio: int) -> list[str]:
    grid = config.spec_size // config.patch_stride if config.patch_stride > 0 else 0
    if grid * config.patch_stride != config.spec_size:
        return [
            f"spec_size {config.spec_size} must be a multiple of patch_stride {config.patch_stride}"
        ]
    for stage, heads in enumerate(config.num_heads):
        side, width = grid >> stage, config.swin_dim << stage
        if side < 1 or side << stage != grid:
            return [f"stage {stage}: grid {grid} cannot be halved {stage} times"]
        if side > config.swin_window and side % config.swin_window:
            return [
                f"stage {stage}: grid side {side} is not a multiple of swin_window "
                f"{config.swin_window}"
            ]
        if heads < 1 or width % heads:
            return [f"stage {stage}: width {width} is not divisible by {heads} heads"]
    last = grid >> (len(config.num_heads) - 1)
    if last % ratio:  # HTS-AT regroups the last grid's rows into freq_ratio bands
        return [f"the last stage's grid side {last} must be a multiple of freq_ratio {ratio}"]
    return []
