"""Looking at a pair dataset: splits, schema, sample rows, and a picture of rows side by side."""

from __future__ import annotations

import io
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from geobind.data.pairs import open_pairs, read_values
from geobind.encoders.media import encode_png
from geobind.encoders.weights import atomic_write

__all__ = ["describe", "render_grid", "spectrogram_image"]

CELL = 128


def describe(uri: str, rows: int = 3) -> str:
    """Row counts per split, the schema, and the first rows (binary values as sizes)."""
    ds = open_pairs(uri)
    splits = Counter(ds.to_table(columns=["split"]).column("split").to_pylist())
    lines = [
        f"{uri}: {ds.count_rows()} rows, version {ds.version}",
        "splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())),
        "schema:",
    ]
    lines += [f"  {f.name}: {f.type}" for f in ds.schema]
    for i in range(min(rows, ds.count_rows())):
        values = {name: _short(read_values(ds, name, [i])[0]) for name in ds.schema.names}
        lines.append(f"row {i}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:.5f}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
    return repr(value)


def spectrogram_image(data: bytes | bytearray, size: int = CELL) -> Any:
    """A log-power spectrogram of encoded audio as an RGB image (time across, pitch up)."""
    import numpy as np
    import soundfile
    from PIL import Image

    wave, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    n_fft, hop = 512, max(1, len(wave) // (2 * size))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10).T[::-1]
    level = np.clip((power - power.max() + 8) / 8, 0, 1)
    rgb = np.stack([level**0.5, level**1.5, 0.4 + 0.6 * level**3], axis=-1) * 255
    return Image.fromarray(rgb.astype("uint8")).resize((size, size))


def _cell(column: str, value: Any) -> Any:
    from PIL import Image, ImageDraw

    if isinstance(value, (bytes, bytearray)):
        try:
            if column == "audio":
                return spectrogram_image(value)
            return Image.open(io.BytesIO(value)).convert("RGB").resize((CELL, CELL))
        except Exception as exc:  # a bad value is drawn as its error, not a crash
            value = f"undecodable: {exc}"
    cell = Image.new("RGB", (CELL * 2, CELL), "white")
    text = "\n".join(textwrap.wrap(str(value), 30)[:8])
    ImageDraw.Draw(cell).multiline_text((6, 6), text, fill="black")
    return cell


def render_grid(uri: str, out: str | Path, rows: int = 6, seed: int = 0) -> Path:
    """Draw random rows as a grid: one row per place, one cell per modality column."""
    import random

    from PIL import Image, ImageDraw

    ds = open_pairs(uri)
    columns = [
        f.name for f in ds.schema if f.name not in ("id", "lat", "lon", "split", "landcover")
    ]
    picked = sorted(random.Random(seed).sample(range(ds.count_rows()), min(rows, ds.count_rows())))
    table = {c: read_values(ds, c, picked) for c in columns}
    ids = read_values(ds, "id", picked)
    cells = [[_cell(c, table[c][r]) for c in columns] for r in range(len(picked))]
    width = max(sum(c.width for c in row) for row in cells) if cells else CELL
    header = 18
    grid = Image.new("RGB", (width, header + len(cells) * (CELL + header)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((4, 3), "  |  ".join(columns), fill="black")
    for r, row in enumerate(cells):
        y = header + r * (CELL + header)
        draw.text((4, y + 3), ids[r], fill="gray")
        x = 0
        for cell in row:
            grid.paste(cell, (x, y + header))
            x += cell.width
    out = Path(out)
    atomic_write(out, encode_png(grid))
    return out
