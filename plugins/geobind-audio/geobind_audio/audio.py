"""Decoding audio bytes into fixed-length mono waveforms, the way CLAP feeds HTS-AT.

Decoding is libsndfile's (through soundfile): WAV, FLAC, OGG/Vorbis, Opus, MP3 (libsndfile
1.1+), AIFF and the rest of ``soundfile.available_formats()``. Other containers (M4A/AAC,
WebM) are not read: convert them when importing a dataset.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from geobind import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from geobind import Views

__all__ = [
    "AudioPreprocess",
    "BandEnergies",
    "check_audio",
    "decode_audio",
    "fix_length",
    "resample",
    "to_mono",
]

#: Frames read at a time by :func:`check_audio`, so validating a long file stays small.
_BLOCK = 1 << 16

#: The shortest sound embedded, in seconds. A clip is repeat-padded to the encoder's length, so
#: a few milliseconds (libsndfile reads a WAV cut short as a short clip, without an error) would
#: become a buzz that the encoder embeds like any sound; below this it is refused instead.
MIN_SECONDS = 0.1


def _check_length(frames: int, rate: int) -> None:
    """Refuse a sound of no samples, or of fewer than :data:`MIN_SECONDS` at ``rate`` Hz."""
    if frames == 0:
        raise InputError("audio: no samples (0 frames)")
    if frames < MIN_SECONDS * rate:
        raise InputError(
            f"audio: {frames} frames ({1000 * frames / rate:.0f} ms at {rate} Hz) is too short "
            f"to embed, at least {MIN_SECONDS:g} s is needed (a file cut short?)"
        )


def _open(data: bytes):
    """A soundfile reader over encoded bytes, or an InputError saying why there is none."""
    import soundfile as sf

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"audio: expected encoded bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError("audio: empty file (0 bytes)")
    try:
        return sf.SoundFile(io.BytesIO(bytes(data)))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(
            f"audio: not a readable audio format ({len(data)} bytes): {_reason(exc)}"
        ) from None


def _pcm16(
    data: bytes, window: Callable[[int, int], tuple[int, int]] | None = None
) -> tuple[np.ndarray, int, bool] | None:
    """A 16-bit PCM WAV's samples as float32 ``[frames, channels]``, its rate and whether they
    are the whole file; None for any other file, or a WAV that is not what its header says
    (libsndfile reads those). ``window(rate, frames) -> (start, count)`` picks the frames
    read (``count < 0``: all), so a long recording costs no more than its clip.

    libsndfile reads bytes held in memory through soundfile's Python callbacks: ~180 us for a
    5 s clip at 16 kHz, most of an audio training batch's decoding. The standard library's
    ``wave`` finds the same samples in ~30 us, and they are scaled as libsndfile scales 16-bit
    PCM (by 1/32768, exact in float32): the same values to the bit.
    """
    import wave

    import numpy as np

    if not isinstance(data, bytes) or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                return None
            channels, rate, frames = w.getnchannels(), w.getframerate(), w.getnframes()
            if rate <= 0 or frames == 0 or channels == 0 or frames * channels * 2 > len(data):
                return None  # a header claiming more than the file holds: cut short
            start, count = window(rate, frames) if window is not None else (0, -1)
            wanted = frames - start if count < 0 else count
            w.setpos(start)
            raw = w.readframes(wanted)
    except (wave.Error, EOFError, ValueError):
        return None
    if len(raw) != wanted * channels * 2:
        return None
    samples = np.frombuffer(raw, dtype="<i2").reshape(wanted, channels)
    return samples.astype(np.float32) * np.float32(1 / 32768), rate, count < 0


def _frames(data: bytes) -> tuple[int, int]:
    """A file's sample rate and length in frames, from its header (a 16-bit PCM WAV's by the
    standard library's ``wave``, as :func:`_pcm16` reads it; any other by libsndfile)."""
    seen: list[tuple[int, int]] = []

    def header(rate: int, frames: int) -> tuple[int, int]:
        seen.append((rate, frames))
        return 0, 0  # no frames: the header is all that is wanted

    if _pcm16(data, header) is not None:
        return seen[0]
    with _open(data) as f:
        return f.samplerate, f.frames


def _read(f, start: int = 0, frames: int = -1) -> np.ndarray:
    """``frames`` frames from ``start`` as float32 ``[frames, channels]``."""
    import soundfile as sf

    try:
        if start:
            f.seek(start)
        return f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"audio: corrupt or truncated ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """libsndfile's own words, without soundfile's "Error opening <BytesIO ...>" preamble."""
    return str(getattr(exc, "error_string", "") or exc).strip()


def _check_samples(samples: np.ndarray, rate: int, whole: bool = True) -> None:
    """Refuse non-finite samples and, when ``samples`` is the whole file, too few of them."""
    import numpy as np

    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).any(axis=1).sum())
        raise InputError(
            f"audio: {bad} of {samples.shape[0]} frames at {rate} Hz hold NaN or infinite samples"
        )
    if whole or samples.shape[0] == 0:
        _check_length(samples.shape[0], rate)


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a whole file: float32 ``[frames, channels]`` and its sample rate."""
    pcm = _pcm16(data)
    if pcm is not None:
        _check_samples(pcm[0], pcm[1])
        return pcm[0], pcm[1]
    with _open(data) as f:
        samples = _read(f)
        rate = f.samplerate
    _check_samples(samples, rate)
    return samples, rate


def check_audio(data: bytes) -> None:
    """Raise :class:`geobind.InputError` unless ``data`` decodes to finite, non-empty audio.

    Reads the file block by block, so a long recording is checked in bounded memory.
    """
    import numpy as np

    with _open(data) as f:
        if f.samplerate <= 0:
            raise InputError(f"audio: invalid sample rate {f.samplerate}")
        total = 0
        while True:
            block = _read(f, 0, _BLOCK)
            if block.shape[0] == 0:
                break
            if not np.isfinite(block).all():
                raise InputError(
                    f"audio: NaN or infinite samples after frame {total} at {f.samplerate} Hz"
                )
            total += block.shape[0]
    _check_length(total, f.samplerate)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``[frames, channels]`` (or ``[frames]``) -> ``[frames]``, the mean of the channels."""
    import numpy as np

    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    weights = np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return samples @ weights  # a matrix-vector product: ~10x numpy's mean over a short axis


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono ``wave`` from ``rate`` to ``target`` Hz with soxr: ``round(n * target / rate)``
    samples."""
    import numpy as np
    import soxr

    if rate == target:
        return wave
    out = soxr.resample(wave, rate, target)
    if out.shape[0] == 0:
        raise InputError(
            f"audio: {wave.shape[0]} frames at {rate} Hz are too short to resample to {target} Hz"
        )
    return np.ascontiguousarray(out, dtype=np.float32)


def fix_length(wave: np.ndarray, length: int, offset: int | None = None) -> np.ndarray:
    """A clip of exactly ``length`` samples, as laion_clap's ``repeatpad``.

    A shorter clip is tiled whole times, then zero-padded; a longer one is cropped from
    ``offset`` (default: centred).
    """
    import numpy as np

    n = wave.shape[0]
    if n >= length:
        start = (n - length) // 2 if offset is None else offset
        return wave[start : start + length]
    out = np.zeros(length, dtype=np.float32)
    tiled = np.tile(wave, length // n)
    out[: tiled.shape[0]] = tiled
    return out


def _random_start(room: int) -> int:
    """A start in ``[0, room]`` from torch's RNG (seeded per DataLoader worker)."""
    import torch

    return int(torch.randint(0, room + 1, ()).item())


class AudioPreprocess:
    """Encoded audio bytes -> float32 tensor ``[clip_samples]`` of mono audio at
    ``sample_rate``.

    Decodes, down-mixes to mono (the mean of the channels), resamples with soxr and fixes the
    length: shorter clips are repeat-padded; longer ones are cropped at random when training
    (torch's RNG, so ``torch.manual_seed`` and DataLoader worker seeds govern it). For
    embedding, a recording longer than one clip is read whole, as up to ``windows`` clips
    spread evenly from its start to its end (:class:`geobind.Views`: the encoder embeds each
    and takes their mean), so a field recording of minutes is heard throughout, not only in
    its middle five seconds; ``windows=1`` keeps only the middle clip. Only the windows that
    are kept are decoded from a long file. Picklable: it holds four numbers.
    """

    def __init__(
        self, sample_rate: int, clip_seconds: float, train: bool, windows: int = 1
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(round(sample_rate * clip_seconds))
        self.train = bool(train)
        if int(windows) < 1:
            raise ValueError(f"windows: expected 1 or more, got {windows}")
        self.windows = int(windows)

    def __call__(self, data: bytes) -> torch.Tensor | Views:
        if not self.train and self.windows > 1:
            starts = self._starts(data)
            if len(starts) > 1:
                from geobind import Views

                return Views(self._view(data, s) for s in starts)
        return self._clip(data, self._window)

    def _view(self, data: bytes, start: int) -> torch.Tensor:
        """The clip of a long recording from frame ``start``; a fault in it says where it is."""
        seen: list[tuple[int, int]] = []

        def window(rate: int, total: int) -> tuple[int, int]:
            seen.append((rate, total))
            return start, self._need(rate)

        try:
            return self._clip(data, window)
        except InputError as exc:
            if not seen:
                raise
            rate, total = seen[0]
            where = f"{start / rate:.1f}-{(start + self._need(rate)) / rate:.1f} s"
            raise InputError(f"{exc} (in its clip at {where} of {total / rate:.1f} s)") from None

    def _clip(self, data: bytes, window: Callable[[int, int], tuple[int, int]]) -> torch.Tensor:
        """One clip of ``data``: the frames ``window(rate, total)`` picks, at the clip's length."""
        import numpy as np
        import torch

        pcm = _pcm16(data, window)
        if pcm is not None:
            samples, rate, whole = pcm
        else:
            with _open(data) as f:
                rate, total = f.samplerate, f.frames
                start, count = window(rate, total) if rate > 0 else (0, -1)
                samples = _read(f, start, count)
                whole = count < 0
        _check_samples(samples, rate, whole=whole)
        wave = resample(to_mono(samples), rate, self.sample_rate)
        room = wave.shape[0] - self.clip_samples
        offset = _random_start(room) if self.train and room > 0 else None
        return torch.from_numpy(np.ascontiguousarray(fix_length(wave, self.clip_samples, offset)))

    def _need(self, rate: int) -> int:
        """Source frames at ``rate`` that make one clip (one spare against resampling's
        rounding)."""
        return -(-self.clip_samples * rate // self.sample_rate) + (rate != self.sample_rate)

    def _starts(self, data: bytes) -> list[int]:
        """First frames of the clips a long recording is embedded as: ``ceil(frames / clip)``
        of them, at most ``windows``, evenly from its first frame to its last clip's start;
        one (or none, for a file that cannot be read: the single clip says why) otherwise."""
        import math

        try:
            rate, total = _frames(data)
        except InputError:
            return []
        if rate <= 0:
            return []
        need = self._need(rate)
        if total <= need:
            return [0]
        k = min(self.windows, math.ceil(total / need))
        return [round(i * (total - need) / (k - 1)) for i in range(k)]

    def _window(self, rate: int, total: int) -> tuple[int, int]:
        """The source frames to decode: all, or just enough for one clip from a long file."""
        if rate <= 0:
            return 0, -1
        need = self._need(rate)
        room = total - need
        if room <= 0:
            return 0, -1
        return (_random_start(room) if self.train else room // 2), need

    def __repr__(self) -> str:
        return (
            f"AudioPreprocess(sample_rate={self.sample_rate}, "
            f"clip_samples={self.clip_samples}, train={self.train}, windows={self.windows})"
        )


class BandEnergies:
    """The floor's features of a sound: the mean and spread over time of its log energy in
    ``bands`` log-spaced frequency bands (``fmin`` to the Nyquist frequency of
    ``sample_rate``), from a short-time Fourier transform with ``window``-sample frames.

    Non-learned: what the loudness and colour of a soundscape tell without training (see
    :mod:`geobind.eval.floor`).
    """

    def __init__(
        self, bands: int = 32, sample_rate: int = 16000, window: int = 512, fmin: float = 50.0
    ) -> None:
        self.bands, self.sample_rate, self.window, self.fmin = bands, sample_rate, window, fmin

    def fit(self, values: Sequence[bytes]) -> BandEnergies:
        return self

    def transform(self, values: Sequence[bytes]) -> np.ndarray:
        import numpy as np

        if not len(values):
            return np.zeros((0, 2 * self.bands))
        bank = self._bank()
        return np.stack([self._one(v, bank) for v in values])

    def _bank(self) -> np.ndarray:
        """``[window // 2 + 1, bands]``: which FFT bins fall in each band."""
        import numpy as np

        freqs = np.fft.rfftfreq(self.window, 1.0 / self.sample_rate)
        edges = np.geomspace(self.fmin, self.sample_rate / 2, self.bands + 1)
        inside = [(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        return np.stack(inside, axis=1).astype(np.float64)

    def _one(self, data: bytes, bank: np.ndarray) -> np.ndarray:
        import numpy as np

        samples, rate = decode_audio(data)
        wave = resample(to_mono(samples), rate, self.sample_rate)
        wave = fix_length(wave, max(len(wave), self.window))
        hop = self.window // 2
        frames = np.lib.stride_tricks.sliding_window_view(wave, self.window)[::hop]
        power = np.abs(np.fft.rfft(frames * np.hanning(self.window), axis=1)) ** 2
        energy = np.log(power @ bank + 1e-8)
        return np.concatenate([energy.mean(axis=0), energy.std(axis=0)])
