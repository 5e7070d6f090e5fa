"""The shape of the house, read from the source with ``ast``.

- geobind's modules import each other without cycles, counting imports inside functions;
- a geobind module is imported inside a function only when it is heavy at import (it pulls in
  torch, numpy, Lance...) and the importing module is light (the command line, the plugin
  host): every other import of geobind's own modules sits at the top of the file;
- plugins (``plugins/*/``) use geobind's public API only: the names ``geobind`` exports and the
  modules in ``geobind.PUBLIC_MODULES``, exactly as a third party would;
- a module's private names are imported only by modules of the same package;
- the README's Layout section lists every part of geobind, in an order imports never climb;
- open_clip is imported by its adapter, ``geobind.encoders.openclip``, and nowhere else.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import geobind

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "geobind"
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/*") if (p / "__init__.py").is_file())

#: Third-party packages that make a module slow to import; only these are imported lazily.
HEAVY = {
    "torch",
    "torchvision",
    "torchmetrics",
    "open_clip",
    "laion_clap",
    "lance",
    "pyarrow",
    "numpy",
    "scipy",
    "PIL",
    "pandas",
    "safetensors",
    "soundfile",
    "soxr",
    "omegaconf",
    "tqdm",
    "transformers",
    "rasterio",
    "pyproj",
    "shapely",
}


@dataclass(frozen=True)
class Import:
    """One import statement: the module it names, where, and whether at the top level."""

    module: str
    names: tuple[str, ...]
    top: bool
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str) -> list[Import]:
    """Every import of ``path`` but those under ``if TYPE_CHECKING:`` (types only)."""
    found: list[Import] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, (), top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - child.level + 1]
                        + ([base] if base else [])
                    )
                found.append(Import(base, tuple(a.name for a in child.names), top, child.lineno))
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            visit(child, inner)

    visit(ast.parse(path.read_text()), True)
    return found


def geobind_targets(imp: Import, known: dict[str, Path]) -> list[str]:
    """The geobind modules an import loads (``from geobind.x import y`` may name module y)."""
    if imp.module.split(".")[0] != "geobind":
        return []
    subs = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in known]
    return subs or [imp.module]


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, list[Import]]]:
    """module -> geobind module it imports -> the import statements."""
    known = modules()
    out: dict[str, dict[str, list[Import]]] = {}
    for name, path in known.items():
        edges: dict[str, list[Import]] = {}
        for imp in imports(path, name):
            for target in geobind_targets(imp, known):
                if target != name:
                    edges.setdefault(target, []).append(imp)
        out[name] = edges
    return out


def heavy_modules(graph: dict[str, dict[str, list[Import]]]) -> set[str]:
    """geobind modules that import a heavy package at their top level, directly or through
    geobind modules they import at the top level."""
    known = modules()
    direct = {
        name
        for name, path in known.items()
        if any(i.top and i.module.split(".")[0] in HEAVY for i in imports(path, name))
    }
    heavy, grew = set(direct), True
    while grew:
        grew = False
        for name, edges in graph.items():
            if name not in heavy and any(
                t in heavy and any(i.top for i in imps) for t, imps in edges.items()
            ):
                heavy.add(name)
                grew = True
    return heavy


def cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles_among_geobind_modules(graph):
    found = cycles(graph)
    detail = [
        "  ".join(f"{a} -> {b} (line {graph[a][b][0].line})" for a in c for b in c if b in graph[a])
        for c in found
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_geobind_modules_are_imported_inside_functions_only_to_keep_a_light_one_light(graph):
    heavy = heavy_modules(graph)
    lazy = [
        f"{source}:{imp.line} imports {target} inside a function, but "
        + (f"{target} is light" if target not in heavy else f"{source} is heavy anyway")
        + ": import it at the top of the file"
        for source, edges in graph.items()
        for target, imps in edges.items()
        for imp in imps
        if not imp.top and target != "geobind" and (target not in heavy or source in heavy)
    ]
    assert not lazy, "\n".join(lazy)


def test_the_command_line_and_the_plugin_host_are_light(graph):
    heavy = heavy_modules(graph)
    must_be_light = {
        "geobind",
        "geobind.cli",
        "geobind.plugins",
        "geobind.builtins",
        "geobind.hookspecs",
        "geobind.modality",
        "geobind.sources",
        "geobind.testing",
        "geobind.encoders.openclip",
    }
    must_be_light |= {m for m in graph if m.startswith("geobind.cli.")}
    assert not must_be_light & heavy, sorted(must_be_light & heavy)


def test_private_names_are_imported_only_within_their_own_package():
    leaks = [
        f"{name}:{imp.line} imports {', '.join(n for n in imp.names if n.startswith('_'))} "
        f"from {imp.module}"
        for name, path in modules().items()
        for imp in imports(path, name)
        if imp.module.startswith("geobind.")
        and any(n.startswith("_") and not n.startswith("__") for n in imp.names)
        and imp.module.rpartition(".")[0] != name.rpartition(".")[0]
    ]
    assert not leaks, "\n".join(leaks)


def readme_layout() -> list[str]:
    """The parts of geobind the README's Layout section lists, in its order."""
    section = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1].split("\n## ")[0]
    return re.findall(r"^    (geobind/\S+)", section, flags=re.MULTILINE)


def part_of(module: str) -> str:
    """``geobind.eval.report`` -> ``geobind/eval/``; ``geobind.space`` -> ``geobind/space.py``."""
    parts = module.split(".")
    return (
        f"{parts[0]}/{parts[1]}/" if (PACKAGE / parts[1]).is_dir() else f"{parts[0]}/{parts[1]}.py"
    )


def test_the_readme_layout_lists_every_part_in_an_order_imports_never_climb(graph):
    listed = readme_layout()
    parts = {part_of(m) for m in graph if m != "geobind"}
    assert len(listed) == len(set(listed)) and set(listed) == parts, (
        f"README lists {sorted(set(listed) - parts)} that do not exist and misses "
        f"{sorted(parts - set(listed))}"
    )
    rank = {part: i for i, part in enumerate(listed)}
    climbing = [
        f"{source} imports {target}, listed below it"
        for source, edges in graph.items()
        for target in edges
        if "geobind" not in (source, target) and rank[part_of(target)] > rank[part_of(source)]
    ]
    assert not climbing, "\n".join(climbing)


def public_api_violations(path: Path) -> list[str]:
    """What ``path`` uses of geobind beyond its public API."""
    public_names = set(geobind.__all__)
    public_modules = set(geobind.PUBLIC_MODULES)
    tree = ast.parse(path.read_text())
    problems = []
    for imp in imports(path, path.stem):
        if imp.module == "geobind":
            problems += [
                f"from geobind import {n}"
                for n in imp.names
                if n not in public_names and f"geobind.{n}" not in public_modules
            ]
        elif imp.module.startswith("geobind.") and imp.module not in public_modules:
            problems.append(f"import of {imp.module}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "geobind"
            and node.attr not in public_names
        ):
            problems.append(f"geobind.{node.attr}")
    return [f"{path.relative_to(ROOT)}: {p}" for p in problems]


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugins_use_only_the_public_api(plugin):
    problems = [
        p for path in sorted(plugin.parent.rglob("*.py")) for p in public_api_violations(path)
    ]
    assert not problems, "\n".join(problems)


def test_the_public_api_resolves():
    for name in geobind.__all__:
        assert getattr(geobind, name) is not None, name
    for module in geobind.PUBLIC_MODULES:
        assert __import__(module, fromlist=["_"]).__doc__, module


def test_open_clip_is_imported_by_its_adapter_only():
    users = sorted(
        f"{name}:{imp.line}"
        for name, path in modules().items()
        for imp in imports(path, name)
        if imp.module.split(".")[0] == "open_clip"
    )
    users += sorted(
        f"{path.relative_to(ROOT)}:{imp.line}"
        for plugin in PLUGINS
        for path in plugin.rglob("*.py")
        for imp in imports(path, path.stem)
        if imp.module.split(".")[0] == "open_clip"
    )
    assert users and all(u.startswith("geobind.encoders.openclip:") for u in users), users
