"""Conditions of a visit: the ground picture's (its caption says them too) and the sound's own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CAPTURES", "TIMES_OF_DAY", "WEATHERS", "Conditions", "draw_conditions"]

TIMES_OF_DAY: tuple[str, ...] = ("dawn", "morning", "midday", "afternoon", "dusk", "night")
WEATHERS: tuple[str, ...] = ("clear", "cloudy", "overcast", "rain", "fog")
#: When each kind of record is made, as (time-of-day, weather) probabilities. ``any``: photos
#: shared online (Flickr) and field recordings (Radio Aporee, where SoundingEarth's sounds come
#: from) are made at any hour and in any weather. ``street_view``: Google Street View, whose
#: panoramas CVUSA collects, drives in daylight and fair weather.
CAPTURES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "any": ((0.08, 0.24, 0.22, 0.24, 0.12, 0.1), (0.4, 0.22, 0.14, 0.14, 0.1)),
    "street_view": ((0.02, 0.3, 0.36, 0.3, 0.02, 0.0), (0.55, 0.3, 0.13, 0.02, 0.0)),
}


@dataclass(frozen=True)
class Conditions:
    """When and in what weather a place was visited, and which way the camera looked."""

    time_of_day: str
    weather: str
    heading_deg: float  # compass-like: 0 = north (up on the map), 90 = east
    loudness_db: float  # overall level of the recording, dB

    def as_dict(self) -> dict:
        return {
            "time_of_day": self.time_of_day,
            "weather": self.weather,
            "heading_deg": round(float(self.heading_deg), 2),
            "loudness_db": round(float(self.loudness_db), 2),
        }


def draw_conditions(rng: np.random.Generator, capture: str = "any") -> Conditions:
    """Conditions of one visit; ``capture`` names who made the record (see :data:`CAPTURES`)."""
    time_p, weather_p = CAPTURES[capture]
    time_of_day = TIMES_OF_DAY[int(rng.choice(len(TIMES_OF_DAY), p=time_p))]
    weather = WEATHERS[int(rng.choice(len(WEATHERS), p=weather_p))]
    heading = float(rng.uniform(0.0, 360.0))
    loudness = float(rng.uniform(-30.0, -16.0))
    return Conditions(time_of_day, weather, heading, loudness)
