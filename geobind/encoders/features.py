"""Simple, non-learned features of raw values: what the floor of a learned space is built on.

Each modality may register a factory of such features (:attr:`geobind.Modality.features`):
colour histograms for images, band energies for sound, a bag of words for text. They cost
no training and carry what plain statistics carry, so a learned encoder that does no better
has not learned more than colour and loudness (see :mod:`geobind.eval.floor`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from geobind.encoders.media import decode_image

if TYPE_CHECKING:  # numpy loads when features are computed, not when plugins register
    import numpy as np

__all__ = ["BagOfWords", "ColourHistogram", "Features"]


class Features(Protocol):
    """Simple, non-learned features of one modality's raw values (the floor's input)."""

    def fit(self, values: Sequence[Any]) -> Features:
        """Learn what the features need from training values (a vocabulary, say); may do
        nothing."""

    def transform(self, values: Sequence[Any]) -> np.ndarray:
        """``[len(values), dim]`` float features, each row from its own value alone: the
        floor transforms chunks of rows in parallel threads and stacks them."""


class ColourHistogram:
    """A joint RGB histogram (``bins`` per channel) of the whole picture and of its lower
    half (the ground in a ground-level photo), square-rooted (Hellinger).

    Pictures are shrunk to at most ``max_side`` pixels first: colour statistics do not need
    more, and a large photo then costs no more than a small one.
    """

    def __init__(self, bins: int = 4, max_side: int = 128) -> None:
        self.bins = int(bins)
        self.max_side = int(max_side)

    def fit(self, values: Sequence[Any]) -> ColourHistogram:
        return self

    def transform(self, values: Sequence[Any]) -> np.ndarray:
        import numpy as np

        return (
            np.stack([self._one(v) for v in values])
            if len(values)
            else np.zeros((0, 2 * self.bins**3))
        )

    def _one(self, data: bytes) -> np.ndarray:
        import numpy as np

        image = decode_image(data)
        image.thumbnail((self.max_side, self.max_side))
        pixels = np.asarray(image, dtype=np.int32)
        lower = pixels[pixels.shape[0] // 2 :]
        return np.sqrt(np.concatenate([self._hist(pixels), self._hist(lower)]))

    def _hist(self, pixels: np.ndarray) -> np.ndarray:
        import numpy as np

        q = pixels.reshape(-1, 3) * self.bins // 256
        codes = (q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]
        counts = np.bincount(codes, minlength=self.bins**3).astype(np.float64)
        return counts / max(1.0, counts.sum())


_WORD = re.compile(r"[a-z]+")


class BagOfWords:
    """Which of the training vocabulary's words a text holds (lower-cased, letters only).

    The vocabulary is every word seen at least ``min_count`` times in the training values,
    the ``max_words`` most frequent kept.
    """

    def __init__(self, min_count: int = 2, max_words: int = 4096) -> None:
        self.min_count = int(min_count)
        self.max_words = int(max_words)
        self.vocabulary: dict[str, int] = {}

    def fit(self, values: Sequence[Any]) -> BagOfWords:
        counts = Counter(w for v in values for w in set(_WORD.findall(str(v).lower())))
        kept = [w for w, c in counts.most_common(self.max_words) if c >= self.min_count]
        self.vocabulary = {w: i for i, w in enumerate(sorted(kept))}
        return self

    def transform(self, values: Sequence[Any]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(values), max(1, len(self.vocabulary))))
        for row, value in enumerate(values):
            for word in _WORD.findall(str(value).lower()):
                column = self.vocabulary.get(word)
                if column is not None:
                    out[row, column] = 1.0
        return out
