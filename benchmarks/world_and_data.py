"""World generation rate, import rate, and random-batch reads from Lance vs a folder of files.

    python benchmarks/world_and_data.py [--places 2000] [--batches 30] [--batch 64]

One run measures, on the same machine state:
1. places/s of `make_world` (2 worker processes) for --places places;
2. rows/s of the `table` importer over the same tiles and sounds written out as files;
3. decoded random batches/s read from the Lance dataset and from the folder of files (PNG tile
   + the world's sound per row, 16-bit WAV by default, decoded and preprocessed the same way),
   and their ratio.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import geobind
from geobind.data import open_pairs, read_values
from geobind.data.importers import TableOptions, import_table
from geobind.data.synthetic import WorldOptions, make_world


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--places", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="geobind-bench-"))

    _, seconds = timed(
        lambda: make_world(WorldOptions(out=str(root / "w"), places=args.places), progress=False)
    )
    print(
        f"world: {args.places} places in {seconds:.1f} s = {args.places / seconds:.0f} places/s "
        f"(2 workers, world build included)"
    )

    ds = open_pairs(root / "w" / "audio.lance")
    n = ds.count_rows()
    files = root / "files"
    files.mkdir()
    lines = ["id,lat,lon,tile,sound"]
    ids, lats, lons = (read_values(ds, c, range(n)) for c in ("id", "lat", "lon"))
    for i, (tile, sound) in enumerate(
        zip(read_values(ds, "satellite", range(n)), read_values(ds, "audio", range(n)))
    ):
        (files / f"{i}.png").write_bytes(tile)
        (files / f"{i}.wav").write_bytes(sound)
        lines.append(f"{ids[i]},{lats[i]},{lons[i]},{i}.png,{i}.wav")
    (files / "table.csv").write_text("\n".join(lines) + "\n")
    report, seconds = timed(
        lambda: import_table(
            TableOptions(
                table=str(files / "table.csv"),
                out=str(root / "imported.lance"),
                columns=["satellite=tile", "audio=sound"],
            )
        )
    )
    print(
        f"import: {report.imported} rows (tile + sound, checked) in {seconds:.1f} s = "
        f"{report.imported / seconds:.0f} rows/s"
    )

    prep_tile = geobind.build_encoder("satellite").preprocess(True)
    prep_sound = geobind.build_encoder("audio").preprocess(True)
    rng = random.Random(0)
    picks = [rng.sample(range(n), args.batch) for _ in range(args.batches)]

    def from_lance():
        for rows in picks:
            [prep_tile(v) for v in read_values(ds, "satellite", rows)]
            [prep_sound(v) for v in read_values(ds, "audio", rows)]

    def from_files():
        for rows in picks:
            [prep_tile((files / f"{i}.png").read_bytes()) for i in rows]
            [prep_sound((files / f"{i}.wav").read_bytes()) for i in rows]

    from_lance(), from_files()  # warm the page cache for both
    _, lance_s = timed(from_lance)
    _, files_s = timed(from_files)

    def rate(seconds: float) -> float:
        return args.batches * args.batch / seconds

    print(
        f"random batches of {args.batch} (tile + sound, decoded): Lance {rate(lance_s):.0f} "
        f"rows/s, files {rate(files_s):.0f} rows/s, ratio Lance/files {files_s / lance_s:.2f}"
    )


if __name__ == "__main__":
    main()
