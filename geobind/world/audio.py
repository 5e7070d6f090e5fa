"""Soundscapes: a clip mixed from sources that the local land covers and the weather imply.

Noise-like sources (surf, wind, traffic rumble, tyres, rain, crowd murmur, insects) are cut
from long filtered-noise loops made once per world (a random stretch of each loop per clip);
birdsong, crickets, passing cars, horns and fog horns are synthesised per clip.
"""

from __future__ import annotations

import io

import numpy as np

from geobind.world.attributes import Conditions

__all__ = ["SoundBank", "encode_audio", "WAVE_BAND_HZ"]

_F = np.float32
#: where the surf of waves puts most of its energy (used by tests and checks)
WAVE_BAND_HZ = (150.0, 1200.0)

_BIRDS = {"dawn": 1.7, "morning": 1.2, "midday": 0.6, "afternoon": 0.75, "dusk": 0.9, "night": 0.06}
_INSECTS = {"dawn": 0.3, "morning": 0.7, "midday": 1.3, "afternoon": 1.2, "dusk": 0.6, "night": 0.0}
_CRICKETS = {
    "dawn": 0.2,
    "morning": 0.0,
    "midday": 0.0,
    "afternoon": 0.0,
    "dusk": 0.7,
    "night": 1.3,
}
_TRAFFIC = {
    "dawn": 0.5,
    "morning": 1.1,
    "midday": 1.0,
    "afternoon": 1.05,
    "dusk": 0.9,
    "night": 0.35,
}


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, response) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec *= response(np.maximum(f, 1e-3))
    out = np.fft.irfft(spec, n).astype(_F)
    out /= float(np.sqrt(np.mean(out**2))) + 1e-12
    return out


def _band(lo: float, hi: float, order: float = 2.0):
    def response(f: np.ndarray) -> np.ndarray:
        return 1.0 / np.sqrt((1 + (lo / f) ** (2 * order)) * (1 + (f / hi) ** (2 * order)))

    return response


def _tone(sr: int, freq, amp: np.ndarray, harmonics=((1, 1.0),)) -> np.ndarray:
    f = np.broadcast_to(np.asarray(freq, np.float64), amp.shape)
    phase = 2 * np.pi * np.cumsum(f) / sr
    out = np.zeros(amp.shape, np.float64)
    for h, a in harmonics:
        out += a * np.sin(h * phase)
    return (out * amp).astype(_F)


def _bird_call(rng: np.random.Generator, sr: int, kind: int) -> np.ndarray:
    f0 = float(rng.uniform(2200, min(0.42 * sr, 6200.0)))
    notes = {0: 1, 1: int(rng.integers(4, 12)), 2: 2, 3: int(rng.integers(2, 5))}[kind]
    parts = []
    for k in range(notes):
        if kind == 0:  # a falling whistle
            dur, f_a, f_b = rng.uniform(0.15, 0.4), f0, f0 * rng.uniform(0.55, 0.8)
        elif kind == 1:  # a trill of short notes
            dur, f_a, f_b = rng.uniform(0.03, 0.06), f0 * 1.1, f0 * 0.9
        elif kind == 2:  # two tones
            dur, f_a = 0.22, f0 * (1.0 if k == 0 else 0.8)
            f_b = f_a
        else:  # rising chirps
            dur, f_a, f_b = rng.uniform(0.06, 0.12), f0 * 0.7, f0
        m = max(8, int(dur * sr))
        s = np.linspace(0.0, 1.0, m)
        parts.append(
            _tone(sr, f_a + (f_b - f_a) * s, np.sin(np.pi * s) ** 2, ((1, 1.0), (2, 0.18)))
        )
        gap = {0: 0.25, 1: 0.025, 2: 0.06, 3: 0.09}[kind] * rng.uniform(0.8, 1.3)
        parts.append(np.zeros(int(gap * sr), _F))
    return np.concatenate(parts)


def _car_pass(rng: np.random.Generator, sr: int, tyre: np.ndarray) -> np.ndarray:
    m = len(tyre)
    t = np.arange(m) / sr
    tc, w = t[-1] / 2, float(rng.uniform(0.45, 1.4))
    env = 1.0 / (1.0 + ((t - tc) / w) ** 2)
    env = env - env.min()
    f_eng = float(rng.uniform(70, 150)) * (1.0 - 0.05 * np.tanh((t - tc) / (0.4 * w)))
    engine = _tone(sr, f_eng, env * 0.25, ((1, 1.0), (2, 0.5), (3, 0.2)))
    return (engine + 0.8 * env * tyre).astype(_F)


def _horn(
    rng: np.random.Generator, sr: int, lo: float, hi: float, dur: tuple, ramp: float
) -> np.ndarray:
    m = int(rng.uniform(*dur) * sr)
    env = np.minimum(1.0, np.minimum(np.arange(m), np.arange(m)[::-1]) / (ramp * sr))
    return _tone(sr, float(rng.uniform(lo, hi)), env, ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)))


class SoundBank:
    """Loops of filtered noise for one world, and the mixer that makes each place's clip."""

    def __init__(self, sample_rate: int, clip_samples: int, seed: int) -> None:
        self.sr = sr = sample_rate
        self.n = clip_samples
        rng = np.random.default_rng([seed, 0xA0D])
        length = int(max(3 * clip_samples, 8 * sr))
        band = _band

        def tilt(resp, slope):
            return lambda f: resp(f) * (f / 500.0) ** slope

        self.loops = {
            "surf": _shaped_noise(rng, length, sr, tilt(band(130, 1300, 1.5), -0.2)),
            "spray": _shaped_noise(rng, length, sr, band(1500, 6000, 1.5)),
            "wind": _shaped_noise(rng, length, sr, tilt(band(25, 320, 1.5), -0.5)),
            "howl": _shaped_noise(rng, length, sr, band(520, 760, 4.0)),
            "rumble": _shaped_noise(rng, length, sr, band(35, 160, 2.0)),
            "tyre": _shaped_noise(rng, length, sr, tilt(band(700, 4000, 1.5), -0.4)),
            "hiss": _shaped_noise(rng, length, sr, band(900, 7000, 1.5)),
            "cicada": _shaped_noise(rng, length, sr, band(4300, 6800, 3.0)),
            "babble": _shaped_noise(rng, length, sr, tilt(band(350, 3200, 2.0), -0.3)),
            "pink": _shaped_noise(
                rng, length, sr, lambda f: band(30, 7000, 1.0)(f) * (f / 100.0) ** -0.5
            ),
            "white": rng.standard_normal(length).astype(_F),
        }
        tl = np.arange(length) / sr
        # buzzing cicadas (amplitude-modulated high noise) and pulsing crickets, a few rates each
        self.cicadas = [
            (self.loops["cicada"] * (0.6 + 0.4 * np.sin(2 * np.pi * rate * tl))).astype(_F)
            for rate in (38.0, 55.0, 83.0)
        ]
        self.crickets = []
        for pulse, chirp, fc in ((28.0, 1.7, 4100.0), (34.0, 2.4, 4500.0), (40.0, 2.9, 3900.0)):
            gate = ((tl * pulse) % 1.0 < 0.5) & ((tl * chirp) % 1.0 < 0.3)
            self.crickets.append((np.sin(2 * np.pi * min(fc, 0.45 * sr) * tl) * gate).astype(_F))
        self.length = length
        self.t = (np.arange(self.n) / sr).astype(_F)
        # short events, made once and dropped into clips at random times
        self.birds = [[_bird_call(rng, sr, kind) for _ in range(12)] for kind in range(4)]
        tyre = self.loops["tyre"]
        car_len = int(4.0 * sr)
        self.cars = [
            _car_pass(rng, sr, tyre[k * car_len : (k + 1) * car_len])
            for k in range(length // car_len)
        ][:24]
        self.horns = [_horn(rng, sr, 330, 480, (0.2, 0.7), 0.02) for _ in range(6)]
        self.foghorns = [_horn(rng, sr, 110, 170, (1.2, 2.2), 0.15) for _ in range(4)]

    # ---- helpers ---------------------------------------------------------------------
    def _cut(
        self, name: str, rng: np.random.Generator, loop: np.ndarray | None = None
    ) -> np.ndarray:
        start = int(rng.integers(0, self.length - self.n))
        return (self.loops[name] if loop is None else loop)[start : start + self.n]

    def _slow(self, rng: np.random.Generator, step_s: float, depth: float) -> np.ndarray:
        """A smooth random envelope around 1 (lognormal steps every ``step_s`` seconds)."""
        k = int(self.n / (self.sr * step_s)) + 3
        ctrl = np.exp(depth * rng.standard_normal(k))
        xs = np.linspace(-step_s, self.n / self.sr + step_s, k)
        coarse = np.interp(self.t[::64], xs, ctrl).astype(_F)  # 64-sample steps are inaudible
        return np.repeat(coarse, 64)[: self.n]

    def _onset(self, rng: np.random.Generator) -> np.ndarray | float:
        """Some sources start (or stop) during the clip."""
        if rng.random() > 0.3:
            return 1.0
        at = float(rng.uniform(0.1, 0.7)) * self.n / self.sr
        ramp = np.clip((self.t - at) / 0.4, 0.0, 1.0)
        return ramp if rng.random() < 0.6 else ramp[::-1].copy()

    def _add(self, y: np.ndarray, start: int, clip: np.ndarray, gain: float) -> None:
        if start >= self.n or start + len(clip) <= 0:
            return
        a, b = max(0, start), min(self.n, start + len(clip))
        y[a:b] += gain * clip[a - start : b - start]

    def _events(
        self,
        y: np.ndarray,
        bank: list,
        count: int,
        rng: np.random.Generator,
        lo: float,
        hi: float,
        margin: int = 0,
    ) -> None:
        for _ in range(count):
            clip = bank[int(rng.integers(0, len(bank)))]
            start = int(rng.integers(-margin - len(clip) // 2, self.n - len(clip) // 2 + margin))
            self._add(y, start, clip, float(rng.uniform(lo, hi)))

    # ---- the mix ---------------------------------------------------------------------
    def render(
        self, fractions: np.ndarray, sea_share: float, cond: Conditions, rng: np.random.Generator
    ) -> np.ndarray:
        """One clip (float32 in [-1, 1]) for land-cover ``fractions`` under ``cond``."""
        water, sand, grass, farm, forest, urban, road, rock = (float(x) for x in fractions[:8])
        tod, weather = cond.time_of_day, cond.weather
        sr, n, t = self.sr, self.n, self.t
        y = np.zeros(n, _F)

        def loud() -> float:  # random loudness of a source, about +-4 dB
            return float(np.exp(0.45 * rng.standard_normal()))

        # waves: surf in swells, loud on sea coasts with beaches, gentle on lakes
        coast = water > 0.03
        g = (0.55 * np.sqrt(water) + 1.3 * sand) * (0.4 + 0.6 * sea_share) if coast else 0.0
        if g > 0.01:
            period = float(rng.uniform(2.5, 7.0))
            phase = float(rng.uniform(0, 2 * np.pi))
            swell = (0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)).astype(_F) ** 3
            env = 0.22 + 0.78 * swell
            y += (
                min(g, 1.3)
                * loud()
                * env
                * (self._cut("surf", rng) + 0.35 * swell * self._cut("spray", rng))
            )
        # wind, stronger in the open and on mountains, gusty
        g = 0.1 + 0.5 * rock + 0.22 * sand + 0.14 * grass + 0.12 * water + 0.06 * farm
        g *= {"clear": 1.0, "cloudy": 1.2, "overcast": 1.3, "rain": 1.4, "fog": 0.5}[weather]
        y += g * loud() * self._slow(rng, 0.7, 0.5) * self._cut("wind", rng)
        if rock > 0.05:
            y += 0.45 * rock * loud() * self._slow(rng, 0.5, 0.6) * self._cut("howl", rng)
        # traffic: low rumble, passing cars, crowd murmur in towns, horns
        busy = _TRAFFIC[tod]
        g = min(1.4, 1.1 * urban + 3.5 * road) * busy
        if g > 0.01:
            y += (
                g
                * loud()
                * self._onset(rng)
                * self._slow(rng, 1.0, 0.25)
                * self._cut("rumble", rng)
            )
            cars = min(
                int(rng.poisson((10.0 * road + 2.5 * urban) * busy * n / sr / 5.0 * 2.0)), 12
            )
            self._events(y, self.cars, cars, rng, 0.3 * g, 0.9 * g, margin=sr // 2)
        if urban > 0.05:
            g = 0.3 * urban * (0.3 if tod == "night" else 1.0)
            y += g * loud() * self._slow(rng, 0.2, 0.5) * self._cut("babble", rng)
            if rng.random() < 0.35 * urban:
                self._events(y, self.horns, int(rng.integers(1, 3)), rng, 0.1, 0.25)
        # birds
        rate = (5.0 * forest + 2.2 * grass + 1.0 * farm + 0.5 * urban + 0.4 * sand) * _BIRDS[tod]
        rate *= {"clear": 1.0, "cloudy": 0.9, "overcast": 0.7, "rain": 0.2, "fog": 0.6}[weather]
        calls = min(int(rng.poisson(rate * n / sr)), 30)
        if calls:
            species = rng.integers(0, 4, size=2)  # one or two kinds of birds sing here
            for k in range(calls):
                self._events(y, self.birds[int(species[k % 2])], 1, rng, 0.03, 1.0)
        # insects: buzzing cicadas by day, pulsing crickets at dusk and night
        g = (0.9 * farm + 0.7 * grass + 0.2 * forest) * (0.3 if weather == "rain" else 1.0)
        if g * _INSECTS[tod] > 0.02 and sr >= 12000:
            buzz = self._cut("", rng, self.cicadas[int(rng.integers(0, 3))])
            y += (
                0.35
                * g
                * _INSECTS[tod]
                * loud()
                * self._onset(rng)
                * self._slow(rng, 1.5, 0.4)
                * buzz
            )
        if g * _CRICKETS[tod] > 0.02:
            y += (
                0.18
                * g
                * _CRICKETS[tod]
                * loud()
                * self._cut("", rng, self.crickets[int(rng.integers(0, 3))])
            )
        # weather
        if weather == "rain":
            g = float(rng.uniform(0.35, 0.8))
            drops = np.zeros(n, _F)
            k = int(rng.poisson(60 * n / sr))
            drops[rng.integers(0, n, size=k)] = rng.uniform(-1, 1, size=k).astype(_F) * 6.0
            drops[1:] -= drops[:-1].copy()
            y += g * (self._cut("hiss", rng) * self._slow(rng, 0.8, 0.2) + drops)
        if weather == "fog" and water > 0.1 and sea_share > 0.5 and rng.random() < 0.5:
            self._events(y, self.foghorns, 1, rng, 0.3, 0.6)
        # room tone and microphone hiss
        y += 0.03 * self._cut("pink", rng) + 0.004 * self._cut("white", rng)

        rms = float(np.sqrt(np.mean(y**2))) + 1e-9
        y *= (10.0 ** (cond.loudness_db / 20.0)) / rms
        peak = float(np.max(np.abs(y)))
        if peak > 0.98:
            y *= 0.98 / peak
        return y


def encode_audio(y: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """16-bit mono FLAC or WAV bytes (deterministic for the same samples)."""
    import soundfile as sf

    buf = io.BytesIO()
    pcm = np.clip(np.rint(y * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(buf, pcm, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()
