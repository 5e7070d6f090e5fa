"""A trained space on disk: a manifest, the anchor, and each modality's encoder.

Layout::

    SPACE/manifest.json          format, anchor, and one entry per modality
    SPACE/<modality>-<sha256 prefix>.safetensors
                                 that encoder's weights (the ``net`` of its Encoder); a file is
                                 never changed once written: new weights get a new name
    SPACE/logs/<stage>.jsonl     per-step training metrics
    SPACE/checkpoints/<stage>/   resumable state of an unfinished stage

Each entry records the plugin and version that built the encoder, its config, the sha256 of its
weights, and what it was aligned to (a modality and the sha256 of that modality's weights). A
space is consistent when every recorded partner still has those weights: the anchor is never
silently mixed with encoders aligned to another anchor.

Writing is one commit: new weights go to new files, then the manifest is replaced by an atomic
rename (the one commit point), then files no manifest names are collected. A writer killed at
any moment leaves the old space or the new one, both loadable, and its leftovers are collected
by the next write. Writers of one space take turns (a lock file, ``SPACE/.lock``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geobind.encoders.weights import (
    atomic_write,
    is_temporary,
    load_into,
    sha256_hex,
    state_bytes,
)
from geobind.errors import GeobindError, InputError, WeightsError
from geobind.modality import Modality
from geobind.plugins import get_registry

__all__ = [
    "FORMAT",
    "Entry",
    "Space",
    "SpaceError",
    "input_list",
    "last_run",
    "load_space",
    "log_records",
    "raw_value",
]

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
#: How often :func:`load_space` re-reads a space that a writer changed while it was verified.
LOAD_ATTEMPTS = 5
#: How a space names weights files: the modality and the first 16 hex digits of their sha256.
WEIGHTS_NAME = re.compile(r"^[a-z][a-z0-9_]*-[0-9a-f]{16}\.safetensors$")


class SpaceError(GeobindError):
    """A space is missing, inconsistent, or from a newer format."""


@dataclass
class Entry:
    """One modality in a space."""

    modality: str
    plugin: str
    version: str
    config: dict
    weights: str
    sha256: str
    aligned_to: dict | None = None
    stage: str = ""
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: float = 0.0


class Space:
    """A space directory. Reading it never changes it; :meth:`put` adds encoders."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():  # before a stage trains into it
            raise SpaceError(f"{self.path}: is a file; a space is a folder")
        self.manifest = self._read_manifest()
        self._encoders: dict[str, Any] = {}

    def _read_manifest(self) -> dict:
        file = self.path / MANIFEST
        if not file.exists():
            return {"format": FORMAT, "anchor": "satellite", "modalities": {}}
        try:
            manifest = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpaceError(f"{file}: not valid JSON ({exc})") from None
        _check_manifest(manifest, file)
        return manifest

    @property
    def anchor(self) -> str:
        """The name of the anchor modality."""
        return self.manifest["anchor"]

    @property
    def entries(self) -> dict[str, Entry]:
        """Each modality's entry, in the order they were added."""
        return {name: _as_entry(e) for name, e in self.manifest["modalities"].items()}

    def has(self, modality: str) -> bool:
        """Whether the space holds an encoder for ``modality``."""
        return modality in self.manifest["modalities"]

    def entry(self, modality: str) -> Entry:
        """The entry of ``modality``, or an error listing what the space holds."""
        if not self.has(modality):
            held = ", ".join(self.manifest["modalities"]) or "nothing yet"
            raise SpaceError(f"space {self.path} has no {modality!r} encoder (it holds: {held})")
        return _as_entry(self.manifest["modalities"][modality])

    def weights_path(self, modality: str) -> Path:
        """Where the weights of ``modality`` are stored."""
        return self.path / self.entry(modality).weights

    def verify(self, modality: str) -> Path:
        """The weights file of ``modality``, checked against the sha256 the manifest records."""
        return self._verified(modality)[0]

    def _verified(self, modality: str) -> tuple[Path, bytes]:
        """The weights of ``modality``, read once and checked: what loads is what was checked."""
        entry = self.entry(modality)
        path = self.path / entry.weights
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise WeightsError(
                f"space {self.path}: weights of {modality!r} missing: {path}"
            ) from None
        digest = sha256_hex(data)
        if digest != entry.sha256:
            raise WeightsError(
                f"space {self.path}: {path.name} has sha256 {digest[:12]}…, the "
                f"manifest records {entry.sha256[:12]}…: the file was changed"
            )
        return path, data

    def encoder(self, modality: str) -> Any:
        """Build the encoder of ``modality`` and load its verified weights."""
        from safetensors.torch import load  # torch: keeps opening a space light

        from geobind.encoders.encoder import build_encoder

        path, data = self._verified(modality)
        encoder = build_encoder(modality, self.entry(modality).config)
        load_into(encoder.net, load(data), f"{path}")
        return encoder

    def put(
        self,
        encoder: Any,
        stage: str,
        aligned_to: dict | None = None,
        recipe: dict | None = None,
        metrics: dict | None = None,
    ) -> Entry:
        """Store one encoder, aligned to ``aligned_to`` (see :meth:`put_all`)."""
        return self.put_all([(encoder, aligned_to)], stage, recipe, metrics)[0]

    def put_all(
        self,
        encoders: Sequence[tuple[Any, dict | None]],
        stage: str,
        recipe: dict | None = None,
        metrics: dict | None = None,
    ) -> list[Entry]:
        """Store ``(encoder, aligned_to)`` pairs in one commit: all of them, or none.

        Each encoder's weights go to a new file named by its modality and sha256, then the
        manifest is replaced atomically (the commit), then files no manifest names are removed.
        """
        from filelock import FileLock

        self.path.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path / LOCK):
            self.manifest = self._read_manifest()  # another writer may have committed since
            self._collect()  # what a killed writer left behind
            entries = [self._store(enc, stage, to, recipe, metrics) for enc, to in encoders]
            for entry in entries:
                self.manifest["modalities"][entry.modality] = asdict(entry)
            self.write_manifest()
            self._collect()
        self._encoders.clear()
        return entries

    def _store(
        self, encoder: Any, stage: str, aligned_to: dict | None, recipe: Any, metrics: Any
    ) -> Entry:
        """Write one encoder's weights under a new name; the entry that will record them."""
        data = state_bytes(encoder.net)
        digest = sha256_hex(data)
        info = get_registry().owner(encoder.name)
        entry = Entry(
            modality=encoder.name,
            plugin=info.distribution,
            version=info.version,
            config=asdict(encoder.config),
            weights=f"{encoder.name}-{digest[:16]}.safetensors",
            sha256=digest,
            aligned_to=aligned_to,
            stage=stage,
            recipe=recipe or {},
            metrics=metrics or {},
            created=time.time(),
        )
        atomic_write(self.path / entry.weights, data)
        return entry

    def write_manifest(self) -> None:
        """Write the manifest atomically: the commit point of every change to the space."""
        atomic_write(self.path / MANIFEST, json.dumps(self.manifest, indent=2).encode())

    def _collect(self) -> None:
        """Remove temporaries and weights files geobind wrote that the manifest no longer names
        (under the lock); other files are left alone."""
        named = {e["weights"] for e in self.manifest["modalities"].values()}
        legacy = {f"{m}.safetensors" for m in self.manifest["modalities"]}  # before sha names
        for path in self.path.iterdir():
            ours = WEIGHTS_NAME.match(path.name) or path.name in legacy
            if path.is_file() and (is_temporary(path) or (ours and path.name not in named)):
                path.unlink(missing_ok=True)

    @property
    def modalities(self) -> list[str]:
        """The modalities this space can embed now: their plugin is installed and they are
        still aligned to the weights they were trained against (see :meth:`stale`)."""
        registry, stale = get_registry(), self.stale()
        return [
            name
            for name in self.manifest["modalities"]
            if name in registry.modalities and name not in stale
        ]

    @property
    def unavailable(self) -> dict[str, str]:
        """Modalities in the space whose plugin is not installed -> the distribution to install."""
        registry = get_registry()
        return {
            name: e["plugin"]
            for name, e in self.manifest["modalities"].items()
            if name not in registry.modalities
        }

    def embed(self, modality: str, inputs: Any, batch_size: int = 64) -> Any:
        """Unit embeddings ``[n, dim]`` of a list of inputs: raw values (file bytes, text, a
        tuple of column values), file paths, text the modality parses, or ready tensors."""
        import torch

        encoder = self._encoders.get(modality) or self._encoders.setdefault(
            modality, self.encoder(modality)
        )
        inputs = input_list(inputs, encoder.modality)
        if not inputs:
            raise SpaceError(f"embed({modality!r}): no inputs")
        if all(isinstance(x, torch.Tensor) for x in inputs):
            with torch.no_grad():
                z = encoder.eval()(torch.stack(inputs).to(encoder.device))
        else:
            z = encoder.embed([raw_value(x, encoder.modality) for x in inputs], batch_size)
        bad = int((~torch.isfinite(z)).any(dim=1).sum())
        if bad:
            raise SpaceError(
                f"{modality}: the encoder stored in {self.path} gave NaN or infinite embeddings "
                f"for {bad} of {len(z)} inputs; its weights are broken (a training run that "
                f"diverged?): train the {modality} stage again"
            )
        return z

    def stale(self) -> dict[str, str]:
        """Modalities that no longer share the anchor's space -> why.

        Each alignment whose partner still has the weights it was aligned to links two
        modalities; a modality is stale when no chain of such links joins it to the anchor (its
        partner was retrained since, say the anchor itself). Without an anchor in the space yet,
        the stale ones are those whose own partner changed.
        """
        entries = self.entries
        links = {name: self._broken(name, e) == "" for name, e in entries.items()}
        if self.anchor not in entries:
            return {n: self._broken(n, e) for n, e in entries.items() if not links[n]}
        joined, grew = {self.anchor}, True
        while grew:  # links count both ways: the anchor is aligned to ground, text to ground
            grew = False
            for name, entry in entries.items():
                partner = entry.aligned_to["modality"] if links[name] and entry.aligned_to else ""
                if partner and (name in joined) != (partner in joined):
                    joined |= {name, partner}
                    grew = True
        return {
            name: self._broken(name, entry)
            or f"{name!r} is aligned to {entry.aligned_to and entry.aligned_to['modality']!r}, "
            f"which no longer shares the anchor's space: retrain {name!r}"
            for name, entry in entries.items()
            if name not in joined
        }

    def _broken(self, name: str, entry: Entry) -> str:
        """Why the alignment of ``name`` no longer holds, or ``""`` when it does."""
        partner = entry.aligned_to
        if not partner:
            return ""
        other = partner["modality"]
        current = self.manifest["modalities"].get(other, {}).get("sha256")
        if current == partner["sha256"]:
            return ""
        return (
            f"{name!r} was aligned to {other!r} with weights sha256 "
            f"{partner['sha256'][:12]}…, but the space holds {(current or 'none')[:12]}…: "
            f"retrain {name!r} against this anchor"
        )

    def misaligned(self, modality: str) -> str:
        """Why the alignment of ``modality`` no longer holds (its partner was trained again
        since), or ``""`` when it does."""
        return self._broken(modality, self.entry(modality))

    def check(self) -> None:
        """Every alignment partner must still have the weights it had when aligned to."""
        for name, entry in self.entries.items():
            reason = self._broken(name, entry)
            if reason:
                raise SpaceError(f"space {self.path}: {reason}")


def input_list(inputs: Any, modality: Modality) -> list:
    """Inputs as a list: a list or tuple of them, or one input; for a modality of
    ``columns``, one tuple of plain values (``(40.5, -74.0)``) is one input."""
    if isinstance(inputs, tuple) and modality.columns and len(inputs) == len(modality.columns):
        if not any(isinstance(x, (tuple, list, str, bytes)) for x in inputs):
            return [inputs]
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def raw_value(value: Any, modality: Modality) -> Any:
    """What a modality's preprocessing takes, from what a caller gives: text the modality
    parses (:attr:`~geobind.Modality.parse`), a file path (read), or the raw value itself."""
    if isinstance(value, str) and modality.parse is not None:
        return modality.parse(value)
    if modality.columns:
        if isinstance(value, (tuple, list)):
            return tuple(value)
        raise InputError(
            f"{modality.name}: expected a tuple of {', '.join(modality.columns)}, "
            f"got {type(value).__name__}"
        )
    if isinstance(value, (bytes, bytearray, memoryview)) or modality.storage == "string":
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(
            f"{modality.name}: expected file bytes or a file path, got {type(value).__name__}"
        )
    path = Path(value)
    if not path.is_file():
        raise SpaceError(f"input file not found: {path}")
    return path.read_bytes()


def load_space(path: str | Path, allow_stale: bool = False) -> Space:
    """Open a trained space: its manifest, verified weights, and consistent alignment.

    Every weights file is checked against its recorded sha256 and every alignment partner
    against the weights it was aligned to; modalities whose plugin is missing are listed in
    ``space.unavailable`` rather than failing the load. With ``allow_stale``, modalities
    aligned to weights the space no longer holds are left out of ``space.modalities`` (listed
    by ``space.stale()``) instead of failing the load. A space a writer commits to while it
    is read is read again: what loads is the old space or the new one, never a mix.
    """
    for attempt in range(LOAD_ATTEMPTS):
        space = Space(path)
        if not (space.path / MANIFEST).is_file():
            raise SpaceError(f"no space at {space.path} (no {MANIFEST})")
        try:
            for name in space.entries:
                space.verify(name)
        except WeightsError:
            if attempt + 1 < LOAD_ATTEMPTS and Space(path).manifest != space.manifest:
                continue  # a writer committed meanwhile and collected the old files
            raise
        if not allow_stale:
            space.check()
        return space
    raise AssertionError("unreachable")  # the last attempt returns or raises


def log_records(text: str) -> list[dict[str, Any]]:
    """The records of a stage's JSON-lines log; a line cut short by a killed run is skipped."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def last_run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the last run in a stage's log (an older log may hold several runs)."""
    start = 0
    for i in range(1, len(records)):
        if records[i]["step"] < records[i - 1]["step"]:  # the steps began again: a new run
            start = i
    return records[start:]


def _as_entry(raw: dict) -> Entry:
    """An entry from its manifest record; keys a later geobind may add are ignored."""
    known = {f.name for f in dataclasses.fields(Entry)}
    return Entry(**{k: v for k, v in raw.items() if k in known})


def _check_manifest(manifest: Any, file: Path) -> None:
    """A manifest of the shape this geobind writes, or an error saying what is wrong."""
    if not isinstance(manifest, dict):
        raise SpaceError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format")
    if type(version) is not int or version < 1:
        raise SpaceError(f"{file}: 'format' must be a whole number >= 1, got {version!r}")
    if version > FORMAT:
        raise SpaceError(
            f"{file}: format {version} is newer than this geobind reads ({FORMAT}); upgrade geobind"
        )
    if not isinstance(manifest.get("anchor"), str):
        raise SpaceError(f"{file}: 'anchor' must be a modality name")
    modalities = manifest.get("modalities")
    if not isinstance(modalities, dict):
        raise SpaceError(f"{file}: 'modalities' must be an object of modality entries")
    required = [f.name for f in dataclasses.fields(Entry) if f.default is dataclasses.MISSING]
    for name, entry in modalities.items():
        missing = [k for k in required if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise SpaceError(f"{file}: entry {name!r} lacks {', '.join(missing)}")
        if not isinstance(entry["weights"], str) or Path(entry["weights"]).name != entry["weights"]:
            raise SpaceError(f"{file}: entry {name!r}: 'weights' must be a file name in the space")
