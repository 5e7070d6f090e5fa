"""How often real captions of outdoor scenes say when the picture was taken.

    python benchmarks/caption_when.py CAPTIONS [CAPTIONS ...]

Each CAPTIONS is a COCO captions file (``captions_val2014.json``: ``{"annotations": [{"caption":
...}]}``) or a Flickr8k token file (``Flickr8k.token.txt``: ``image#n<TAB>caption`` a line).
Of the captions that name an outdoor scene (a street, a beach, fields, a lake, ...), it prints
the share that name the time of day or the weather, and the share that name daylight or fair
weather only ("during the day", "sunny", "cloudy"), beside the world's own captions
(``geobind.world.caption``). These are the figures the world's caption rates follow.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUTDOOR = re.compile(
    r"\b(street|road|highway|beach|field|fields|meadow|forest|woods|trees|lake|ocean|sea|river|"
    r"mountain|mountains|hill|city|town|village|farm|grass|grassy|countryside|landscape|park)\b"
)
TIME = re.compile(
    r"\b(night|nighttime|dawn|dusk|sunset|sunrise|morning|afternoon|evening|midday|noon|dark|"
    r"daytime|day)\b"
)
WEATHER = re.compile(
    r"\b(sunny|cloudy|clouds|cloud|overcast|rain|rainy|raining|fog|foggy|mist|misty|stormy|"
    r"storm|clear sky|blue sky|grey sky|gray sky|sunlight)\b"
)
DARK_OR_WET = re.compile(
    r"\b(night|nighttime|dawn|dusk|sunset|sunrise|evening|dark|rain|rainy|raining|fog|foggy|"
    r"mist|misty|stormy|storm)\b"
)


def read_captions(path: Path) -> list[str]:
    """Captions of a COCO captions JSON file or a Flickr8k token file, lower-cased."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return [a["caption"].lower() for a in json.loads(text)["annotations"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"caption_when: {path} is not a COCO captions file ({exc})") from None
    lines = [line.split("\t", 1)[1].lower() for line in text.splitlines() if "\t" in line]
    if not lines:
        raise SystemExit(f"caption_when: {path} holds no 'image<TAB>caption' lines")
    return lines


def shares(captions: list[str]) -> tuple[int, float, float]:
    """Outdoor captions, the share naming time or weather, the share naming fair daylight only."""
    outdoor = [c for c in captions if OUTDOOR.search(c)]
    when = [c for c in outdoor if TIME.search(c) or WEATHER.search(c)]
    fair = [c for c in when if not DARK_OR_WET.search(c)]
    n = max(len(outdoor), 1)
    return len(outdoor), len(when) / n, len(fair) / n


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__.splitlines()[2].strip())
    from geobind.world.caption import _SAY_WHEN_FAIR, _SAY_WHEN_SALIENT

    found = []
    for name in argv:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"caption_when: {path} not found")
        found.append((path.name, read_captions(path)))
    header = f"{'captions':40} {'all':>7} {'outdoor':>8} {'time or weather':>16} {'fair':>7}"
    print(header)
    for name, captions in found:
        outdoor, when, fair = shares(captions)
        print(f"{name:40} {len(captions):7d} {outdoor:8d} {when:16.1%} {fair:7.1%}")
    print(
        f"the world's captions: daylight in dry weather {_SAY_WHEN_FAIR:.0%}, "
        f"dawn, dusk, night, rain or fog {_SAY_WHEN_SALIENT:.0%}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
