"""``geobind plugins``: what is installed, what each plugin registered, and what is broken."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from geobind.cli.common import Subcommands
from geobind.plugins import get_registry

__all__ = ["add_plugins", "cmd_plugins"]


def add_plugins(sub: Subcommands) -> None:
    """``geobind plugins [--json]``."""
    plugins = sub.add_parser("plugins", help="list plugins and the modalities they register")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins, what they register, and broken plugins."""
    registry = get_registry()
    if args.json:
        print(json.dumps(registry.as_dict(), indent=2))
        return 0
    for info in registry.plugins.values():
        tag = " (built-in)" if info.builtin else ""
        print(f"{info.distribution} {info.version}{tag}")
        print(f"  {'hooks:':11s} {', '.join(info.hooks) or '-'}")
        for c in registry.contributions:
            names = info.registered.get(c.field, [])
            if names or c.always_listed:
                print(f"  {c.field + ':':11s} {_describe(registry.tables[c.field], names)}")
    for broken in registry.broken:
        print(f"{broken.distribution} {broken.version} (BROKEN, skipped)\n  error: {broken.error}")
    return 0


def _describe(table: dict, names: Sequence[str]) -> str:
    return (
        "; ".join(f"{n} ({table[n].description})" if table[n].description else n for n in names)
        or "-"
    )
