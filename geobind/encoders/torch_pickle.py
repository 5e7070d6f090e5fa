"""Torch checkpoints read without running any code they pickle.

``torch.load(weights_only=True)`` refuses a file that pickles anything besides tensors and
plain containers, such as the ``hyper_parameters`` of a Lightning checkpoint (Sat2Cap's and
GeoCLAP's ``.ckpt``: an ``AttributeDict``, from an argparse ``Namespace``). :func:`load_inert`
reads such a file with a restricted unpickler instead: the globals torch's own weights-only
unpickler allows (its tensor rebuild functions, dtypes, ``OrderedDict``...) are used as they
are, and every other global becomes an :class:`Inert` stand-in, a class made on the spot that
only records what it is given. Nothing outside torch is imported, and no pickled callable is
ever called.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

__all__ = ["Inert", "load_inert", "torch_allowed_globals"]


class Inert(dict):
    """What a pickled global that is not torch's becomes: a dict of the state it was given.

    Called or constructed, it keeps its arguments in ``args``; built, its state in ``state``
    (and a dict state's items as its own, so hyper-parameters read as ``stand_in["lr"]``);
    appended to, its items in ``appended``. ``pickled_as`` names what it stands in for.
    """

    pickled_as = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return dict.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args: tuple = args
        self.state: Any = None
        self.appended: list = []

    def __setstate__(self, state: Any) -> None:
        self.state = state
        if isinstance(state, dict):
            self.update(state)

    def append(self, item: Any) -> None:
        """Keep an item a pickled list subclass appends."""
        self.appended.append(item)

    def extend(self, items: Any) -> None:
        """Keep the items a pickled list subclass extends itself with."""
        self.appended.extend(items)

    def __repr__(self) -> str:
        return f"<inert {self.pickled_as} {dict.__repr__(self)}>"


def torch_allowed_globals() -> dict[str, Any]:
    """The globals torch's weights-only unpickler allows, by full name (a torch internal,
    ``torch._weights_only_unpickler._get_allowed_globals``, checked by the tests)."""
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


class _InertUnpickler(pickle.Unpickler):
    """Resolves torch's allowed globals; any other global is a fresh :class:`Inert` class."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = torch_allowed_globals().get(f"{module}.{name}")
        if allowed is not None:
            return allowed
        return type(name, (Inert,), {"pickled_as": f"{module}.{name}", "__module__": __name__})


def _load(file: Any, **kwargs: Any) -> Any:
    return _InertUnpickler(file, **kwargs).load()


#: What ``torch.load`` takes as ``pickle_module``: it subclasses ``Unpickler`` (to add its
#: storage types and tensor loading) and calls ``load`` for the old, non-zip format's header.
INERT_PICKLE = types.ModuleType("geobind_inert_pickle")
INERT_PICKLE.Unpickler = _InertUnpickler  # type: ignore[attr-defined]
INERT_PICKLE.load = _load  # type: ignore[attr-defined]


def load_inert(path: str | Path) -> Any:
    """The contents of a torch file, tensors on the CPU, with every non-torch global inert.

    ``weights_only=False`` is what lets torch use this unpickler; it is the restricted one.
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=INERT_PICKLE)
