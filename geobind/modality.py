"""What a plugin registers for a modality.

A :class:`Modality` is plain data and callables: registering one imports nothing heavy, so
listing plugins stays fast. Networks are built only when :func:`geobind.build_encoder` is called.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

    import torch

__all__ = ["Modality", "Storage"]

#: How a modality's raw values are stored in a pair dataset: encoded file bytes or a string.
Storage = Literal["binary", "string"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Modality:
    """A kind of data that can be bound to the anchor, as a plugin registers it.

    :param name: unique name, lower-case (``"audio"``); also the default dataset column.
    :param config: a dataclass whose fields are the encoder's settings; its defaults are a
        small configuration that trains on a CPU. It must have an ``embed_dim: int`` field.
    :param build_encoder: ``(config, weights) -> torch.nn.Module`` building the network from a
        config and an optional local file of pretrained weights. Its forward takes a batch from
        ``build_preprocess`` and returns ``[batch, config.embed_dim]``; geobind normalises it.
    :param build_preprocess: ``(config, train) -> (raw value -> Tensor)``: decodes one raw
        value (file bytes or a string) and turns it into the encoder's input tensor. Batches are
        stacked with torch's ``default_collate``. It must be picklable for data workers.
    :param check: ``raw value -> None``: a cheap validation that raises
        :class:`geobind.InputError` saying what is wrong with a raw value; importers use it to
        reject bad rows.
    :param storage: ``"binary"`` (encoded file bytes) or ``"string"``: how an importer stores
        the modality's own column.
    :param column: the pair-dataset column holding the raw values (default: ``name``).
    :param recipe: the default stage recipe aligning this modality to the anchor, shipped
        inside the plugin's package: ``"package:path/in/package.yaml"`` (found with
        ``importlib.resources``), or a file path. ``geobind train NAME`` runs it.
    :param features: a zero-argument factory of simple, non-learned features of raw values
        (``fit(values)`` then ``transform(values) -> [n, dim]`` array; see
        :mod:`geobind.encoders.features`), which the floor of every trained pair uses: e.g.
        :class:`geobind.ColourHistogram` for images. ``None``: the modality has no floor.
    :param description: one line for ``geobind plugins``.
    :param columns: the dataset columns this modality reads together, e.g. ``("lat", "lon")``,
        instead of a column of its own; its raw value is then a tuple of those columns' values,
        in this order, and nothing is imported for it.
    :param parse: ``str -> raw value``: turns a query typed on the command line
        (``--query NAME=TEXT``) into a raw value. Default: the text itself for ``"string"``
        storage, the bytes of the file it names for ``"binary"``; a modality of ``columns``
        needs one (``"40.5,-74.0"`` -> ``(40.5, -74.0)``).
    """

    name: str
    config: type
    build_encoder: Callable[[Any, Path | None], torch.nn.Module]
    build_preprocess: Callable[[Any, bool], Callable[[Any], torch.Tensor]]
    check: Callable[[Any], None]
    storage: Storage = "binary"
    column: str = ""
    recipe: str | None = None
    description: str = ""
    features: Callable[[], Any] | None = None
    columns: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"modality name {self.name!r} must match {_NAME.pattern}")
        if self.columns:
            self._check_columns()
        elif not self.column:
            object.__setattr__(self, "column", self.name)
        if self.storage not in ("binary", "string"):
            raise ValueError(f"modality {self.name!r}: storage must be 'binary' or 'string'")
        fields = (
            {f.name for f in dataclasses.fields(self.config)}
            if dataclasses.is_dataclass(self.config)
            else set()
        )
        if "embed_dim" not in fields:
            raise TypeError(
                f"modality {self.name!r}: config must be a dataclass with an "
                f"'embed_dim' field, got {self.config!r}"
            )

    def _check_columns(self) -> None:
        columns = (self.columns,) if isinstance(self.columns, str) else tuple(self.columns)
        if not all(isinstance(c, str) and c for c in columns):
            raise ValueError(f"modality {self.name!r}: columns must be column names")
        if self.column:
            raise ValueError(f"modality {self.name!r}: give column or columns, not both")
        object.__setattr__(self, "columns", columns)

    @property
    def inputs(self) -> str | tuple[str, ...]:
        """What a raw value is read from: the one column's name, or the tuple of ``columns``."""
        return self.columns or self.column

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every dataset column a raw value is read from."""
        return self.columns or (self.column,)
