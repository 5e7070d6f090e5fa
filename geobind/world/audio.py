"""Soundscapes: a clip mixed from sources that the local land covers and the weather imply.

Noise-like sources (surf, wind, traffic rumble, tyres, rain, crowd murmur, insects) are cut
from long filtered-noise loops made once per world (a random stretch of each loop per clip);
birdsong, owls, frogs, crickets, passing cars, horns and fog horns are banks of short events
made once per world and dropped into each clip at random times.

Which birds sing depends on the habitat, as in real field recordings: each land cover has its
own assemblage of species (:data:`ASSEMBLAGES`), birds of the north-eastern United States where
the world's default coordinates lie, after the habitat accounts of the Cornell Lab's Birds of
the World and eBird, their calls as the Macaulay Library's and Xeno-canto's recordings have
them. Species tell habitats apart by the shape of their calls (rhythm, pitch contour,
harshness) more than by the frequency band they use: most songbirds share 2-6 kHz. A sound
encoder that reads a spectrogram can hear which species sing; the mean and spread of band
energies hear mostly how much song there is.
"""

from __future__ import annotations

import io

import numpy as np

from geobind.world.attributes import Conditions

__all__ = ["KINDS", "SoundBank", "describe_sound", "encode_audio", "WAVE_BAND_HZ"]

_F = np.float32
#: how much a source's loudness varies from one recording to the next (the spread of its log
#: amplitude: 0.45 is about +-4 dB): a busy or quiet hour on the road, strong or weak surf
LOUDNESS_SPREAD = 0.45
#: where the surf of waves puts most of its energy (used by tests and checks)
WAVE_BAND_HZ = (150.0, 1200.0)

_INSECTS = {"dawn": 0.3, "morning": 0.7, "midday": 1.3, "afternoon": 1.2, "dusk": 0.6, "night": 0.0}
_CRICKETS = {
    "dawn": 0.2,
    "morning": 0.0,
    "midday": 0.0,
    "afternoon": 0.0,
    "dusk": 0.7,
    "night": 1.3,
}
#: How strong the wind is in each weather (a factor on the wind, and on crops rustling in it).
_WIND = {"clear": 1.0, "cloudy": 1.2, "overcast": 1.3, "rain": 1.4, "fog": 0.5}
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


Note = tuple[float, float, float, float]


def _song(
    sr: int,
    notes: list[Note],
    harmonics: tuple = ((1, 1.0), (2, 0.18)),
    rough_hz: float = 0.0,
) -> np.ndarray:
    """Notes of ``(seconds, start Hz, end Hz, gap after)``, each a swept tone with a smooth
    envelope; ``rough_hz`` adds the amplitude flutter of a harsh call (crows, gulls)."""
    parts = []
    for dur, f_a, f_b, gap in notes:
        m = max(8, int(dur * sr))
        s = np.linspace(0.0, 1.0, m)
        env = np.sin(np.pi * s) ** 2
        if rough_hz:
            env = env * (0.55 + 0.45 * np.sin(2 * np.pi * rough_hz * np.arange(m) / sr))
        harm = tuple((h, a) for h, a in harmonics if h * max(f_a, f_b) < 0.45 * sr)
        parts.append(_tone(sr, f_a + (f_b - f_a) * s, env, harm))
        parts.append(np.zeros(int(gap * sr), _F))
    return np.concatenate(parts)


def _species_call(rng: np.random.Generator, sr: int, species: str) -> np.ndarray:
    """One song or call of ``species`` (a key of :data:`SPECIES`), varied by ``rng``."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    def count(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi))

    top = 0.42 * sr
    harsh = ((1, 1.0), (2, 0.9), (3, 0.8), (4, 0.6), (5, 0.5), (6, 0.4), (7, 0.3))
    notes: list[Note]
    if species == "wood_thrush":  # flute-like phrases of pitch jumps, repeated
        notes = []
        for _ in range(count(3, 6)):
            f = u(1800, 3800)
            notes.append((u(0.07, 0.14), f, f * u(0.9, 1.1), 0.03))
        return _song(sr, notes * count(2, 4), ((1, 1.0), (2, 0.25)))
    if species == "woodpecker":  # drumming: a burst of broadband knocks at ~17 a second
        rate, knocks = u(14, 20), count(10, 20)
        y = np.zeros(int(sr * (knocks / rate + 0.05)), _F)
        tk = np.arange(int(0.008 * sr))
        for j in range(knocks):
            a = int(j * sr / rate)
            click = rng.standard_normal(len(tk)) * np.exp(-tk / (0.0015 * sr))
            y[a : a + len(tk)] += (click * (1.0 - 0.4 * j / knocks)).astype(_F)
        return y / (float(np.max(np.abs(y))) + 1e-9)
    if species == "owl":  # great horned owl: a long hoot, a pause, two quick, a long
        f0 = u(520, 720)
        notes = [(u(0.3, 0.45), f0, f0 * 0.95, u(0.8, 1.6))]
        notes += [(0.12, f0 * 0.95, f0 * 0.9, 0.04)] * 2 + [(u(0.5, 0.8), f0, f0 * 0.93, 0.1)]
        return _song(sr, notes, ((1, 1.0), (2, 0.12)))
    if species == "bobolink":  # a bubbling warble of rapid notes for seconds on end
        notes = []
        for _ in range(count(35, 70)):
            f = u(2200, 4800)
            notes.append((u(0.04, 0.08), f, f * u(0.85, 1.15), 0.01))
        return _song(sr, notes, ((1, 1.0), (2, 0.15)))
    if species == "field_sparrow":  # an accelerating series of thin notes
        f0, k = min(u(3600, 4800), top), count(8, 16)
        return _song(sr, [(0.06, f0 * 0.8, f0, 0.16 - 0.1 * j / k) for j in range(k)])
    if species == "song_sparrow":  # repeated short notes, then a long lower one
        f0 = min(u(4200, 5600), top)
        notes = [(0.05, f0, f0 * 0.95, 0.1)] * count(6, 11)
        return _song(sr, notes + [(u(0.3, 0.5), f0 * 0.8, f0 * 0.78, 0.1)])
    if species == "crow":  # harsh, low caws with many harmonics
        f0 = u(380, 600)
        notes = [(u(0.25, 0.4), f0, f0 * 0.9, u(0.25, 0.5))] * count(1, 4)
        return _song(sr, notes, harsh, rough_hz=u(55, 80))
    if species == "rock_pigeon":  # a low, soft croo-oo
        f0 = u(300, 420)
        notes = [(u(0.25, 0.35), f0, f0 * 1.1, 0.05), (u(0.4, 0.6), f0 * 1.1, f0 * 0.9, 0.3)]
        return _song(sr, notes * count(1, 3), ((1, 1.0), (2, 0.35)))
    if species == "house_sparrow":  # repeated cheeps, each falling
        f0 = min(u(3800, 4800), top)
        notes = [(u(0.07, 0.12), f0, f0 * 0.7, u(0.15, 0.35)) for _ in range(count(3, 9))]
        return _song(sr, notes, ((1, 1.0), (2, 0.4)))
    if species == "chickadee":  # fee-bee: two whistled notes, the second lower
        f0 = min(u(4000, 5500), top)
        notes = [(0.1, f0, f0, 0.03), (0.1, f0 * 0.75, f0 * 0.75, 0.08)] * count(3, 6)
        return _song(sr, notes)
    if species == "herring_gull":  # the long call: two slow then fast harsh kyow-notes
        f0 = u(800, 1300)
        notes = [(u(0.25, 0.35), f0 * 1.2, f0 * 0.8, 0.2)] * 2
        notes += [(u(0.13, 0.2), f0 * 1.15, f0 * 0.85, 0.08)] * count(4, 9)
        return _song(sr, notes, harsh[:5], rough_hz=u(40, 60))
    if species == "pine_warbler":  # a musical trill of one repeated note, 1-2 s
        f0, k = min(u(3200, 4600), top), count(12, 24)
        return _song(sr, [(0.045, f0 * 1.03, f0 * 0.97, 0.025)] * k, ((1, 1.0), (2, 0.2)))
    if species == "horned_lark":  # a high, tinkling twitter of irregular notes
        notes = [
            (u(0.03, 0.07), min(u(4200, 6200), top), min(u(4000, 6400), top), u(0.01, 0.06))
            for _ in range(count(8, 18))
        ]
        return _song(sr, notes, ((1, 1.0),))
    if species == "killdeer":  # kill-deer: a shrill rising-falling pair, repeated
        f0 = min(u(2900, 3600), top)
        notes = [(0.09, f0 * 0.9, f0 * 1.1, 0.02), (0.16, f0 * 1.1, f0 * 0.8, u(0.2, 0.4))]
        return _song(sr, notes * count(2, 5), ((1, 1.0), (2, 0.3)))
    if species == "pheasant":  # the cock's crow: a loud, harsh kork-kok, then wing whirr
        f0 = u(1000, 1400)
        y = _song(sr, [(0.2, f0, f0 * 0.9, 0.05), (0.15, f0 * 1.05, f0 * 0.85, 0.1)], harsh[:4])
        whirr = rng.standard_normal(int(0.6 * sr)) * np.sin(
            np.pi * np.linspace(0, 1, int(0.6 * sr))
        )
        whirr *= 0.5 + 0.5 * np.sin(2 * np.pi * u(14, 20) * np.arange(whirr.size) / sr)
        return np.concatenate([y, 0.25 * whirr.astype(_F)])
    if species == "spring_peeper":  # a rising peep, many frogs in chorus
        f0 = min(u(2500, 3100), top)
        return _song(sr, [(u(0.1, 0.16), f0 * 0.88, f0, 0.0)], ((1, 1.0),))
    raise KeyError(species)


#: The species a clip can hold, and when they call (a factor on their rate by time of day).
_DAY = {"dawn": 1.7, "morning": 1.2, "midday": 0.6, "afternoon": 0.75, "dusk": 0.9, "night": 0.06}
_NIGHT = {"dawn": 0.2, "morning": 0.0, "midday": 0.0, "afternoon": 0.0, "dusk": 0.8, "night": 1.5}
SPECIES: dict[str, dict[str, float]] = {
    "wood_thrush": _DAY,
    "woodpecker": {**_DAY, "dusk": 0.2, "night": 0.0},
    "owl": _NIGHT,
    "bobolink": {**_DAY, "dawn": 1.0, "midday": 1.0, "dusk": 0.3},
    "field_sparrow": _DAY,
    "song_sparrow": _DAY,
    "crow": {**_DAY, "night": 0.0},
    "rock_pigeon": {**_DAY, "night": 0.0},
    "house_sparrow": {**_DAY, "night": 0.0},
    "chickadee": _DAY,
    "herring_gull": {**_DAY, "night": 0.2},
    "spring_peeper": _NIGHT,
    "pine_warbler": _DAY,
    "horned_lark": {**_DAY, "night": 0.0},
    "killdeer": {**_DAY, "night": 0.3},
    "pheasant": {**_DAY, "dawn": 2.2, "night": 0.0},
}
#: How loud a species is against the others (a pigeon's coo is soft, a gull's call carries).
_LEVEL = {"rock_pigeon": 0.3, "spring_peeper": 0.6, "owl": 0.7}
#: Which species a habitat holds, and how often each calls where the habitat fills a place (calls
#: a second at the hour's factor 1): woodland a wood thrush, a woodpecker's drumming and a great
#: horned owl after dark; grassland and old fields a bobolink and a field sparrow; farmland a
#: song sparrow and American crows; towns rock pigeons, house sparrows and chickadees; sea
#: coasts herring gulls; fresh water a chorus of spring peepers after dusk (the habitats of the
#: Cornell Lab's Birds of the World accounts). The kinds of field and wood hold their own:
#: conifers a pine warbler's trill; ploughed soil horned larks and killdeer, the birds of bare
#: open ground; young crops killdeer; stubble ring-necked pheasants (their habitats in the same
#: accounts). ``ASSEMBLAGES[h]`` is a list of ``(species, calls a second)``.
ASSEMBLAGES: dict[str, list[tuple[str, float]]] = {
    "forest": [("wood_thrush", 0.9), ("woodpecker", 0.35), ("owl", 0.5)],
    "grass": [("bobolink", 0.35), ("field_sparrow", 0.6)],
    "farm": [("song_sparrow", 0.45), ("crow", 0.4)],
    "urban": [("rock_pigeon", 0.35), ("house_sparrow", 0.5), ("chickadee", 0.25)],
    "shore": [("herring_gull", 0.7)],
    "fresh_water": [("spring_peeper", 6.0)],
    "conifer": [("pine_warbler", 0.6)],
    "ploughed": [("horned_lark", 0.7), ("killdeer", 0.3)],
    "young_crop": [("killdeer", 0.5)],
    "stubble": [("pheasant", 0.35)],
}
#: The kinds of field and wood a place's sound follows beside its land cover (the keys of
#: ``World.heard_cover``'s ``kinds``): those with birds of their own (:data:`ASSEMBLAGES`),
#: and the two crops that sound in the wind, maize's stiff leaves rustling and ripe wheat's
#: ears hissing.
KINDS = ("conifer", "ploughed", "young_crop", "stubble", "ripe_wheat", "maize")


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
        tyre = self.loops["tyre"]
        car_len = int(4.0 * sr)
        self.cars = [
            _car_pass(rng, sr, tyre[k * car_len : (k + 1) * car_len])
            for k in range(length // car_len)
        ][:24]
        self.horns = [_horn(rng, sr, 330, 480, (0.2, 0.7), 0.02) for _ in range(6)]
        self.foghorns = [_horn(rng, sr, 110, 170, (1.2, 2.2), 0.15) for _ in range(4)]
        # each species' songs, a dozen variants (individuals) each
        self.species = {name: [_species_call(rng, sr, name) for _ in range(12)] for name in SPECIES}

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
        self,
        fractions: np.ndarray,
        sea_share: float,
        cond: Conditions,
        rng: np.random.Generator,
        trace: dict[str, float] | None = None,
        near: np.ndarray | None = None,
        kinds: dict[str, float] | None = None,
    ) -> np.ndarray:
        """One clip (float32 in [-1, 1]) for land-cover ``fractions`` under ``cond``.

        :param fractions: the land cover that loud sources (surf, wind, traffic, the murmur of
            a town) carry from (``World.heard_cover``'s ``far``).
        :param near: the land cover that birds, frogs and insects carry from (its ``near``);
            None: ``fractions``.
        :param kinds: the shares heard near of the kinds of field and wood in :data:`KINDS`
            (its ``kinds``); None: none of them (every wood broadleaf, no crop of its own).

        :param trace: if given, filled with what went into the clip, source by source: the
            level of each continuous source (its gain times its random loudness) and the number
            of each kind of event (calls of each species, cars, horns). A sound encoder can at
            best recover these from the clip; ``benchmarks/audio_ceiling.py`` maps them onto the
            anchor to bound what any sound encoder could reach. Draws nothing from ``rng``.
        """

        def note(name: str, value: float) -> None:
            if trace is not None:
                trace[name] = trace.get(name, 0.0) + float(value)

        water, sand, grass, farm, forest, urban, road, rock = (float(x) for x in fractions[:8])
        tod, weather = cond.time_of_day, cond.weather
        sr, n, t = self.sr, self.n, self.t
        y = np.zeros(n, _F)

        def loud() -> float:  # random loudness of a source, about +-4 dB
            return float(np.exp(LOUDNESS_SPREAD * rng.standard_normal()))

        def source(name: str, level: float) -> float:
            note(name, level)
            return level

        # waves: surf in swells, loud on sea coasts with beaches, gentle on lakes
        coast = water > 0.03
        g = (0.55 * np.sqrt(water) + 1.3 * sand) * (0.4 + 0.6 * sea_share) if coast else 0.0
        if g > 0.01:
            period = float(rng.uniform(2.5, 7.0))
            phase = float(rng.uniform(0, 2 * np.pi))
            swell = (0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)).astype(_F) ** 3
            env = 0.22 + 0.78 * swell
            y += (
                source("surf", min(g, 1.3) * loud())
                * env
                * (self._cut("surf", rng) + 0.35 * swell * self._cut("spray", rng))
            )
        # wind, stronger in the open and on mountains, gusty
        g = 0.1 + 0.5 * rock + 0.22 * sand + 0.14 * grass + 0.12 * water + 0.06 * farm
        breeze = _WIND[weather]
        g *= breeze
        y += source("wind", g * loud()) * self._slow(rng, 0.7, 0.5) * self._cut("wind", rng)
        if rock > 0.05:
            level = source("howl", 0.45 * rock * loud())
            y += level * self._slow(rng, 0.5, 0.6) * self._cut("howl", rng)
        # traffic: low rumble, passing cars, crowd murmur in towns, horns
        busy = _TRAFFIC[tod]
        g = min(1.4, 1.1 * urban + 3.5 * road) * busy
        if g > 0.01:
            y += (
                source("rumble", g * loud())
                * self._onset(rng)
                * self._slow(rng, 1.0, 0.25)
                * self._cut("rumble", rng)
            )
            cars = min(
                int(rng.poisson((10.0 * road + 2.5 * urban) * busy * n / sr / 5.0 * 2.0)), 12
            )
            note("cars", cars)
            self._events(y, self.cars, cars, rng, 0.3 * g, 0.9 * g, margin=sr // 2)
        if urban > 0.05:
            g = 0.3 * urban * (0.3 if tod == "night" else 1.0)
            y += source("babble", g * loud()) * self._slow(rng, 0.2, 0.5) * self._cut("babble", rng)
            if rng.random() < 0.35 * urban:
                horns = int(rng.integers(1, 3))
                note("horns", horns)
                self._events(y, self.horns, horns, rng, 0.1, 0.25)
        # birds and frogs: each habitat's own species, as many calls as the habitat's share of
        # the place and the hour allow; one or two individuals of a species sing in one clip
        if near is not None:  # animals heard from nearer than loud sources carry
            water, sand, grass, farm, forest, urban = (float(x) for x in near[:6])
        shore = (0.4 * sand + 0.3 * water * sea_share) if coast else 0.0
        fresh = np.sqrt(water) * (1.0 - sea_share) if coast else 0.0
        kinds = kinds or {}
        conifer = min(float(kinds.get("conifer", 0.0)), forest)
        habitat = {
            "forest": forest - conifer,  # broadleaf woods
            "grass": grass,
            "farm": farm,
            "urban": urban,
            "shore": shore,
            "fresh_water": fresh,
            "conifer": conifer,
            "ploughed": float(kinds.get("ploughed", 0.0)),
            "young_crop": float(kinds.get("young_crop", 0.0)),
            "stubble": float(kinds.get("stubble", 0.0)),
        }
        fauna = {"clear": 1.0, "cloudy": 0.9, "overcast": 0.7, "rain": 0.2, "fog": 0.6}[weather]
        for name, share in habitat.items():
            if share < 0.02:
                continue
            for kind, per_s in ASSEMBLAGES[name]:
                f = fauna if kind != "spring_peeper" else {"rain": 1.3}.get(weather, 1.0)
                rate = per_s * share * SPECIES[kind][tod] * f
                calls = min(int(rng.poisson(rate * n / sr)), 30)
                note(kind, calls)
                if calls:
                    singers = rng.choice(12, size=2, replace=False)
                    bank = [self.species[kind][int(i)] for i in singers]
                    level = _LEVEL.get(kind, 1.0)
                    self._events(y, bank, calls, rng, 0.03 * level, level)
        # tall crops in the wind: maize's leaves rustle in gusts, ripe wheat hisses
        g = 0.45 * float(kinds.get("maize", 0.0)) * breeze
        if g > 0.01:
            y += source("maize", g * loud()) * self._slow(rng, 0.3, 0.8) * self._cut("spray", rng)
        g = 0.3 * float(kinds.get("ripe_wheat", 0.0)) * breeze
        if g > 0.01:
            y += source("wheat", g * loud()) * self._slow(rng, 1.0, 0.4) * self._cut("hiss", rng)
        # insects: buzzing cicadas by day, pulsing crickets at dusk and night
        g = (0.9 * farm + 0.7 * grass + 0.2 * forest) * (0.3 if weather == "rain" else 1.0)
        if g * _INSECTS[tod] > 0.02 and sr >= 12000:
            buzz = self._cut("", rng, self.cicadas[int(rng.integers(0, 3))])
            y += (
                source("cicadas", 0.35 * g * _INSECTS[tod] * loud())
                * self._onset(rng)
                * self._slow(rng, 1.5, 0.4)
                * buzz
            )
        if g * _CRICKETS[tod] > 0.02:
            y += source("crickets", 0.18 * g * _CRICKETS[tod] * loud()) * self._cut(
                "", rng, self.crickets[int(rng.integers(0, 3))]
            )
        # weather
        if weather == "rain":
            g = source("rain", float(rng.uniform(0.35, 0.8)))
            drops = np.zeros(n, _F)
            k = int(rng.poisson(60 * n / sr))
            drops[rng.integers(0, n, size=k)] = rng.uniform(-1, 1, size=k).astype(_F) * 6.0
            drops[1:] -= drops[:-1].copy()
            y += g * (self._cut("hiss", rng) * self._slow(rng, 0.8, 0.2) + drops)
        if weather == "fog" and water > 0.1 and sea_share > 0.5 and rng.random() < 0.5:
            note("foghorns", 1)
            self._events(y, self.foghorns, 1, rng, 0.3, 0.6)
        # room tone and microphone hiss
        y += 0.03 * self._cut("pink", rng) + 0.004 * self._cut("white", rng)

        rms = float(np.sqrt(np.mean(y**2))) + 1e-9
        y *= (10.0 ** (cond.loudness_db / 20.0)) / rms
        peak = float(np.max(np.abs(y)))
        if peak > 0.98:
            y *= 0.98 / peak
        return y


#: How a sound caption names each steady source (``SoundBank.render``'s trace key -> words).
_STEADY = {
    "surf": "waves breaking",
    "wind": "wind",
    "howl": "wind howling",
    "rumble": "traffic rumbling",
    "babble": "people talking",
    "cicadas": "cicadas buzzing",
    "crickets": "crickets chirping",
    "maize": "maize leaves rustling",
    "wheat": "wind in the wheat",
    "rain": "rain falling",
}
#: How it names each kind of event, heard once and more than once.
_EVENTS = {
    "cars": ("a car passing", "cars passing"),
    "horns": ("a car horn", "car horns"),
    "foghorns": ("a foghorn", "foghorns"),
    "wood_thrush": ("a wood thrush singing", "wood thrushes singing"),
    "woodpecker": ("a woodpecker drumming", "woodpeckers drumming"),
    "owl": ("an owl hooting", "owls hooting"),
    "bobolink": ("a bobolink singing", "bobolinks singing"),
    "field_sparrow": ("a field sparrow singing", "field sparrows singing"),
    "song_sparrow": ("a song sparrow singing", "song sparrows singing"),
    "crow": ("a crow cawing", "crows cawing"),
    "rock_pigeon": ("a pigeon cooing", "pigeons cooing"),
    "house_sparrow": ("a house sparrow chirping", "house sparrows chirping"),
    "chickadee": ("a chickadee calling", "chickadees calling"),
    "herring_gull": ("a gull calling", "gulls calling"),
    "spring_peeper": ("frogs peeping", "a chorus of frogs peeping"),
    "pine_warbler": ("a pine warbler trilling", "pine warblers trilling"),
    "horned_lark": ("a horned lark twittering", "horned larks twittering"),
    "killdeer": ("a killdeer calling", "killdeer calling"),
    "pheasant": ("a pheasant crowing", "pheasants crowing"),
}


def describe_sound(trace: dict[str, float]) -> str:
    """A caption of what is heard in a clip, from :meth:`SoundBank.render`'s ``trace``, as
    AudioCaps (Kim et al., NAACL 2019) and Clotho caption field recordings: the sources that
    can be heard, loudest first, with a word for how loud a steady one is and how often an
    event comes ("strong wind, song sparrows singing, a crow cawing, faint cicadas buzzing").

    It says nothing of the place, only of the clip (its hour and weather show only through
    what sings and whether it rains). The pretraining world's ``sounds.lance`` pairs each clip
    with one, to pretrain a sound encoder on sound and words as CLAP is (Elizalde et al.,
    ICASSP 2023; LAION-Audio-630K) before GeoBind aligns it to the anchor.
    """
    parts: list[tuple[float, str]] = []
    for key, words in _STEADY.items():
        level = float(trace.get(key, 0.0))
        if level < 0.02:  # below the room tone: not heard
            continue
        if key == "wind":
            words = "a light wind" if level < 0.12 else "strong wind" if level > 0.4 else words
        elif level < 0.08:
            words = "faint " + words
        elif level > 0.6:
            words = "loud " + words
        parts.append((level, words))
    for key, (once, more) in _EVENTS.items():
        n = int(trace.get(key, 0))
        if n <= 0:
            continue
        if key == "spring_peeper":  # a chorus: dozens of peeps
            words = once if n < 15 else more
        else:
            words = once if n == 1 else more if n < 5 else "many " + more
        # an event stands out about as a steady source of level 0.3, more with every repeat
        parts.append((0.3 + 0.05 * n, words))
    parts.sort(key=lambda p: -p[0])  # stable: ties keep the order above
    return ", ".join(words for _, words in parts) or "silence"


def encode_audio(y: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """16-bit mono FLAC or WAV bytes (deterministic for the same samples)."""
    import soundfile as sf

    buf = io.BytesIO()
    pcm = np.clip(np.rint(y * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(buf, pcm, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()
