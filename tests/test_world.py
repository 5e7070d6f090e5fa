"""The synthetic world generator: determinism, geometry, media formats, and that the
modalities carry the land covers."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import geobind.world.world as world_module
from geobind.errors import ConfigError
from geobind.world import (
    COVER_WORDS,
    LAND_COVERS,
    WAVE_BAND_HZ,
    Conditions,
    World,
    WorldConfig,
    generate,
    oracle_recall_at_k,
)

WATER, SAND, URBAN, ROAD = (LAND_COVERS.index(c) for c in ("water", "sand", "urban", "road"))
FOREST = LAND_COVERS.index("forest")


def small(**kw) -> WorldConfig:
    base = dict(seed=2, mosaic_width=768, places=200, clip_seconds=2.0)
    base.update(kw)
    return WorldConfig(**base)


@pytest.fixture(scope="module")
def world() -> World:
    return World(small())


@pytest.fixture(scope="module")
def places(world: World) -> list:
    return [world.place(i) for i in range(40)]


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _band_share(y: np.ndarray, sr: int, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / sr)
    return float(power[(f >= lo) & (f < hi)].sum() / power.sum())


# ---- configuration ---------------------------------------------------------------------


def test_config_defaults_and_validation():
    c = WorldConfig()
    assert (c.seed, c.places, c.tile_size, c.ground_size, c.sample_rate, c.audio_format) == (
        0,
        3000,
        64,
        64,
        16000,
        "flac",
    )
    assert c.clip_seconds <= 5.0 and c.clip_samples == int(c.sample_rate * c.clip_seconds)
    h, w = c.mosaic_shape
    assert w == c.mosaic_width and 0.5 * w < h < w  # the box is wider than tall on the ground
    with pytest.raises(ConfigError, match="audio_format"):
        WorldConfig(audio_format="mp3")
    with pytest.raises(ConfigError, match="mosaic_width"):
        WorldConfig(mosaic_width=128)
    with pytest.raises(ConfigError, match="lat_min"):
        WorldConfig(lat_min=41.0, lat_max=40.0)


def test_land_covers_named():
    for name in ("water", "sand", "grassland", "farmland", "forest", "urban", "road", "rock"):
        assert name in LAND_COVERS
    assert set(COVER_WORDS) == set(LAND_COVERS)


# ---- determinism -------------------------------------------------------------------------


def _fingerprint(p) -> tuple:
    return (
        p.id,
        p.lat,
        p.lon,
        p.satellite,
        p.ground,
        p.audio,
        p.caption,
        p.fractions.tobytes(),
        p.conditions,
    )


def test_same_seed_same_bytes(world: World, places: list, monkeypatch):
    monkeypatch.setattr(world_module, "_last_rasters", None)  # built again, not shared
    again = World(small())
    assert again.rgb is not world.rgb and np.array_equal(again.rgb, world.rgb)
    assert np.array_equal(again.terrain.labels, world.terrain.labels)
    for i in (0, 7, 19):
        assert _fingerprint(again.place(i)) == _fingerprint(places[i])
    # generate() is the same stream, and a place does not depend on what was made before it
    assert [_fingerprint(p) for p in generate(small(), n=3)] == [
        _fingerprint(p) for p in places[:3]
    ]
    assert _fingerprint(World(small()).place(5)) == _fingerprint(places[5])


def test_worlds_of_one_seed_and_mosaic_share_their_rasters_read_only():
    first = World(small())
    grown = World(small(places=300, clip_seconds=1.0))  # more places, other clips
    assert grown.rgb is first.rgb and grown.terrain is first.terrain
    with pytest.raises(ValueError, match="read-only"):
        grown.terrain.labels[0, 0] = 0
    assert World(small(mosaic_width=800)).rgb.shape[1] == 800  # another size: its own
    assert World(small()).rgb is not first.rgb  # only the last world's are kept


def test_different_seed_differs(world: World, places: list):
    other = World(small(seed=3))
    assert not np.array_equal(other.rgb, world.rgb)
    a, b = other.place(0), places[0]
    assert a.satellite != b.satellite and a.ground != b.ground and a.audio != b.audio
    # ad-hoc places are deterministic too
    lat, lon = world.locations[4]
    assert _fingerprint(world.place((lat, lon))) == _fingerprint(World(small()).place((lat, lon)))


# ---- geometry ----------------------------------------------------------------------------


def test_latlon_pixel_roundtrip(world: World):
    c = world.config
    x, y = world.latlon_to_pixel(c.lat_max, c.lon_min)
    assert (x, y) == (0.0, 0.0)
    x, y = world.latlon_to_pixel(c.lat_min, c.lon_max)
    assert (x, y) == (world.width_px, world.height_px)
    lat, lon = world.pixel_to_latlon(123.5, 45.25)
    assert np.allclose(world.latlon_to_pixel(lat, lon), (123.5, 45.25))
    assert world.mosaic_image().size == (world.width_px, world.height_px)


def test_sample_places_spread_and_stable(world: World):
    pts = np.array(world.sample_places(300))
    c = world.config
    assert ((pts[:, 0] > c.lat_min) & (pts[:, 0] < c.lat_max)).all()
    assert ((pts[:, 1] > c.lon_min) & (pts[:, 1] < c.lon_max)).all()
    # every cell of a 4x4 grid over the box holds places
    gy = ((pts[:, 0] - c.lat_min) / (c.lat_max - c.lat_min) * 4).astype(int)
    gx = ((pts[:, 1] - c.lon_min) / (c.lon_max - c.lon_min) * 4).astype(int)
    assert len(set(zip(gy.tolist(), gx.tolist()))) == 16
    assert world.sample_places(20) == [tuple(p) for p in pts[:20].tolist()]  # prefix-stable
    fresh = world.sample_places(50, np.random.default_rng(9))
    assert len(fresh) == 50 and fresh != world.sample_places(50)
    assert len(world.locations) == c.places


def test_fractions_sum_to_one_and_are_smooth(world: World):
    rng = np.random.default_rng(0)
    pts = np.array(world.sample_places(150))
    f = world.fractions(pts[:, 0], pts[:, 1])
    assert f.shape == (150, len(LAND_COVERS)) and f.dtype == np.float32
    assert np.allclose(f.sum(1), 1.0, atol=1e-5) and (f >= 0).all()
    # a tile moved by 8 px (an eighth of its width) is much closer than a random other tile
    x, y = world.latlon_to_pixel(pts[:, 0], pts[:, 1])
    shifted = world.fractions(*world.pixel_to_latlon(x + 8, y - 8))
    near = np.abs(shifted - f).sum(1).mean()
    far = np.abs(f[rng.permutation(len(f))] - f).sum(1).mean()
    assert near < 0.35 * far
    # the landscape holds every cover
    counts = np.bincount(world.terrain.labels.ravel(), minlength=len(LAND_COVERS))
    assert (counts > 0).all()


def test_tiles_are_crops_of_the_mosaic(world: World, places: list):
    T = world.config.tile_size
    p = places[3]
    tile = _png(p.satellite)
    assert tile.shape == (T, T, 3)
    assert np.array_equal(tile, world.tile(p.lat, p.lon))
    x, y = world.latlon_to_pixel(p.lat, p.lon)
    x0, y0 = int(round(x - T / 2)), int(round(y - T / 2))
    assert np.array_equal(tile, world.rgb[y0 : y0 + T, x0 : x0 + T])
    # a neighbour 10 px east and 6 px south shares the overlapping pixels
    q = world.place(world.pixel_to_latlon(x + 10, y + 6))
    other = _png(q.satellite)
    assert np.array_equal(tile[6:, 10:], other[: T - 6, : T - 10])
    assert np.allclose(q.fractions, world.fractions(q.lat, q.lon))


# ---- media formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, view, shape", [("flac", "panorama", (20, 80, 3)), ("wav", "photo", (40, 40, 3))]
)
def test_media_decode_to_configured_sizes(fmt: str, view: str, shape: tuple):
    cfg = small(
        audio_format=fmt,
        tile_size=48,
        ground_size=40,
        sample_rate=8000,
        clip_seconds=1.5,
        ground_view=view,
    )
    p = World(cfg).place(1)
    assert _png(p.satellite).shape == (48, 48, 3)
    assert _png(p.ground).shape == shape
    y, sr = sf.read(io.BytesIO(p.audio), dtype="float32")
    info = sf.info(io.BytesIO(p.audio))
    assert info.format == fmt.upper() and info.channels == 1 and sr == 8000
    assert y.shape == (12000,) and np.abs(y).max() > 0.001 and np.abs(y).max() <= 1.0


def test_place_record(places: list):
    for p in places:
        assert p.id.startswith("w2-") and len(p.caption) > 5
        assert p.fractions.dtype == np.float32 and abs(float(p.fractions.sum()) - 1) < 1e-5
        assert p.dominant == LAND_COVERS[int(np.argmax(p.fractions))]
        assert 0 <= p.conditions.heading_deg < 360
    assert len({p.id for p in places}) == len(places)
    assert {"time_of_day", "weather", "frac_water"} <= set(places[0].attributes)


def test_pictures_and_sounds_are_separate_visits(world: World):
    """A panorama is taken as Street View takes them (daylight, fair weather); the sound is
    recorded on its own visit, at any hour, and the sound's visit is what the audio follows."""
    ps = [world.place(i, modalities=("audio",)) for i in range(150)]
    seen = {p.conditions.time_of_day for p in ps}
    heard = {p.heard.time_of_day for p in ps}
    weathers = [p.conditions.weather for p in ps]
    assert "night" not in seen and "fog" not in weathers and weathers.count("rain") < 10
    assert "night" in heard and len(heard) >= 5
    assert sum(p.heard.time_of_day != p.conditions.time_of_day for p in ps) > 50
    a = ps[0].attributes
    assert a["sound_time_of_day"] == ps[0].heard.time_of_day
    assert a["loudness_db"] == round(ps[0].heard.loudness_db, 2)
    # the recording follows the sound's visit: rendered again under it, the same bytes come out
    p, k = ps[7], 7
    rng = np.random.default_rng([world.config.seed, 0x91AC, k])
    _, sound_rng, _ = rng.spawn(3)
    clip = _replay(world, p, sound_rng)
    y, _ = sf.read(io.BytesIO(p.audio), dtype="float32")
    assert np.abs(y - clip).max() < 2e-4  # 16-bit quantisation


def _replay(world: World, p, sound_rng, trace: dict | None = None) -> np.ndarray:
    """The place's clip rendered again from what the recorder hears there."""
    far, near, sea_share, kinds = world.heard_cover(p.lat, p.lon)
    return world.sound.render(
        far, sea_share, p.heard, sound_rng, trace=trace, near=near, kinds=kinds
    )


def test_a_recorder_hears_its_surroundings_most(world: World):
    """Sound falls off with distance: the land cover heard at a place weighs the recorder's
    surroundings most, birds' (near) more than loud sources' (far), and a point's own cover
    more than the tile's fractions do; it sums to one, as fractions do."""
    T = world.config.tile_size
    gains = []
    for i in range(60):
        p = world.place(i, modalities=())
        far, near, sea, _ = world.heard_cover(p.lat, p.lon)
        assert far.shape == near.shape == p.fractions.shape
        assert np.isclose(far.sum(), 1.0, atol=1e-5) and np.isclose(near.sum(), 1.0, atol=1e-5)
        assert 0.0 <= sea <= 1.0
        x, y = world.latlon_to_pixel(p.lat, p.lon)
        own = int(world.terrain.labels[int(y), int(x)])
        gains.append((p.fractions[own], far[own], near[own]))
    tile, far_own, near_own = np.array(gains).T
    # the cover under the recorder: heard far more than the tile holds it, near more still
    assert np.mean(far_own) > np.mean(tile) + 0.05
    assert np.mean(near_own) > np.mean(far_own) + 0.02 and np.mean(near_own >= far_own) > 0.9
    # on a tile split in two, the recorder hears its own half mostly
    p = world.place(3, modalities=())
    x0, y0 = world._window(p.lat, p.lon)
    edited = copy.copy(world)  # worlds of one seed share their rasters, read-only
    edited.terrain = dataclasses.replace(world.terrain, labels=world.terrain.labels.copy())
    edited.terrain.labels[y0 : y0 + T, x0 : x0 + T] = FOREST
    x, _ = world.latlon_to_pixel(p.lat, p.lon)
    edited.terrain.labels[y0 : y0 + T, int(x) + 2 : x0 + T] = URBAN  # east of the recorder
    far, near, _, _ = edited.heard_cover(p.lat, p.lon)
    assert near[FOREST] > far[FOREST] > 0.5 and far[URBAN] > near[URBAN] > 0.0


def test_a_recorder_hears_which_crop_and_which_wood_around_it(world: World):
    """``kinds`` are shares of what is heard near: conifers a part of the forest, each crop a
    part of the farmland; and a field's crop is what the tile paints it with."""
    from geobind.world.audio import KINDS
    from geobind.world.terrain import FARM

    heard_any = {k: 0.0 for k in KINDS}
    for i in range(80):
        p = world.place(i, modalities=())
        _, near, _, kinds = world.heard_cover(p.lat, p.lon)
        assert set(kinds) == set(KINDS) and all(v >= 0.0 for v in kinds.values())
        assert kinds["conifer"] <= near[FOREST] + 1e-6
        crops = sum(v for k, v in kinds.items() if k != "conifer")
        assert crops <= near[FARM] + 1e-6
        for k, v in kinds.items():
            heard_any[k] = max(heard_any[k], v)
    assert all(v > 0.05 for v in heard_any.values()), heard_any  # each is heard somewhere
    # a tile all of one crop: that crop is all the recorder hears of it
    p = world.place(3, modalities=())
    x0, y0 = world._window(p.lat, p.lon)
    T = world.config.tile_size
    edited = copy.copy(world)
    edited.terrain = dataclasses.replace(
        world.terrain, labels=world.terrain.labels.copy(), aux=world.terrain.aux.copy()
    )
    edited.terrain.labels[y0 : y0 + T, x0 : x0 + T] = FARM
    edited.terrain.aux[y0 : y0 + T, x0 : x0 + T] = 5 + 16  # maize, behind a hedge
    _, near, _, kinds = edited.heard_cover(p.lat, p.lon)
    assert kinds["maize"] == pytest.approx(1.0) and kinds["ploughed"] == 0.0


def test_maize_and_wheat_are_heard_in_the_wind_and_named():
    from geobind.world.audio import SoundBank, describe_sound

    bank = SoundBank(16000, 16000, seed=0)
    farm = np.array([0, 0, 0, 1.0, 0, 0, 0, 0], np.float32)
    levels = {}
    for weather in ("clear", "fog"):
        trace: dict = {}
        cond = Conditions("midday", weather, 0.0, -20.0)
        bank.render(farm, 0.0, cond, np.random.default_rng(1), trace, kinds={"maize": 0.8})
        levels[weather] = trace["maize"]
        assert "wheat" not in trace
    assert levels["clear"] > levels["fog"] > 0  # the wind drops in fog
    assert "maize leaves rustling" in describe_sound({"maize": 0.3, "pine_warbler": 2})
    assert "pine warblers trilling" in describe_sound({"pine_warbler": 2})


def test_a_place_seen_under_given_conditions(world: World):
    plain = world.place(5)
    dark = world.place(5, seen=("night", "fog"))
    assert (dark.conditions.time_of_day, dark.conditions.weather) == ("night", "fog")
    assert dark.satellite == plain.satellite and dark.audio == plain.audio
    assert dark.conditions.heading_deg == plain.conditions.heading_deg
    assert _png(dark.ground).mean() < _png(plain.ground).mean() - 20  # night is darker
    with pytest.raises(ValueError, match="seen="):
        world.place(5, seen=("midnight", "clear"))


# ---- the modalities carry the land covers ---------------------------------------------------


def _words(text: str) -> set[str]:
    return set(text.replace(",", " ").split())


def test_captions_mention_the_dominant_cover(places: list):
    for p in places:
        words = set(COVER_WORDS[p.dominant])
        assert words & _words(p.caption), (p.dominant, p.fractions, p.caption)
    assert len({p.caption for p in places}) > len(places) // 2  # varied wording


def test_captions_seldom_say_when_in_daylight_and_often_in_the_dark():
    # real captions (COCO, Flickr8k) name the hour or weather of an ordinary daylight scene in a
    # few percent of cases and a night or rain scene far more often; the world's captions do
    # the same, and where they say when, they say the picture's own hour or weather
    from geobind.world.caption import _TIME, _TIME_NOUN, _WEATHER, _WEATHER_ADJ, write_caption

    frac = np.zeros(len(LAND_COVERS))
    frac[LAND_COVERS.index("forest")] = 1.0
    rng = np.random.default_rng(0)

    def when(cond: Conditions) -> list[str]:
        adjectives = (*_WEATHER_ADJ[cond.weather], "clear")
        return [
            *_TIME[cond.time_of_day],
            *_WEATHER[cond.weather],
            *(f" {a} {_TIME_NOUN[cond.time_of_day]}" for a in adjectives),
        ]

    def share_naming(cond: Conditions, other: Conditions) -> float:
        named = 0
        for _ in range(2000):
            text = write_caption(frac, None, cond, 0.0, rng)
            assert not any(p in text for p in when(other) if p not in when(cond)), text
            named += any(p in text for p in when(cond)) or text.endswith("under the stars")
        return named / 2000

    midday = Conditions("midday", "cloudy", 0.0, -20.0)
    night = Conditions("night", "rain", 0.0, -20.0)
    assert 0.02 < share_naming(midday, night) < 0.08
    assert 0.55 < share_naming(night, midday) < 0.75


def test_class_words_are_words_the_captions_use():
    # zero-shot prompts are built from the class words, and a text tower trained on the
    # captions knows only the words they use: each class word must be one, as a whole word
    # ("field" is not in "fields" for a tokenizer), and every phrase naming a cover holds one
    from geobind.world import caption

    cover_of = {"sea": "water", "lake": "water", "city": "urban", "village": "urban"}
    cover_of["street"] = "road"
    phrases: dict[str, set[str]] = {c: set() for c in LAND_COVERS}
    for table in (caption._MAIN, caption._MINOR):
        for key, options in table.items():
            phrases[cover_of.get(key, key)].update(options)
    for cover, words in COVER_WORDS.items():
        used = set().union(*(_words(p) for p in phrases[cover]))
        assert set(words) <= used, (cover, set(words) - used)
        for phrase in phrases[cover]:
            assert set(words) & _words(phrase), (cover, phrase)


def test_ground_view_shows_the_local_covers(world: World, places: list):
    # the ground view's covers agree with the tile's more than with a random other tile's
    own = np.mean([np.abs(p.view_fractions - p.fractions).sum() for p in places])
    other = np.mean(
        [
            np.abs(p.view_fractions - q.fractions).sum()
            for p, q in zip(places, places[1:] + places[:1])
        ]
    )
    assert own < 0.8 * other
    # and the pictures differ with the place
    assert len({p.ground for p in places}) == len(places)


def test_a_panorama_has_north_in_its_middle_and_wraps_around(world: World):
    from geobind.world.terrain import FOREST, URBAN, WATER

    labels = world.terrain.labels
    h, w = labels.shape
    # a place in the open with water close to its north and none close to its south
    for y in range(40, h - 40, 3):
        for x in range(40, w - 40, 3):
            here = labels[y - 3 : y + 4, x - 3 : x + 4]
            north, south = (
                labels[y - 12 : y - 4, x - 2 : x + 3],
                labels[y + 4 : y + 20, x - 8 : x + 9],
            )
            if (
                not np.isin(here, (WATER, FOREST, URBAN)).any()
                and (north == WATER).all()
                and not (south == WATER).any()
            ):
                break
        else:
            continue
        break
    else:
        pytest.skip("no north-facing shore in this small world")
    view = world._ground.covers(x + 0.5, y + 0.5)
    rows, cols = view.shape
    assert (rows, cols) == (world.config.ground_size // 2, 2 * world.config.ground_size)
    ground = view[rows // 2 : rows // 2 + rows // 8]  # just below the horizon: further away
    middle, edges = (
        ground[:, cols * 3 // 8 : cols * 5 // 8],
        np.c_[ground[:, : cols // 8], ground[:, -cols // 8 :]],
    )
    assert (middle == WATER).mean() > 0.5 > 0.2 > (edges == WATER).mean()  # north: the middle
    # the first and last columns both face south: a panorama has no seam
    assert (view[:, 0] == view[:, -1]).mean() > 0.9


def _find(world: World, want, n: int = 400) -> list:
    pts = world.sample_places(n)
    f = world.fractions(*np.array(pts).T)
    return [pts[i] for i in np.flatnonzero(want(f))]


def test_beach_sounds_have_more_surf_than_city_sounds(world: World):
    # thirty of each: a place's clip also holds its birds, wind and hour, which vary a lot
    beaches = _find(world, lambda f: (f[:, WATER] > 0.15) & (f[:, SAND] > 0.08))[:30]
    cities = _find(world, lambda f: f[:, URBAN] + f[:, ROAD] > 0.5)[:30]
    assert len(beaches) >= 3 and len(cities) >= 3

    def share(p) -> float:
        y, sr = sf.read(io.BytesIO(world.place(p).audio), dtype="float32")
        return _band_share(y, sr, *WAVE_BAND_HZ)

    assert np.mean([share(p) for p in beaches]) > np.mean([share(p) for p in cities]) + 0.05
    # the mixer itself, under the same conditions
    sound = world.sound
    rng = np.random.default_rng(0)
    cond = Conditions("midday", "clear", 0.0, -20.0)
    beach = np.array([0.5, 0.4, 0.1, 0, 0, 0, 0, 0], np.float32)
    city = np.array([0, 0, 0, 0, 0.05, 0.7, 0.25, 0], np.float32)
    sr = world.config.sample_rate
    b = [_band_share(sound.render(beach, 1.0, cond, rng), sr, *WAVE_BAND_HZ) for _ in range(9)]
    c = [_band_share(sound.render(city, 0.0, cond, rng), sr, *WAVE_BAND_HZ) for _ in range(9)]
    # the typical beach clip has more surf than any city clip (a gull calling close by takes a
    # beach clip's share of the band down on some visits)
    assert np.median(b) > max(c)


def test_rain_and_birds_are_heard(world: World):
    sound, sr, rng = world.sound, world.config.sample_rate, np.random.default_rng(1)
    forest = np.array([0, 0, 0.1, 0, 0.9, 0, 0, 0], np.float32)
    dry = [
        _band_share(
            sound.render(forest, 0.0, Conditions("dawn", "clear", 0, -20), rng), sr, 1800, 8000
        )
        for _ in range(4)
    ]
    night = [
        _band_share(
            sound.render(forest, 0.0, Conditions("night", "clear", 0, -20), rng), sr, 1800, 8000
        )
        for _ in range(4)
    ]
    assert np.mean(dry) > np.mean(night)  # a dawn chorus in the forest, quiet at night
    farm = np.array([0, 0, 0.2, 0.8, 0, 0, 0, 0], np.float32)
    rain = [
        _band_share(sound.render(farm, 0.0, Conditions("dusk", "rain", 0, -20), rng), sr, 900, 4000)
        for _ in range(4)
    ]
    still = [
        _band_share(sound.render(farm, 0.0, Conditions("dusk", "fog", 0, -20), rng), sr, 900, 4000)
        for _ in range(4)
    ]
    assert np.mean(rain) > np.mean(still)


def test_each_habitat_has_its_own_species(world: World):
    """Which birds sing follows the habitat (the assemblages), and when they sing the hour: each
    species' bank is swapped for a pure tone of its own pitch, and the clip's spectrum then says
    which species were mixed in."""
    from geobind.world.audio import ASSEMBLAGES, SPECIES, SoundBank

    sr = 16000
    bank = SoundBank(sr, 2 * sr, seed=0)
    pitch = {name: 300.0 + 250.0 * k for k, name in enumerate(SPECIES)}
    t = np.arange(int(0.5 * sr)) / sr
    bank.species = {
        name: [(np.hanning(len(t)) * np.sin(2 * np.pi * f * t)).astype(np.float32)] * 12
        for name, f in pitch.items()
    }
    for name in bank.loops:  # silence everything but the singers
        bank.loops[name] = np.zeros_like(bank.loops[name])
    bank.cicadas = [np.zeros_like(c) for c in bank.cicadas]
    bank.crickets = [np.zeros_like(c) for c in bank.crickets]
    bank.cars = [np.zeros_like(c) for c in bank.cars]

    def heard(fractions, sea_share, tod, kinds=None) -> set:
        cond, rng = Conditions(tod, "clear", 0.0, -20.0), np.random.default_rng(0)
        power = sum(
            np.abs(np.fft.rfft(bank.render(fractions, sea_share, cond, rng, kinds=kinds))) ** 2
            for _ in range(6)
        )
        freqs = np.fft.rfftfreq(2 * sr, 1 / sr)
        level = {n: power[np.abs(freqs - f) < 20].sum() for n, f in pitch.items()}
        top = max(level.values())
        return {n for n, v in level.items() if v > 1e-2 * top}

    forest = np.array([0, 0, 0, 0, 1.0, 0, 0, 0], np.float32)
    town = np.array([0, 0, 0, 0, 0, 1.0, 0, 0], np.float32)
    lake = np.array([0.5, 0, 0.5, 0, 0, 0, 0, 0], np.float32)
    day = {s for s, _ in ASSEMBLAGES["forest"]} - {"owl"}
    assert heard(forest, 0.0, "morning") == day
    night = heard(forest, 0.0, "night")  # the owl; a songbird now and then, no woodpecker
    assert "owl" in night and "woodpecker" not in night and night <= day | {"owl"}
    assert heard(town, 0.0, "morning") == {s for s, _ in ASSEMBLAGES["urban"]}
    # a lake's margin: meadow birds by day, peepers after dark; a sea coast: gulls, no peepers
    meadow = {s for s, _ in ASSEMBLAGES["grass"]}
    dark = heard(lake, 0.0, "night")
    assert "spring_peeper" in dark and dark <= meadow | {"spring_peeper"}
    assert heard(lake, 0.0, "morning") == meadow
    assert "spring_peeper" not in heard(lake, 1.0, "night")
    assert "herring_gull" in heard(
        np.array([0.5, 0.5, 0, 0, 0, 0, 0, 0], np.float32), 1.0, "morning"
    )
    # the kinds of wood and field: conifers hold pine warblers instead of a broadleaf wood's
    # birds; ploughed soil larks and killdeer, stubble pheasants, beside every field's birds
    pines = {s for s, _ in ASSEMBLAGES["conifer"]}
    assert heard(forest, 0.0, "morning", {"conifer": 1.0}) == pines
    assert heard(forest, 0.0, "morning", {"conifer": 0.5}) == day | pines
    farm = np.array([0, 0, 0, 1.0, 0, 0, 0, 0], np.float32)
    fields = {s for s, _ in ASSEMBLAGES["farm"]}
    for kind in ("ploughed", "young_crop", "stubble"):
        kinds = {kind: 1.0, "maize": 1.0}  # maize's rustle is no bird
        assert heard(farm, 0.0, "morning", kinds) == fields | {s for s, _ in ASSEMBLAGES[kind]}
    assert heard(farm, 0.0, "morning") == fields  # no kinds heard: the birds of any field


# ---- how hard retrieval is -----------------------------------------------------------------


def test_oracle_recall_between_chance_and_one(world: World):
    pts = world.sample_places(1000)
    f = world.fractions(*np.array(pts).T)
    chance = 10 / 1000
    exact = oracle_recall_at_k(f, 10)
    coarse = oracle_recall_at_k(f, 10, resolution=0.25)
    assert chance < coarse < exact < 1.0
    assert oracle_recall_at_k(f, 10, metric="cosine") > chance
    # all places alike: nothing but chance; all different: perfect
    same = np.tile(np.eye(len(LAND_COVERS))[0], (500, 1))
    assert oracle_recall_at_k(same, 10) == pytest.approx(10 / 500, abs=0.01)
    distinct = np.random.default_rng(0).dirichlet(np.ones(len(LAND_COVERS)), size=300)
    assert oracle_recall_at_k(distinct, 10) == 1.0
    with pytest.raises(ValueError):
        oracle_recall_at_k(f, 10, metric="dot")


def test_a_clip_says_what_went_into_it(world: World):
    """``render(trace=...)`` names each source's level and each event's count, and changes
    nothing about the clip (the audio ceiling replays stored clips through it)."""
    from geobind.world.audio import ASSEMBLAGES, SPECIES

    sound, cond = world.sound, Conditions("midday", "clear", 0.0, -20.0)
    beach = np.array([0.5, 0.4, 0.1, 0, 0, 0, 0, 0], np.float32)
    forest = np.array([0, 0, 0.1, 0, 0.9, 0, 0, 0], np.float32)
    city = np.array([0, 0, 0, 0, 0.05, 0.7, 0.25, 0], np.float32)
    for fractions in (beach, forest, city):
        trace: dict[str, float] = {}
        traced = sound.render(fractions, 1.0, cond, np.random.default_rng(3), trace=trace)
        plain = sound.render(fractions, 1.0, cond, np.random.default_rng(3))
        assert np.array_equal(traced, plain)
        assert trace["wind"] > 0 and all(v >= 0 for v in trace.values())
    traces = []
    for fractions, sea, tod in (
        (beach, 1.0, "midday"),
        (forest, 0.0, "night"),
        (city, 0.0, "midday"),
    ):
        traces.append({})
        sound.render(
            fractions,
            sea,
            Conditions(tod, "clear", 0.0, -20.0),
            np.random.default_rng(4),
            traces[-1],
        )
    at_beach, forest_night, in_town = traces
    assert at_beach["surf"] > 0.3 and "rumble" not in at_beach
    assert in_town["rumble"] > 0.3 and in_town["cars"] >= 1 and "surf" not in in_town
    # only the forest's and the grassland's own species are counted there, and no cicadas at night
    birds = {k for k in forest_night if k in SPECIES}
    assert birds and birds <= {s for h in ("forest", "grass") for s, _ in ASSEMBLAGES[h]}
    assert "cicadas" not in forest_night and forest_night["crickets"] > 0


def test_a_sound_caption_names_what_is_heard_loudest_first():
    from geobind.world.audio import describe_sound

    said = describe_sound(
        {"surf": 0.9, "wind": 0.5, "rumble": 0.05, "herring_gull": 2, "crow": 0, "cars": 7}
    )
    assert said == (
        "loud waves breaking, many cars passing, strong wind, gulls calling, faint traffic rumbling"
    )
    assert (
        describe_sound({"wind": 0.1, "owl": 1, "crickets": 0.01}) == "an owl hooting, a light wind"
    )
    assert describe_sound({"spring_peeper": 20}) == "a chorus of frogs peeping"
    assert describe_sound({}) == "silence"


def test_a_place_says_what_its_clip_holds(world: World, places: list):
    """``Place.sources`` is the trace of the render of the very clip stored, and its
    ``sound_caption`` describes them; only a place whose sound was rendered has either."""
    from geobind.world.audio import describe_sound

    p = places[5]
    again = world.place(5, modalities=("audio",))
    assert again.audio == p.audio and again.sound_caption == p.sound_caption != ""
    assert p.sound_caption == describe_sound(p.sources) and p.sources["wind"] > 0
    silent = world.place(5, modalities=("ground",))
    assert silent.sound_caption == "" and silent.sources == {}
    # replayed by hand from the place's own sound stream: the same clip, the same trace
    _, sound_rng, _ = np.random.default_rng([world.config.seed, 0x91AC, 5]).spawn(3)
    trace: dict[str, float] = {}
    clip = _replay(world, p, sound_rng, trace)
    y, _ = sf.read(io.BytesIO(p.audio), dtype="float32")
    assert np.abs(y - clip).max() < 2e-4 and trace == p.sources  # 16-bit quantisation


def test_caption_when_counts_what_real_captions_say(tmp_path, capsys):
    # benchmarks/caption_when.py measured the rates the world's captions follow; on captions
    # whose answer is known it counts only outdoor scenes, and tells dark or wet from fair
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "caption_when", Path(__file__).parents[1] / "benchmarks" / "caption_when.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    said = [
        "A city street at night with stop lights.",  # outdoor, dark
        "Children play on a sunny beach.",  # outdoor, fair
        "Cows grazing in a green field.",  # outdoor, says nothing of when
        "A dirt road through the woods.",  # outdoor, says nothing of when
        "A cat asleep on a sofa at night.",  # not outdoor
    ]
    coco = tmp_path / "captions_val2014.json"
    coco.write_text(json.dumps({"annotations": [{"caption": c} for c in said]}))
    flickr = tmp_path / "Flickr8k.token.txt"
    flickr.write_text("".join(f"img{i}.jpg#0\t{c}\n" for i, c in enumerate(said)))
    for path in (coco, flickr):
        assert bench.shares(bench.read_captions(path)) == (4, 0.5, 0.25)
    bench.main([str(coco)])
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row == ["captions_val2014.json", "5", "4", "50.0%", "25.0%"]
    bad = tmp_path / "other.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="other.json is not a COCO captions file"):
        bench.main([str(bad)])
    with pytest.raises(SystemExit, match="missing.txt not found"):
        bench.main([str(tmp_path / "missing.txt")])
