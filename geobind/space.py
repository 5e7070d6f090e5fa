"""A trained space on disk: a manifest, the anchor, and each modality's encoder.

Layout::

    SPACE/manifest.json          format, anchor, and one entry per modality
    SPACE/<modality>.safetensors that encoder's weights (the ``net`` of its Encoder)
    SPACE/logs/<stage>.jsonl     per-step training metrics
    SPACE/checkpoints/<stage>/   resumable state of an unfinished stage

Each entry records the plugin and version that built the encoder, its config, the sha256 of its
weights, and what it was aligned to (a modality and the sha256 of that modality's weights). A
space is consistent when every recorded partner still has those weights: the anchor is never
silently mixed with encoders aligned to another anchor. Every file is written to a temporary
name and renamed, the manifest last, so a reader sees the old space or the new one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geobind.encoders.weights import (
    atomic_write,
    load_into,
    read_state_dict,
    sha256_hex,
    state_bytes,
)
from geobind.errors import GeobindError, WeightsError
from geobind.plugins import get_registry

__all__ = ["FORMAT", "Entry", "Space", "SpaceError", "load_space"]

FORMAT = 1
MANIFEST = "manifest.json"


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
    """A space directory. Reading it never changes it; :meth:`put` adds one encoder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = self._read_manifest()
        self._encoders: dict[str, Any] = {}

    def _read_manifest(self) -> dict:
        file = self.path / MANIFEST
        if not file.exists():
            return {"format": FORMAT, "anchor": "satellite", "modalities": {}}
        try:
            manifest = json.loads(file.read_text())
        except ValueError as exc:
            raise SpaceError(f"{file}: not valid JSON ({exc})") from None
        if manifest.get("format", 0) > FORMAT:
            raise SpaceError(
                f"{file}: format {manifest['format']} is newer than this geobind "
                f"reads ({FORMAT}); upgrade geobind"
            )
        return manifest

    @property
    def anchor(self) -> str:
        """The name of the anchor modality."""
        return self.manifest["anchor"]

    @property
    def entries(self) -> dict[str, Entry]:
        """Each modality's entry, in the order they were added."""
        return {name: Entry(**e) for name, e in self.manifest["modalities"].items()}

    def has(self, modality: str) -> bool:
        """Whether the space holds an encoder for ``modality``."""
        return modality in self.manifest["modalities"]

    def entry(self, modality: str) -> Entry:
        """The entry of ``modality``, or an error listing what the space holds."""
        if not self.has(modality):
            held = ", ".join(self.manifest["modalities"]) or "nothing yet"
            raise SpaceError(f"space {self.path} has no {modality!r} encoder (it holds: {held})")
        return Entry(**self.manifest["modalities"][modality])

    def weights_path(self, modality: str) -> Path:
        """Where the weights of ``modality`` are stored."""
        return self.path / self.entry(modality).weights

    def verify(self, modality: str) -> Path:
        """The weights file of ``modality``, checked against the sha256 the manifest records."""
        entry = self.entry(modality)
        path = self.path / entry.weights
        if not path.is_file():
            raise WeightsError(f"space {self.path}: weights of {modality!r} missing: {path}")
        digest = sha256_hex(path.read_bytes())
        if digest != entry.sha256:
            raise WeightsError(
                f"space {self.path}: {path.name} has sha256 {digest[:12]}…, the "
                f"manifest records {entry.sha256[:12]}…: the file was changed"
            )
        return path

    def encoder(self, modality: str) -> Any:
        """Build the encoder of ``modality`` and load its verified weights."""
        from geobind.encoders.encoder import build_encoder  # torch: keeps opening a space light

        path = self.verify(modality)
        encoder = build_encoder(modality, self.entry(modality).config)
        load_into(encoder.net, read_state_dict(path), f"{path}")
        return encoder

    def put(
        self,
        encoder: Any,
        stage: str,
        aligned_to: dict | None = None,
        recipe: dict | None = None,
        metrics: dict | None = None,
    ) -> Entry:
        """Store an encoder's weights, then record it in the manifest (atomically)."""
        data = state_bytes(encoder.net)
        info = get_registry().owner(encoder.name)
        entry = Entry(
            modality=encoder.name,
            plugin=info.distribution,
            version=info.version,
            config=asdict(encoder.config),
            weights=f"{encoder.name}.safetensors",
            sha256=sha256_hex(data),
            aligned_to=aligned_to,
            stage=stage,
            recipe=recipe or {},
            metrics=metrics or {},
            created=time.time(),
        )
        atomic_write(self.path / entry.weights, data)
        self.manifest["modalities"][encoder.name] = asdict(entry)
        self.write_manifest()
        return entry

    def write_manifest(self) -> None:
        """Write the manifest atomically."""
        atomic_write(self.path / MANIFEST, json.dumps(self.manifest, indent=2).encode())

    @property
    def modalities(self) -> list[str]:
        """The modalities this space can embed now (their plugins are installed)."""
        registry = get_registry()
        return [name for name in self.manifest["modalities"] if name in registry.modalities]

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
        """Unit embeddings ``[n, dim]`` of file paths, bytes, strings or ready tensors."""
        import torch

        encoder = self._encoders.get(modality) or self._encoders.setdefault(
            modality, self.encoder(modality)
        )
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not inputs:
            raise SpaceError(f"embed({modality!r}): no inputs")
        if all(isinstance(x, torch.Tensor) for x in inputs):
            with torch.no_grad():
                return encoder.eval()(torch.stack(inputs).to(encoder.device))
        return encoder.embed([_raw(x, encoder.modality.storage) for x in inputs], batch_size)

    def check(self) -> None:
        """Every alignment partner must still have the weights it had when aligned to."""
        for name, entry in self.entries.items():
            partner = entry.aligned_to
            if not partner:
                continue
            current = self.manifest["modalities"].get(partner["modality"], {}).get("sha256")
            if current != partner["sha256"]:
                raise SpaceError(
                    f"space {self.path}: {name!r} was aligned to {partner['modality']!r} with "
                    f"weights sha256 {partner['sha256'][:12]}…, but the space holds "
                    f"{(current or 'none')[:12]}…: retrain {name!r} against this anchor"
                )


def _raw(value: Any, storage: str) -> Any:
    """A raw value for a modality: bytes as they are, a path read from disk, text as text."""
    if isinstance(value, (bytes, bytearray, memoryview)) or storage == "string":
        return value
    path = Path(value)
    if not path.is_file():
        raise SpaceError(f"input file not found: {path}")
    return path.read_bytes()


def load_space(path: str | Path) -> Space:
    """Open a trained space: its manifest, verified weights, and consistent alignment.

    Every weights file is checked against its recorded sha256 and every alignment partner
    against the weights it was aligned to; modalities whose plugin is missing are listed in
    ``space.unavailable`` rather than failing the load.
    """
    space = Space(path)
    if not (space.path / MANIFEST).is_file():
        raise SpaceError(f"no space at {space.path} (no {MANIFEST})")
    for name in space.entries:
        space.verify(name)
    space.check()
    return space
