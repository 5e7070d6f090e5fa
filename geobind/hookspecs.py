"""The hooks through which a plugin adds to geobind.

Every hook is prefixed ``geobind_`` and contributes through a ``register`` callback rather than
a return value, so the host can validate each contribution, reject duplicate names and record
which distribution gave what. The API only grows: the host passes hook arguments by name and
gives an implementation only those it declares (:func:`geobind.plugins.hook_arguments`), so a
new argument is optional to implement. A new hook is a spec here and one entry in
:data:`geobind.plugins.CONTRIBUTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # keep `geobind --help` free of heavy imports
    from geobind.modality import Modality
    from geobind.sources import DatasetSource

hookspec = pluggy.HookspecMarker("geobind")
hookimpl = pluggy.HookimplMarker("geobind")


@hookspec
def geobind_register_modalities(register: Callable[[Modality], None]) -> None:
    """Register the modalities this plugin provides.

    :param register: call once per :class:`geobind.Modality`; a name already registered by
        another plugin is an error that names both distributions.

    .. versionadded:: 0.1
    """


@hookspec
def geobind_register_datasets(register: Callable[[DatasetSource], None]) -> None:
    """Register dataset generators and importers this plugin provides.

    :param register: call once per :class:`geobind.DatasetSource` (a generator such as the
        synthetic world, or an importer of a real dataset layout); names are unique across plugins.

    .. versionadded:: 0.1
    """
