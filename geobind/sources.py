"""What a plugin registers to bring data in: generators and importers of pair datasets."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DatasetSource"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class DatasetSource:
    """A way to make Lance pair datasets: a generator (the synthetic world) or an importer.

    :param name: unique name, used on the command line (``geobind import NAME``).
    :param kind: ``"generator"`` (makes data from nothing) or ``"importer"`` (reads a layout).
    :param options: a dataclass of the source's settings; the command line exposes each field
        as ``--field`` and recipes set them by name.
    :param run: ``options -> result``: writes the dataset(s) and returns a report.
    :param description: one line for ``geobind plugins``.
    """

    name: str
    kind: Literal["generator", "importer"]
    options: type
    run: Callable[[Any], Any]
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dataset source name {self.name!r} must match {_NAME.pattern}")
        if self.kind not in ("generator", "importer"):
            raise ValueError(f"dataset source {self.name!r}: kind must be generator or importer")
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"dataset source {self.name!r}: options must be a dataclass")
