"""What the command modules share: the type they add commands to, and flags made from an
options dataclass (how ``geobind import`` and ``geobind world make`` take a source's options)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Sequence
from typing import Any

from geobind.errors import InputError
from geobind.plugins import get_registry

__all__ = ["Subcommands", "options_parser", "parse_query", "run_source"]

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
