"""A character-level text corpus that ships with Python: CPython's documentation topics.

``pydoc_data.topics.topics`` is the text ``help("if")`` and its kin print (about 465 KB and
103 distinct characters on Python 3.11). Nothing is downloaded. The text differs between
Python versions, so :attr:`Corpus.digest` (a hash of the text) keys every cache of results
trained on it.

* **Tokens**: one per distinct character, in sorted order.
* **Split**: the first 90 % of the text trains, the last 10 % validates (a fixed cut, no shuffling).
* **Batches**: :meth:`Corpus.batch` draws (B, T) windows at offsets from a seeded CPU
  ``torch.Generator``; targets are the same windows shifted by one character. The same
  seed gives the same batches on every device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch

TRAIN_FRACTION = 0.9


@dataclass(frozen=True, eq=False)
class Corpus:
    """The encoded text: ``train`` and ``validation`` are int64 token ids; ``chars[i]`` is token i."""

    chars: str
    train: torch.Tensor
    validation: torch.Tensor
    digest: str  # sha256 of the text, first 16 hex digits

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def batch(self, split: str, batch_size: int, context: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, context): windows of ``split`` ("train" or
        "validation") at offsets drawn from ``generator``; targets are shifted by one."""
        data = self.train if split == "train" else self.validation
        if context + 1 > len(data):
            raise ValueError(f"A context of {context} characters does not fit the {len(data)}-character {split} text.")
        starts = torch.randint(len(data) - context, (batch_size,), generator=generator)
        window = starts[:, None] + torch.arange(context + 1)  # (B, T + 1) positions
        tokens = data[window]
        return tokens[:, :-1], tokens[:, 1:]

    def batches(self, split: str, count: int, batch_size: int, context: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` batches from a generator seeded with ``seed``: the same list for the same arguments."""
        g = torch.Generator().manual_seed(int(seed))
        return [self.batch(split, batch_size, context, g) for _ in range(count)]


def topics_text() -> str:
    """Every documentation topic, in sorted topic order, joined."""
    from pydoc_data.topics import topics

    return "".join(topics[name] for name in sorted(topics))


def _encode(text: str, chars: str) -> torch.Tensor:
    """Each character's index in ``chars``, through its code point (a lookup table: a Python list
    of 10⁶ ids took ~10 s to become a tensor)."""
    points = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    char_points = torch.tensor([ord(c) for c in chars], dtype=torch.int64)
    table = torch.full((int(char_points.max()) + 1,), -1, dtype=torch.int64)
    table[char_points] = torch.arange(len(chars))
    return table[points]


@lru_cache(maxsize=1)
def load_corpus() -> Corpus:
    """The documentation topics, encoded and split (once per process)."""
    text = topics_text()
    chars = "".join(sorted(set(text)))
    ids = _encode(text, chars)
    cut = int(len(ids) * TRAIN_FRACTION)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Corpus(chars, ids[:cut], ids[cut:], digest)


__all__ = ["Corpus", "TRAIN_FRACTION", "load_corpus", "topics_text"]
