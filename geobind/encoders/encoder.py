"""A modality's network, wrapped with what every encoder owes the space.

The plugin builds a plain ``torch.nn.Module``; :class:`Encoder` checks the shape of what it
returns, L2-normalises it, and keeps the modality's preprocessing next to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from geobind.config import make_config
from geobind.errors import EncoderShapeError
from geobind.modality import Modality
from geobind.plugins import get_registry

__all__ = ["Encoder", "Views", "build_encoder"]


class Views(tuple):
    """Several inputs that stand for one raw value: a modality's inference preprocessing may
    return one where a value is more than the network reads at once (the windows of a recording
    longer than the audio encoder's clip). :meth:`Encoder.embed` embeds each view and gives the
    value the mean of their unit embeddings, made unit length again, as CLAP's users embed a
    long recording. Training preprocessing never returns one: a training step reads one view
    (a random crop) per value.
    """


class Encoder(nn.Module):
    """A modality's encoder: ``forward(batch) -> [batch, embed_dim]`` unit vectors.

    :param modality: what was registered for this modality.
    :param config: the resolved config (an instance of ``modality.config``).
    :param net: the network the plugin built.
    :param plugin: the distribution that registered the modality, named in errors.
    """

    def __init__(self, modality: Modality, config: Any, net: nn.Module, plugin: str) -> None:
        super().__init__()
        self.modality = modality
        self.config = config
        self.net = net
        self.plugin = plugin
        self.frozen = False

    def freeze(self) -> Encoder:
        """No gradients, and eval mode that a later ``train()`` call cannot undo."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Encoder:
        return super().train(mode and not self.frozen)

    @property
    def name(self) -> str:
        """The modality's name."""
        return self.modality.name

    @property
    def embed_dim(self) -> int:
        """The dimension of the embeddings."""
        return int(self.config.embed_dim)

    def forward(self, batch: Any) -> torch.Tensor:
        out = self.net(batch)
        expected = (batch_len(batch), self.embed_dim)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise EncoderShapeError(
                f"encoder of modality {self.name!r} (plugin {self.plugin}) returned {got}, "
                f"expected [batch, embed_dim] = {list(expected)}"
            )
        return F.normalize(out.float(), dim=-1)

    @property
    def device(self) -> torch.device:
        """Where the encoder's tensors live (the CPU for one without any)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def preprocess(self, train: bool = False) -> Callable[[Any], Any]:
        """The function turning one raw value into this encoder's input."""
        return self.modality.build_preprocess(self.config, train)

    def collate(self, values: Iterable[Any], train: bool = False) -> Any:
        """Preprocess raw values and stack them into one batch, one input per value (a value
        that preprocesses into :class:`Views` is refused: :meth:`embed` pools them)."""
        prep = self.preprocess(train)
        inputs = [prep(v) for v in values]
        if any(isinstance(x, Views) for x in inputs):
            raise ValueError(
                f"modality {self.name!r}: a value preprocessed into several views (a long "
                "recording's clips) is not one input of a batch; embed() pools its views"
            )
        return default_collate(inputs)

    @torch.no_grad()
    def embed(self, values: Iterable[Any], batch_size: int = 64) -> torch.Tensor:
        """Unit embeddings ``[n, embed_dim]`` of raw values, in eval mode and without grad.

        A value that preprocesses into :class:`Views` gets the mean of its views' embeddings,
        made unit length; the network never reads more than ``batch_size`` inputs at once.
        """
        was_training = self.training
        self.eval()
        values = list(values)
        prep = self.preprocess(False)
        try:
            parts = [
                self._pooled([prep(v) for v in values[i : i + batch_size]], batch_size)
                for i in range(0, len(values), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else torch.empty(0, self.embed_dim)

    def _pooled(self, inputs: list[Any], batch_size: int) -> torch.Tensor:
        """Embeddings of preprocessed inputs, each :class:`Views` pooled into one row."""
        device = self.device
        if not any(isinstance(x, Views) for x in inputs):
            return self(_to(default_collate(inputs), device))
        counts = [len(x) if isinstance(x, Views) else 1 for x in inputs]
        if 0 in counts:
            raise ValueError(f"modality {self.name!r}: a value preprocessed into no views")
        flat = [v for x in inputs for v in (x if isinstance(x, Views) else (x,))]
        z = torch.cat(
            [
                self(_to(default_collate(flat[i : i + batch_size]), device))
                for i in range(0, len(flat), batch_size)
            ]
        )
        pooled = torch.stack([part.mean(dim=0) for part in z.split(counts)])
        return F.normalize(pooled, dim=-1)


def batch_len(batch: Any) -> int:
    """The number of samples in a batch: a tensor, or a mapping/sequence of tensors."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return batch_len(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return batch_len(batch[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__}")


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def build_encoder(
    modality: str | Modality, config: Any = None, weights: str | Path | None = None
) -> Encoder:
    """Build the encoder of a registered modality.

    :param modality: a modality name (looked up among installed plugins) or a Modality.
    :param config: overrides of the modality's config (mapping or dataclass instance).
    :param weights: optional local file of pretrained weights, passed to the plugin's factory.
    """
    registry = get_registry()
    spec = registry.modality(modality) if isinstance(modality, str) else modality
    plugin = (
        registry.owner(spec.name).distribution
        if spec.name in registry.modalities
        else "unregistered"
    )
    cfg: Any = make_config(spec.config, config, where=f"modality {spec.name!r} config")
    net = spec.build_encoder(cfg, Path(weights) if weights is not None else None)
    return Encoder(spec, cfg, net, plugin)
