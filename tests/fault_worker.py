"""Kill a writer by SIGKILL at each of its write points: ``python fault_worker.py KIND ROOT``.

KIND is ``space`` (a commit of new towers into a copy of ROOT/base, see
``write_points.new_towers``) or ``checkpoint`` (a second checkpoint saved beside the one
in a copy of ROOT/base). The worker counts the write points of one write, then for each point
k copies ROOT/base to ROOT/k and forks a child that writes and sends itself SIGKILL at point k.
It prints the number of points and each child's end as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from write_points import commit_new_towers, fault_at, new_towers  # noqa: E402


def save_second_checkpoint(folder: Path) -> None:
    from geobind.train.checkpoint import save_checkpoint

    torch.manual_seed(1)
    save_checkpoint(folder, 2, {"student": torch.nn.Linear(4, 4)}, {"recipe": "r"})


def kill(name: str, path: str | None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(kind: str, root: Path) -> None:
    torch.set_num_threads(1)  # no thread pool to inherit across fork
    if kind == "space":
        towers = new_towers(root / "base")  # once: every copy starts from the same weights

        def write(space: Path) -> None:
            commit_new_towers(space, towers[0])
    else:
        write = save_second_checkpoint
    shutil.copytree(root / "base", root / "count")
    with fault_at(None, root / "count") as calls:
        write(root / "count")
    ends = []
    for point in range(len(calls)):
        target = Path(shutil.copytree(root / "base", root / str(point)))
        pid = os.fork()
        if pid == 0:
            with fault_at(point, target, kill):
                write(target)
            os._exit(0)  # not killed: the point was not reached
        ends.append(os.waitpid(pid, 0)[1])
    killed = [os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in ends]
    print(json.dumps({"points": calls, "killed": killed}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
