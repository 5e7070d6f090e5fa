"""The plugin manager: finds plugins, isolates broken ones and holds what they registered.

Plugins are distributions with an entry point in the group ``geobind``. geobind's own parts
(the satellite anchor, the synthetic world) register through the same hooks. Loading is lazy and
runs once per process; :func:`get_registry` is the way in.

Environment:

- ``GEOBIND_LOAD_PLUGINS``: comma-separated distribution names to load (an empty string loads
  none); unset loads every installed plugin. geobind's built-ins always load.
- ``GEOBIND_STRICT_PLUGINS=1``: a plugin that fails to import or register raises instead of
  being skipped with a warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from geobind import __version__, hookspecs
from geobind.errors import GeobindError
from geobind.modality import Modality
from geobind.sources import DatasetSource

__all__ = [
    "CONTRIBUTIONS",
    "ENTRY_POINT_GROUP",
    "BrokenPlugin",
    "Contribution",
    "PluginError",
    "PluginInfo",
    "PluginWarning",
    "Registry",
    "get_registry",
    "hook_arguments",
    "reset_registry",
]

ENTRY_POINT_GROUP = "geobind"
ALLOW_ENV = "GEOBIND_LOAD_PLUGINS"
STRICT_ENV = "GEOBIND_STRICT_PLUGINS"
BUILTIN = "geobind"
#: geobind's own plugin modules, loaded by name as llm and datasette load their default
#: plugins: the host knows their names, not their code (they import the importers, which use
#: the registry), so the host stays at the bottom of the import graph.
BUILTIN_MODULES = ("geobind.builtins",)
#: The distributions that provide geobind's own modalities, for "install X" hints.
KNOWN_DISTRIBUTIONS = {
    "ground": "geobind-ground",
    "text": "geobind-text",
    "audio": "geobind-audio",
    "location": "geobind-location",
}


class PluginError(GeobindError, RuntimeError):
    """A plugin could not be loaded or registered something invalid."""


class PluginWarning(UserWarning):
    """A broken plugin was skipped."""


@dataclass(frozen=True)
class Contribution:
    """A hook through which plugins register named objects, and where the host keeps them.

    A new hook is its spec in :mod:`geobind.hookspecs` and one entry in :data:`CONTRIBUTIONS`;
    collecting, attribution, duplicate names, removal, :class:`PluginInfo` and
    ``geobind plugins`` follow from the table.

    :param hook: the hook's name (``geobind_register_...``).
    :param kind: what its ``register`` callback accepts; each object has a unique ``name``.
    :param field: where the objects are listed: ``Registry.tables[field]`` and
        ``PluginInfo.registered[field]`` (also the key in ``geobind plugins --json``).
    :param noun: what one object is called in messages.
    :param always_listed: ``geobind plugins`` shows the line even for a plugin with none.
    """

    hook: str
    kind: type
    field: str
    noun: str
    always_listed: bool = False


#: Every ``register`` hook and what it collects.
CONTRIBUTIONS: tuple[Contribution, ...] = (
    Contribution(
        "geobind_register_modalities", Modality, "modalities", "modality", always_listed=True
    ),
    Contribution("geobind_register_datasets", DatasetSource, "datasets", "dataset source"),
)


def hook_arguments(register: Callable[[Any], None]) -> dict[str, Any]:
    """What the host offers every ``register`` hook, by name.

    An implementation is given only the arguments it declares, as pluggy calls hooks, so an
    argument added here (and to the specs) is optional to implement: plugins written before it
    keep working.
    """
    return {"register": register}


@dataclass
class PluginInfo:
    """One loaded plugin and what it contributed."""

    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    #: per :class:`Contribution` field, the names of what this plugin registered
    registered: dict[str, list[str]] = field(default_factory=dict)
    builtin: bool = False

    @property
    def modalities(self) -> list[str]:
        """The modalities this plugin registered."""
        return self.registered.get("modalities", [])

    @property
    def datasets(self) -> list[str]:
        """The dataset sources this plugin registered."""
        return self.registered.get("datasets", [])

    def as_dict(self) -> dict:
        """Plain values, for ``geobind plugins --json``."""
        return {
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            **{name: list(names) for name, names in self.registered.items()},
            "builtin": self.builtin,
        }


@dataclass
class BrokenPlugin:
    """A plugin that was skipped, and why."""

    distribution: str
    version: str
    error: str


def canonical(name: str) -> str:
    """A distribution name in PEP 503 normal form, for comparing names as pip does."""
    return re.sub(r"[-_.]+", "-", name).lower()


def strict_mode() -> bool:
    """Whether broken plugins raise instead of warning (``GEOBIND_STRICT_PLUGINS``)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def allowed_distributions() -> set[str] | None:
    """The allow-list from ``GEOBIND_LOAD_PLUGINS``: None when unset, else canonical names."""
    value = os.environ.get(ALLOW_ENV)
    if value is None:
        return None
    return {canonical(part) for part in value.split(",") if part.strip()}


class Registry:
    """The plugin manager and what was registered through it, one table per contribution.

    :param contributions: the hooks that register objects (default :data:`CONTRIBUTIONS`).
    :param specs: objects holding the hook specifications (default :mod:`geobind.hookspecs`).
    """

    def __init__(
        self,
        contributions: Sequence[Contribution] = CONTRIBUTIONS,
        specs: Sequence[Any] = (hookspecs,),
    ) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        for spec in specs:
            self.pm.add_hookspecs(spec)
        self.contributions = tuple(contributions)
        self.plugins: dict[str, PluginInfo] = {}
        self.broken: list[BrokenPlugin] = []
        #: contribution field -> name -> the registered object
        self.tables: dict[str, dict[str, Any]] = {c.field: {} for c in self.contributions}
        self._owners: dict[tuple[str, str], str] = {}

    @property
    def modalities(self) -> dict[str, Modality]:
        """Every registered modality, by name."""
        return self.tables["modalities"]

    @property
    def datasets(self) -> dict[str, DatasetSource]:
        """Every registered dataset source (generator or importer), by name."""
        return self.tables["datasets"]

    # -- loading -------------------------------------------------------------------------
    def load(self) -> Registry:
        """Register geobind's built-ins, then every allowed installed plugin."""
        for module in BUILTIN_MODULES:
            self.add(importlib.import_module(module), BUILTIN, _version(BUILTIN), builtin=True)
        for dist, version, load in _entry_points():
            self._load_one(dist, version, load)
        return self

    def _load_one(self, dist: str, version: str, load: Callable[[], Any]) -> None:
        allowed = allowed_distributions()
        if allowed is not None and canonical(dist) not in allowed:
            return
        try:
            self.add(load(), dist, version)
        except _DuplicateName:
            raise
        except Exception as exc:  # a plugin may fail in any way; it must not take geobind down
            self._skip(dist, version, exc)

    def _skip(self, dist: str, version: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if strict_mode():
            raise PluginError(f"plugin {dist} {version} is broken: {message}") from exc
        self.broken.append(BrokenPlugin(dist, version, message))
        warnings.warn(
            f"geobind: skipping broken plugin {dist} {version}: {message}",
            PluginWarning,
            stacklevel=3,
        )

    def add(
        self, plugin: object, distribution: str, version: str = "0", builtin: bool = False
    ) -> PluginInfo:
        """Register ``plugin`` (a module or object with hook implementations) under a name.

        Its hook implementations are validated (a misspelt ``geobind_`` hook is an error) and
        called at once; if any step fails nothing it registered is kept.
        """
        if distribution in self.plugins:
            raise PluginError(f"a plugin named {distribution!r} is already registered")
        self.pm.register(plugin, name=distribution)
        try:
            _check_pending(self.pm, distribution)
            info = PluginInfo(
                distribution,
                version,
                builtin=builtin,
                hooks=sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()),
            )
            self._commit(info, self._collect(plugin))
        except BaseException:
            self.pm.unregister(plugin)
            raise
        return info

    def remove(self, distribution: str) -> None:
        """Unregister a plugin and everything it registered."""
        info = self.plugins.pop(distribution)
        self.pm.unregister(name=distribution)
        for c in self.contributions:
            for name in info.registered.get(c.field, []):
                del self.tables[c.field][name], self._owners[(c.field, name)]

    def _collect(self, plugin: object) -> dict[str, list[Any]]:
        """What ``plugin`` registers through each contribution hook, by field."""
        # Each implementation is called on its own rather than through pm.hook so that what a
        # plugin registers is attributed to it, and one plugin's failure stays its own.
        found: dict[str, list[Any]] = {c.field: [] for c in self.contributions}
        for c in self.contributions:
            for impl in getattr(self.pm.hook, c.hook).get_hookimpls():
                if impl.plugin is plugin:
                    offered = hook_arguments(_collector(found[c.field], c.kind))
                    impl.function(**{n: offered[n] for n in impl.argnames if n in offered})
        return found

    def _commit(self, info: PluginInfo, found: dict[str, list[Any]]) -> None:
        """Keep what a plugin registered, unless a name is taken (then keep nothing)."""
        for c in self.contributions:
            names = [item.name for item in found[c.field]]
            for name in names:
                owner = self._owners.get((c.field, name))
                if owner is not None or names.count(name) > 1:
                    raise _DuplicateName(
                        f"{c.noun} {name!r} is registered by both {owner or info.distribution} "
                        f"and {info.distribution}; uninstall one, or choose with {ALLOW_ENV}"
                    )
        for c in self.contributions:
            for item in found[c.field]:
                self.tables[c.field][item.name] = item
                self._owners[(c.field, item.name)] = info.distribution
            info.registered[c.field] = [item.name for item in found[c.field]]
        self.plugins[info.distribution] = info

    # -- lookups -------------------------------------------------------------------------
    def modality(self, name: str) -> Modality:
        """The registered modality ``name``, or an error saying which plugin to install."""
        if name in self.modalities:
            return self.modalities[name]
        dist = KNOWN_DISTRIBUTIONS.get(name)
        hint = (
            f"install it with `pip install {dist}`" if dist else "install a plugin that provides it"
        )
        known = ", ".join(sorted(self.modalities)) or "none"
        raise PluginError(
            f"no installed plugin registers modality {name!r} (registered: {known}); {hint}"
        )

    def dataset_source(self, name: str) -> DatasetSource:
        """The registered generator or importer ``name``."""
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise PluginError(
                f"no installed plugin registers dataset source {name!r} (registered: {known})"
            )
        return self.datasets[name]

    def owner(self, modality: str) -> PluginInfo:
        """The plugin that registered ``modality``."""
        return self.plugins[self._owners[("modalities", modality)]]

    def as_dict(self) -> dict:
        """Plugins, broken plugins and what each registered, for ``geobind plugins --json``."""
        return {
            "plugins": [p.as_dict() for p in self.plugins.values()],
            "broken": [asdict(b) for b in self.broken],
        }


class _DuplicateName(PluginError):
    """Two plugins registered the same name: always an error, never a skipped plugin."""


def _collector(bucket: list, kind: type) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        if not isinstance(item, kind):
            raise TypeError(f"register() takes a {kind.__name__}, got {type(item).__name__}")
        bucket.append(item)

    return register


def _check_pending(pm: pluggy.PluginManager, distribution: str) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {distribution} implements an unknown hook: {exc}") from None


def _entry_points() -> list[tuple[str, str, Callable[[], Any]]]:
    """Installed plugins as (distribution, version, loader), one per distribution."""
    seen: dict[str, tuple[str, str, Callable[[], Any]]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else ep.module
        version = ep.dist.version if ep.dist else "?"
        seen.setdefault(canonical(dist), (dist, version, ep.load))
    return [seen[key] for key in sorted(seen)]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return __version__


_registry: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, loading plugins on first use only."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry().load()
        return _registry


def reset_registry() -> None:
    """Forget the loaded plugins; the next :func:`get_registry` loads them again."""
    global _registry
    with _lock:
        _registry = None
