"""Wall time of `geobind --help` and `geobind plugins` with the installed plugins.

    python benchmarks/cli_startup.py [--repeat 20]

Each command runs as a fresh process (console script), as a user would start it; the median and
the best of N runs are printed, with the plugins that were loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["plugins"], ["plugins", "--json"]]


def wall_times(argv: list[str], repeat: int) -> list[float]:
    script = os.path.join(os.path.dirname(sys.executable), "geobind")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([script, *argv], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    script = os.path.join(os.path.dirname(sys.executable), "geobind")
    listing = json.loads(
        subprocess.run(
            [script, "plugins", "--json"], check=True, capture_output=True, text=True
        ).stdout
    )
    print("plugins:", ", ".join(p["distribution"] for p in listing["plugins"]))
    print(f"{'command':28s} {'median s':>9s} {'best s':>8s}")
    for argv in COMMANDS:
        times = wall_times(argv, args.repeat)
        print(
            f"{'geobind ' + ' '.join(argv):28s} {statistics.median(times):9.3f} {min(times):8.3f}"
        )


if __name__ == "__main__":
    main()
