"""The ``geobind`` command line: thin over the library, and quick to start.

Each command group lives in a module of its own that adds its commands to the parser;
:data:`COMMANDS` lists them in the order ``geobind --help`` shows them, so a new command is a
function in its group's module (or a new module) and one entry here. Parts of the library that
pull in torch, numpy or Lance are imported inside the command that needs them, so
``geobind --help`` stays fast.

Every failure a user can cause ends in one line, ``geobind: error: ...``, naming what is at
fault, and the exit code says whether anything was done: 0 done; 1 failed, nothing changed;
2 a wrong command line, nothing done; 3 failed after part of the work was saved (a recipe's
earlier stages, say); 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from geobind import __version__
from geobind.cli import data, evaluate, geo, plugins, search, train
from geobind.data.pairs import lance_reason
from geobind.errors import GeobindError, done_before
from geobind.plugins import PluginError, PluginWarning

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_PARTIAL", "build_parser", "main"]

#: Exit codes: failed with nothing changed; failed after saving part of the work; interrupted.
EXIT_FAILED, EXIT_PARTIAL, EXIT_INTERRUPTED = 1, 3, 130

#: Each adds one command (with its subcommands) to the parser, in ``--help`` order.
COMMANDS = (
    plugins.add_plugins,
    data.add_import,
    data.add_world,
    data.add_data,
    evaluate.add_report,
    train.add_train,
    train.add_recipes,
    train.add_demo,
    search.add_index,
    search.add_search,
    search.add_map,
    geo.add_export,
    evaluate.add_eval,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="geobind",
        description="Bind ground photos, text, audio and plugin modalities into one embedding "
        "space through satellite imagery.",
    )
    parser.add_argument("--version", action="version", version=f"geobind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _plugin_warnings_as_lines() -> None:
    """Print a skipped plugin as one line on stderr, not as a Python warning with source."""
    default = warnings.showwarning

    def show(
        message: Any,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        if issubclass(category, PluginWarning):
            print(f"geobind: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geobind`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    into: str = getattr(args, "pass_options", "")  # the argument that takes what is left over
    if extra and not into:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # a source's own options, or KEY=VALUE overrides given between flags
        setattr(args, into, [*getattr(args, into), *extra])
    _plugin_warnings_as_lines()
    try:
        return int(args.run(args))
    except (GeobindError, PluginError, OSError) as exc:
        done = done_before(exc)
        line = str(exc) if not isinstance(exc, OSError) else os_error_line(exc)
        print(f"geobind: error: {one_line(line)}" + (f" ({done})" if done else ""), file=sys.stderr)
        return EXIT_PARTIAL if done else EXIT_FAILED
    except KeyboardInterrupt as exc:
        done = done_before(exc)
        print("geobind: interrupted" + (f" ({done})" if done else ""), file=sys.stderr)
        return EXIT_INTERRUPTED


def os_error_line(exc: OSError) -> str:
    """An operating-system error in words: a full disk says so, and names the file."""
    where = f": {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
        return (
            f"the disk is full{where or f' ({lance_reason(exc)})'}; nothing half-written was kept: "
            f"free some space and run the command again"
        )
    if exc.strerror:
        return f"{exc.strerror}{where}"
    return f"{lance_reason(exc, exc.filename)}{where}"  # Lance's errors carry no strerror


def one_line(text: str) -> str:
    """A message on one line (a message may quote a library's several)."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())
