"""geobind's own contributions, registered through the same hooks as any installed plugin."""

from __future__ import annotations

from typing import Callable

from geobind.hookspecs import hookimpl
from geobind.modality import Modality


@hookimpl
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """The satellite anchor."""
    from geobind.anchor import anchor_modality

    register(anchor_modality())
