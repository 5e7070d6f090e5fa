"""Per-place conditions shared by the ground view, the soundscape and the caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TIMES_OF_DAY", "WEATHERS", "Conditions", "draw_conditions"]

TIMES_OF_DAY: tuple[str, ...] = ("dawn", "morning", "midday", "afternoon", "dusk", "night")
WEATHERS: tuple[str, ...] = ("clear", "cloudy", "overcast", "rain", "fog")
_TIME_P = (0.08, 0.24, 0.22, 0.24, 0.12, 0.1)
_WEATHER_P = (0.4, 0.22, 0.14, 0.14, 0.1)


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


def draw_conditions(rng: np.random.Generator) -> Conditions:
    time_of_day = TIMES_OF_DAY[int(rng.choice(len(TIMES_OF_DAY), p=_TIME_P))]
    weather = WEATHERS[int(rng.choice(len(WEATHERS), p=_WEATHER_P))]
    heading = float(rng.uniform(0.0, 360.0))
    loudness = float(rng.uniform(-30.0, -16.0))
    return Conditions(time_of_day, weather, heading, loudness)
