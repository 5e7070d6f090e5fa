"""Resumable stage state: weights as safetensors, the rest as a weights-only torch file.

Each checkpoint is a folder ``step-NNNNNNN`` written under a temporary name and renamed when
complete, so a process killed at any moment leaves either the previous checkpoint or the new
one, never a mix; a failed save (a full disk) removes its temporary folder, and the next save
removes any a killed process left. Resuming restores weights, optimiser, schedule, RNG and
data position, so a resumed stage ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from geobind.encoders.weights import (
    atomic_write,
    fsync_folder,
    is_temporary,
    read_state_dict,
    state_bytes,
    temporary_name,
)

__all__ = ["checkpoint_state", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(
    folder: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    state: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write ``modules`` (as safetensors) and ``state`` for ``step``; keep the newest only."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in filter(is_temporary, folder.iterdir()):
        shutil.rmtree(leftover, ignore_errors=True)
    final = folder / f"step-{step:07d}"
    tmp = temporary_name(final)
    try:
        tmp.mkdir()
        for name, module in modules.items():
            atomic_write(tmp / f"{name}.safetensors", state_bytes(module))
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        buffer = io.BytesIO()  # torch.save straight to a full disk says only "unexpected pos"
        torch.save({**state, "step": step, "rng": rng}, buffer)
        atomic_write(tmp / "state.pt", buffer.getvalue())
        if final.exists():  # the same step saved again: move the old one aside, whole
            os.replace(final, temporary_name(final))
        os.replace(tmp, final)
        fsync_folder(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(folder.glob("step-*"))[:-keep]:
        (old / "state.pt").unlink(missing_ok=True)  # incomplete first: never resumed from
        shutil.rmtree(old, ignore_errors=True)
    for leftover in filter(is_temporary, folder.iterdir()):
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, if any."""
    done = sorted(p for p in folder.glob("step-*") if (p / "state.pt").exists())
    return done[-1] if done else None


def checkpoint_state(path: Path) -> dict[str, Any]:
    """The saved state of a checkpoint (step, recipe, ...), its weights left unread."""
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def load_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load weights into ``modules`` and restore the RNG; return the saved state (``state``:
    :func:`checkpoint_state` of ``path``, when the caller has read it already)."""
    for name, module in modules.items():
        module.load_state_dict(read_state_dict(path / f"{name}.safetensors"))
    state = checkpoint_state(path) if state is None else state
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(_as_tuples(state["rng"]["python"]))
    return state


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples all the way down; serialisation may give lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
