"""Typed configurations: a dataclass of defaults, merged with overrides through omegaconf."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from geobind.errors import ConfigError

__all__ = ["make_config", "opt"]

T = TypeVar("T")


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and the help text the command line shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def make_config(cls: type[T], overrides: Any = None, where: str = "config") -> T:
    """An instance of dataclass ``cls`` with ``overrides`` (a mapping, a dataclass or None).

    An unknown key or a value of the wrong type is a :class:`ConfigError` that names ``where``,
    the key, and the valid keys.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, ValidationError

    if isinstance(overrides, cls):
        return overrides
    base = OmegaConf.structured(cls)
    try:
        merged = OmegaConf.merge(base, _as_container(overrides))
    except (ConfigKeyError, ValidationError) as exc:
        raise config_error(exc, where) from None
    return cast(T, OmegaConf.to_object(merged))


def config_error(exc: Exception, where: str) -> ConfigError:
    """An omegaconf error as a :class:`ConfigError` naming the key and the valid keys."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    first = str(getattr(exc, "msg", exc)).splitlines()[0]
    owner = getattr(exc, "object_type", None)
    if type(exc).__name__ == "ConfigKeyError" and dataclasses.is_dataclass(owner):
        valid = ", ".join(f.name for f in dataclasses.fields(owner))
        return ConfigError(f"{where}: unknown key {key!r} ({first}); valid keys: {valid}")
    return ConfigError(f"{where}: key {key!r}: {first}" if key else f"{where}: {first}")


def _as_container(overrides: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    if overrides is None:
        return {}
    if dataclasses.is_dataclass(overrides):
        return OmegaConf.structured(overrides)
    if isinstance(overrides, (Mapping, DictConfig)):
        return overrides
    raise ConfigError(f"expected a mapping of settings, got {type(overrides).__name__}")
