"""geobind-audio: sound bound to the satellite anchor through an HTS-AT encoder.

Registers the modality ``audio`` (encoded audio file bytes in the column ``audio``). This
module imports nothing heavy: torch, laion_clap, numpy and the decoders load only when an
encoder or a preprocessing function is used, so ``geobind plugins`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from geobind import Modality, hookimpl
from geobind_audio.audio import BandEnergies
from geobind_audio.config import AudioConfig, paper_config

if TYPE_CHECKING:
    from geobind_audio.audio import AudioPreprocess
    from geobind_audio.model import AudioEncoder

__all__ = [
    "AudioConfig",
    "BandEnergies",
    "audio_modality",
    "build_encoder",
    "build_preprocess",
    "check",
    "geobind_register_modalities",
    "paper_config",
]

__version__ = "0.1.0"


def build_encoder(config: AudioConfig, weights: Path | None = None) -> AudioEncoder:
    """The HTS-AT audio encoder for ``config``, optionally from a local weights file."""
    from geobind_audio.model import build_audio_encoder

    return build_audio_encoder(config, weights)


def build_preprocess(config: AudioConfig, train: bool) -> AudioPreprocess:
    """Audio file bytes -> mono float32 waveform ``[clip_samples]`` at ``config.sample_rate``
    (for embedding, a longer recording -> :class:`geobind.Views` of up to
    ``config.clip_windows`` such clips)."""
    from geobind_audio.audio import AudioPreprocess

    return AudioPreprocess(config.sample_rate, config.clip_seconds, train, config.clip_windows)


def check(data: bytes) -> None:
    """Raise :class:`geobind.InputError` unless ``data`` decodes to finite, non-empty audio."""
    from geobind_audio.audio import check_audio

    check_audio(data)


def audio_modality() -> Modality:
    """The ``audio`` modality as this plugin registers it."""
    return Modality(
        name="audio",
        config=AudioConfig,
        build_encoder=build_encoder,
        build_preprocess=build_preprocess,
        check=check,
        storage="binary",
        column="audio",
        recipe="geobind_audio:recipe.yaml",
        description="sound clips through laion_clap's HTS-AT (WAV, FLAC, OGG, MP3)",
        features=BandEnergies,
    )


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the ``audio`` modality."""
    register(audio_modality())
