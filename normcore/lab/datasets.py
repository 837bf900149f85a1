"""Small offline classification data sets for the training comparisons.

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes). The
  file ships inside the sklearn wheel, so nothing is downloaded. Pixels 0..16 are scaled to
  [0, 1]; images keep their (1, 8, 8) shape so the CNN can use them and the MLP flattens them.
* ``clusters``: Gaussian clusters with a known difficulty knob. Class ``k`` has mean
  ``separation / √2 · e_k`` (one axis per class) and identity covariance, so every pair of
  class means is exactly ``separation`` apart and the best possible classifier separates a
  pair with error ``Φ(−separation / 2)`` (:func:`pairwise_bayes_error`). Samples have 64
  features, shown to the CNN as a 1×8×8 "image", so both models run on both data sets.

Everything returns a :class:`Split` of float32 / int64 tensors. ``split.to(device)`` moves the
whole data set once; the training loop then only indexes it.

>>> split = load_digits_split(seed=0)
>>> split.x_train.shape, split.num_classes
(torch.Size([1347, 1, 8, 8]), 10)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

DATASETS = ("digits", "clusters")
DATASET_LABELS = {
    "digits": "Digits (sklearn, 8×8 images, 10 classes)",
    "clusters": "Gaussian clusters (synthetic, 64 dims, difficulty knob)",
}
TEST_FRACTION = 0.25
CLUSTER_FEATURES = 64  # = 1×8×8, the digits' shape, so the CNN applies too


@dataclass(frozen=True)
class Split:
    """A train/test split, already as tensors. ``x_*`` are (N, 1, 8, 8) float32, ``y_*`` int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, (C, H, W)."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_features(self) -> int:
        return math.prod(self.input_shape)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device) -> Split:
        """The same split on ``device`` (moved once, up front, not per step)."""
        move = lambda t: t.to(device, non_blocking=False)  # noqa: E731
        return replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                       x_test=move(self.x_test), y_test=move(self.y_test))


def _stratified_split(x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float):
    """Shuffle each class with ``seed`` and hold out ``test_fraction`` of it, so both parts
    keep the class balance. Pure numpy, so the split is the same on every machine."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _as_split(name: str, parts, num_classes: int) -> Split:
    x_tr, y_tr, x_te, y_te = parts
    image = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, 1, 8, 8)  # noqa: E731
    label = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return Split(name, image(x_tr), label(y_tr), image(x_te), label(y_te), num_classes)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: sklearn takes ~1 s to import

    bunch = load_digits()
    x, y = bunch.data / 16.0, bunch.target  # pixel intensities 0..16 -> [0, 1]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_digits_split(seed: int = 0, test_fraction: float = TEST_FRACTION) -> Split:
    """sklearn's 8×8 digits, split stratified by ``seed``: 1,347 train / 450 test at 0.25."""
    x, y = _digits_arrays()
    return _as_split("digits", _stratified_split(x, y, seed, test_fraction), 10)


def make_clusters(
    seed: int = 0,
    separation: float = 3.0,
    num_classes: int = 4,
    train_size: int = 2000,
    test_size: int = 1000,
) -> Split:
    """Gaussian clusters in 64 dims: class k ~ N(separation/√2 · e_k, I).

    ``separation`` is the distance between any two class means, in units of the noise std:
    0 is pure noise (chance accuracy), 2 is hard, 4 is easy, 6+ is nearly separable.
    """
    if not 2 <= num_classes <= CLUSTER_FEATURES:
        raise ValueError(f"num_classes must be from 2 to {CLUSTER_FEATURES}, got {num_classes}.")
    if not (math.isfinite(separation) and separation >= 0):
        raise ValueError(f"separation must be a finite number ≥ 0, got {separation}.")
    rng = np.random.default_rng(seed)
    n = train_size + test_size
    y = np.arange(n) % num_classes  # balanced classes
    means = np.zeros((num_classes, CLUSTER_FEATURES))
    means[np.arange(num_classes), np.arange(num_classes)] = separation / math.sqrt(2.0)
    x = means[y] + rng.standard_normal((n, CLUSTER_FEATURES))
    return _as_split("clusters", _stratified_split(x, y, seed, test_size / n), num_classes)


def pairwise_bayes_error(separation: float) -> float:
    """The best achievable error between two of the clusters: Φ(−separation / 2)."""
    return 0.5 * math.erfc(separation / 2.0 / math.sqrt(2.0))


def load(name: str, seed: int = 0, **knobs) -> Split:
    """A data set by name (``DATASETS``); ``knobs`` go to the synthetic generator."""
    if name == "digits":
        return load_digits_split(seed)
    if name == "clusters":
        return make_clusters(seed, **knobs)
    raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(DATASETS)}.")


__all__ = ["DATASETS", "DATASET_LABELS", "Split", "load", "load_digits_split", "make_clusters", "pairwise_bayes_error"]
