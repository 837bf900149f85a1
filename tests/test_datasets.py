"""The offline data sets: sklearn's digits split correctly, and clusters as difficult as promised."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm as gaussian
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from normcore.lab import datasets, devices


def test_digits_split_sizes_shapes_and_range():
    split = datasets.load_digits_split(seed=0)
    assert split.x_train.shape == (1347, 1, 8, 8) and split.x_test.shape == (450, 1, 8, 8)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.num_classes == 10 and split.input_shape == (1, 8, 8) and split.num_features == 64
    assert float(split.x_train.min()) == 0.0 and float(split.x_train.max()) == 1.0


def test_digits_split_is_a_partition_of_sklearns_data():
    # Oracle: sklearn's own array. Sorted rows of train ∪ test must be exactly its rows / 16.
    bunch = load_digits()
    split = datasets.load_digits_split(seed=3)
    ours = np.concatenate([split.x_train.reshape(-1, 64).numpy(), split.x_test.reshape(-1, 64).numpy()])
    labels = np.concatenate([split.y_train.numpy(), split.y_test.numpy()])
    theirs = np.column_stack([bunch.data / 16.0, bunch.target]).astype(np.float32)
    mine = np.column_stack([ours, labels]).astype(np.float32)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(order(mine), order(theirs))


def test_digits_split_is_stratified_and_seeded():
    a, b, c = (datasets.load_digits_split(seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # ~25 % of each class's ~180 images


def test_cluster_means_are_separation_apart():
    split = datasets.make_clusters(seed=0, separation=5.0, num_classes=3, train_size=6000, test_size=10)
    x, y = split.x_train.reshape(-1, 64).double(), split.y_train
    means = torch.stack([x[y == k].mean(0) for k in range(3)])
    distances = torch.pdist(means)
    # Each mean is estimated from 2000 samples in 64 dims: noise ≈ sqrt(2·64/2000) ≈ 0.25 in distance².
    assert torch.allclose(distances, torch.full_like(distances, 5.0), atol=0.1)


def test_pairwise_bayes_error_is_the_normal_tail():
    for sep in (0.0, 1.0, 3.0, 6.0):
        assert datasets.pairwise_bayes_error(sep) == pytest.approx(gaussian.cdf(-sep / 2), rel=1e-12)


def test_separation_knob_sets_the_difficulty():
    # An independent learner (sklearn's logistic regression) on two classes should get close
    # to the Bayes accuracy 1 - Φ(-sep/2): harder as the separation shrinks.
    scores = []
    for sep in (0.0, 2.0, 5.0):
        split = datasets.make_clusters(seed=1, separation=sep, num_classes=2, train_size=3000, test_size=3000)
        clf = LogisticRegression(max_iter=500).fit(split.x_train.reshape(-1, 64), split.y_train)
        score = clf.score(split.x_test.reshape(-1, 64), split.y_test)
        assert score == pytest.approx(1 - datasets.pairwise_bayes_error(sep), abs=0.04)
        scores.append(score)
    assert scores[0] < scores[1] < scores[2]


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="Unknown data set"):
        datasets.load("mnist")
    with pytest.raises(ValueError, match="num_classes"):
        datasets.make_clusters(num_classes=1)
    with pytest.raises(ValueError, match="separation"):
        datasets.make_clusters(separation=math.nan)


@pytest.mark.parametrize("device", devices.available())
def test_split_moves_to_a_device_whole(device):
    split = datasets.load("clusters", seed=0, train_size=100, test_size=20).to(device)
    assert split.device.type == torch.device(device).type
    assert all(t.device == split.device for t in (split.x_train, split.y_train, split.x_test, split.y_test))
