"""Captions: one English sentence per place, from what is there and when it was seen."""

from __future__ import annotations

import numpy as np

from geobind.world.attributes import Conditions
from geobind.world.config import LAND_COVERS

__all__ = ["COVER_WORDS", "caption_covers", "write_caption"]

#: The words that name each land cover, as whole words its captions use: every phrase for a
#: cover holds one, and each is a word some phrase holds. They are the world's class words:
#: zero-shot prompts are built from them (``"a view of fields"``), and a text tower trained on
#: the captions has learned only the words the captions use. A word they never use ("field"
#: where they say "fields") reaches the tower as a token embedding still at its random start,
#: which pulls its class's prompt average somewhere else in every run: with "field", "wood",
#: "tree", "dune", "building", "house" and "cliff" among them, zero-shot land cover from the
#: satellite ranged 61-77% over three seeds of the CLIP stage, and 73-80% without them
#: (BENCHMARKS.md).
COVER_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("water", "sea", "ocean", "bay", "lake"),
    "sand": ("sand", "beach", "dunes"),
    "grassland": ("grass", "grassy", "meadow", "pasture", "grassland"),
    "farmland": ("farm", "fields", "crops", "farmland", "cropland"),
    "forest": ("forest", "woods", "trees", "woodland"),
    "urban": ("city", "town", "buildings", "houses", "neighbourhood", "village", "apartment"),
    "road": ("road", "highway", "street", "streets"),
    "rock": ("rock", "rocks", "rocky", "mountain", "mountains", "cliffs", "ridge"),
}

_SALIENCE = np.array([1.0, 1.6, 0.9, 1.0, 1.0, 1.3, 2.5, 1.2])

_MAIN = {
    "sea": (
        "the sea",
        "open water",
        "calm water",
        "the ocean",
        "a wide bay",
        "the open sea",
        "blue water",
    ),
    "lake": ("a lake", "a calm lake", "a small lake", "still lake water"),
    "sand": ("a sandy beach", "a beach", "a stretch of sand", "sand dunes", "a wide sandy beach"),
    "grassland": (
        "a grassy meadow",
        "open grassland",
        "a green meadow",
        "rolling grassland",
        "a pasture",
        "tall grass",
    ),
    "farmland": (
        "farm fields",
        "farmland",
        "a patchwork of fields",
        "cropland",
        "fields of crops",
        "cultivated fields",
    ),
    "forest": (
        "a dense forest",
        "woodland",
        "a forest",
        "tall trees",
        "thick woods",
        "a stand of trees",
    ),
    "city": (
        "city buildings",
        "a town",
        "a built-up neighbourhood",
        "houses and buildings",
        "apartment blocks",
        "a city",
    ),
    "village": ("a village", "a few houses", "scattered houses", "a small town"),
    "road": ("a road", "a highway", "a paved road", "a country road", "a long straight road"),
    "street": ("a street", "a busy street", "a city street"),
    "rock": (
        "rocky mountains",
        "bare rock",
        "a rocky hillside",
        "mountain cliffs",
        "a rocky ridge",
        "rugged mountains",
    ),
}
_MINOR = {
    "sea": ("the sea", "the water", "the ocean"),
    "lake": ("a lake", "a pond-like lake", "the lake"),
    "sand": ("a beach", "a strip of sand", "sandy dunes"),
    "grassland": ("some grass", "a meadow", "grassy patches"),
    "farmland": ("some fields", "farmland", "crop fields"),
    "forest": ("some trees", "a forest", "woods"),
    "city": ("buildings", "a town", "houses"),
    "village": ("a few houses", "a village", "some houses"),
    "road": ("a road", "a highway", "a winding road"),
    "street": ("a busy street", "streets", "busy streets"),
    "rock": ("rocks", "mountains", "a rocky ridge"),
}
_LINK = ("next to", "by", "near", "beside", "along", "with", "and", "bordering", "close to")
_LINK3 = (", with {} nearby", " and {}", ", {} in the distance", " and some {}")
_PREFIX = (
    "",
    "",
    "",
    "a photo of ",
    "a view of ",
    "a picture of ",
    "a scene of ",
    "a landscape with ",
)
_TIME = {
    "dawn": ("at dawn", "at sunrise", "in the early morning"),
    "morning": ("in the morning", "on a morning"),
    "midday": ("at midday", "at noon", "in the middle of the day"),
    "afternoon": ("in the afternoon", "in the late afternoon"),
    "dusk": ("at dusk", "at sunset", "in the evening"),
    "night": ("at night", "after dark", "in the dark"),
}
_TIME_NOUN = {
    "dawn": "early morning",
    "morning": "morning",
    "midday": "day",
    "afternoon": "afternoon",
    "dusk": "evening",
    "night": "night",
}
_WEATHER = {
    "clear": ("under a clear sky", "on a clear day"),
    "cloudy": ("under a partly cloudy sky", "on a cloudy day", "under scattered clouds"),
    "overcast": ("under an overcast sky", "on a grey day", "under heavy clouds"),
    "rain": ("in the rain", "on a rainy day", "in pouring rain"),
    "fog": ("in thick fog", "on a foggy day", "in the mist"),
}
_WEATHER_ADJ = {
    "clear": ("clear", "sunny"),
    "cloudy": ("cloudy",),
    "overcast": ("grey", "overcast"),
    "rain": ("rainy", "wet"),
    "fog": ("foggy", "misty"),
}

#: How often a caption says when its picture was taken. Captions say what is in a picture and
#: seldom when: of 24,019 COCO captions (4,800 pictures of val2014) those that name an outdoor
#: scene (4,732; a street, a beach, fields, a lake...), 4.5% name the time of day or the
#: weather, and 2.1% daylight or fair weather ("during the day", "sunny", "cloudy"); of
#: Flickr8k's 40,460 (8,706 outdoor) 3.1% and 1.1%. Most of the rest say "at night", "at
#: sunset" or "in the rain", where the light is what the picture shows. So a caption names the
#: hour and weather of daylight in dry weather (nine in ten Street View panoramas) one time in
#: twenty, and those of dawn, dusk, night, rain or fog two times in three, as before. At two in
#: three for every picture (the world before), the ground tower learned the hour and the
#: weather first, and a place's panoramas from two visits found each other at 20%
#: (BENCHMARKS.md). `benchmarks/caption_when.py` counts them.
_SAY_WHEN_FAIR = 0.05
_SAY_WHEN_SALIENT = 0.65
_FAIR_HOURS = ("morning", "midday", "afternoon")
_FAIR_WEATHER = ("clear", "cloudy", "overcast")


def caption_covers(
    fractions: np.ndarray, view: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> list[int]:
    """Indices of the one to three land covers a caption names, most prominent first.

    Prominence mixes the tile's fractions with what the ground view shows, weighted by how
    much each cover catches the eye (a thin road counts more than its area). The tile's
    dominant cover is always named.
    """
    frac = np.asarray(fractions, np.float64)
    mix = frac if view is None else 0.65 * frac + 0.35 * np.asarray(view, np.float64)
    score = mix * _SALIENCE[: len(mix)]
    order = [int(i) for i in np.argsort(-score, kind="stable")]
    top = score[order[0]]
    chosen = [order[0]] + [i for i in order[1:3] if score[i] >= max(0.06, 0.25 * top)]
    if rng is not None and len(chosen) == 3 and rng.random() < 0.35:
        chosen = chosen[:2]
    if rng is not None and len(chosen) == 2 and rng.random() < 0.12:
        chosen = chosen[:1]
    dominant = int(np.argmax(frac))
    if dominant not in chosen:
        chosen.append(dominant)
        chosen.sort(key=lambda i: -score[i])
    return chosen


def _key(i: int, frac: np.ndarray, sea_share: float) -> str:
    name = LAND_COVERS[i]
    if name == "water":
        return "sea" if sea_share >= 0.5 else "lake"
    if name == "urban":
        return "city" if frac[i] >= 0.3 else "village"
    if name == "road":
        return "street" if frac[LAND_COVERS.index("urban")] >= 0.3 else "road"
    return name


def write_caption(
    fractions: np.ndarray,
    view: np.ndarray | None,
    cond: Conditions,
    sea_share: float,
    rng: np.random.Generator,
) -> str:
    """A sentence like 'a sandy beach by calm water on a foggy evening'."""
    frac = np.asarray(fractions, np.float64)
    covers = caption_covers(frac, view, rng)

    def pick(options):
        return options[int(rng.integers(0, len(options)))]

    keys = [_key(i, frac, sea_share) for i in covers]
    text = pick(_PREFIX) + pick(_MAIN[keys[0]])
    if len(keys) >= 2:
        link = "with" if keys[1] == "street" else pick(_LINK)
        text += " " + link + " " + pick(_MINOR[keys[1]])
    if len(keys) >= 3:
        text += pick(_LINK3).format(pick(_MINOR[keys[2]]))
    tod, weather = cond.time_of_day, cond.weather
    fair = tod in _FAIR_HOURS and weather in _FAIR_WEATHER
    say = _SAY_WHEN_FAIR if fair else _SAY_WHEN_SALIENT
    u = rng.random()
    if u >= say:
        pass
    elif u < say * 0.3:
        text += " " + pick(_TIME[tod])
    elif u < say * 0.6:
        if weather == "clear" and tod == "night":
            text += " under the stars"
        else:
            options = _WEATHER[weather]
            if tod in ("dawn", "dusk", "night"):  # not "on a ... day" in the dark
                options = tuple(o for o in options if not o.endswith(" day")) or options
            text += " " + pick(options)
    else:
        adj = pick(_WEATHER_ADJ[weather])
        if adj == "sunny" and tod in ("night", "dusk", "dawn"):
            adj = "clear"
        noun = _TIME_NOUN[tod]
        text += f" on {'an' if adj[0] in 'aeiou' else 'a'} {adj} {noun}"
    return text
