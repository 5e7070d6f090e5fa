"""What the command modules share: the type they add commands to, and flags made from an
options dataclass (how ``geobind import`` and ``geobind world make`` take a source's options)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geobind.errors import InputError
from geobind.plugins import get_registry

__all__ = [
    "GEOJSON",
    "PNG",
    "Subcommands",
    "check_output_file",
    "check_output_folder",
    "options_parser",
    "parse_query",
    "run_source",
]

#: The endings an output file of each kind may have (:func:`check_output_file`).
PNG, GEOJSON = (".png",), (".geojson", ".json")
#: What ``add_subparsers`` returns: each command module adds its commands to one.
Subcommands = argparse._SubParsersAction


def options_parser(prog: str, options: type, description: str) -> argparse.ArgumentParser:
    """A parser whose flags are the fields of an options dataclass (``--field VALUE``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        text = f.metadata.get("help", "")
        if typing.get_origin(kind) is list:
            parser.add_argument(flag, dest=f.name, action="append", default=None, help=text)
        elif kind is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            required = f.default == "" and base is str
            parser.add_argument(
                flag,
                dest=f.name,
                type=base,
                default=None,
                required=required,
                help=text if required or f.default is None else f"{text} (default: {f.default})",
            )
    return parser


def run_source(name: str, argv: Sequence[str], prog: str) -> Any:
    """Run a registered generator or importer with options parsed from ``argv``."""
    source = get_registry().dataset_source(name)
    parser = options_parser(prog, source.options, source.description)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return source.run(source.options(**given))


_QUERY = re.compile(r"^([a-z][a-z0-9_]*)=(.*)$", re.DOTALL)


def parse_query(text: str) -> tuple[str, str]:
    """``MODALITY=VALUE`` as (modality, value), a modality any installed plugin registers;
    text without such a prefix is a text query."""
    match = _QUERY.match(text)
    if not match:
        return "text", text
    name, value = match.groups()
    get_registry().modality(name)  # an unknown name says which are registered
    if not value.strip():
        raise InputError(f"--query {name}=: the value is empty")
    return name, value


def check_output_file(path: str | None, flag: str, kind: str, suffixes: Sequence[str]) -> None:
    """Before any work: ``path`` (when given) must name a file, not a folder, and end in one of
    ``suffixes``, since what is written there is ``kind`` whatever the name says."""
    if path is None:
        return
    if Path(path).is_dir():
        example = Path(path) / f"out{suffixes[0]}"
        raise InputError(f"{flag} {path}: is a folder; name a file in it, e.g. {example}")
    if Path(path).suffix.lower() not in suffixes:
        raise InputError(
            f"{flag} {path}: this writes {kind}; end the file name in {' or '.join(suffixes)}"
        )


def check_output_folder(path: str | None, flag: str) -> None:
    """Before any work: ``path`` (when given) must not be an existing file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise InputError(f"{flag} {path}: is a file; this writes a folder of files there")
