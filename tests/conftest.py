"""Make helper modules beside the tests importable (pytest runs in importlib mode), and share
the cores between pytest-xdist's workers (``make test`` runs one per core)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    # Each worker's torch (and every process a test starts, which inherits the variable) would
    # otherwise start a thread per core, and two workers' thread pools fighting over the same
    # cores run slower than one.
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("MKL_NUM_THREADS", _threads)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

#: The core's test files that take longest, longest first (`--durations`, one process). pytest
#: runs them first; `make test` (`--no-loadscope-reorder`) hands them to its workers first, so
#: that no worker is left with one of them at the end while the others wait. Left to itself,
#: pytest-xdist hands out the files with the most tests first.
LONGEST_FIRST = (
    "test_train.py",
    "test_wheels.py",
    "test_data.py",
    "test_pretrained.py",
    "test_paper.py",
    "test_faults.py",
    "test_geodata.py",
)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def order(item) -> int:
        path = Path(item.path)
        return rank.get(path.name, len(rank)) if path.parent == here else len(rank)

    items.sort(key=order)  # stable: each file's tests keep their order
