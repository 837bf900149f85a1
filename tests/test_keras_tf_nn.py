"""normcore.functional.tf_batch_normalization against Keras's ops.batch_normalization (torch backend).

Keras's op is TensorFlow's formula with an ``axis`` and per-axis statistics; on the
TensorFlow backend it calls ``tf.nn.batch_normalization``. Statistics that broadcast in
other ways are checked against the textbook formula in float64.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import normcore
from normcore.keras import tf_batch_normalization


def test_it_is_normcore_functional_s():
    assert normcore.functional.tf_batch_normalization is tf_batch_normalization


@settings(max_examples=30, deadline=None)
@given(
    rank=st.integers(1, 4), axis_from_end=st.integers(0, 3), offset=st.booleans(), scale=st.booleans(),
    eps=st.floats(0.0, 0.1), seed=st.integers(0, 2**31),
)
def test_per_axis_statistics_match_keras(keras, rank, axis_from_end, offset, scale, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(torch.randint(1, 5, (rank,), generator=gen).tolist())
    axis = rank - 1 - axis_from_end % rank
    c = shape[axis]
    x = torch.randn(shape, generator=gen) * 3 + 1
    mean, var = torch.randn(c, generator=gen), torch.rand(c, generator=gen) + 0.1
    beta = torch.randn(c, generator=gen) if offset else None
    gamma = torch.randn(c, generator=gen) if scale else None
    expected = keras.ops.batch_normalization(x, mean, var, axis, offset=beta, scale=gamma, epsilon=eps)
    per_axis = [1] * rank
    per_axis[axis] = c
    def fit(t):
        return None if t is None else t.reshape(per_axis)
    got = tf_batch_normalization(x, fit(mean), fit(var), fit(beta), fit(gamma), eps)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_any_broadcast_numbers_and_dtype():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    mean, var = x.mean((0, 2), keepdim=True), x.var((0, 2), keepdim=True, unbiased=False)
    expected = 2.0 * (x - mean) / torch.sqrt(var + 1e-3) + 0.5  # the formula, in float64
    torch.testing.assert_close(tf_batch_normalization(x, mean, var, 0.5, 2.0, 1e-3), expected)
    per_sample = tf_batch_normalization(x, x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False), None, None, 0.0)
    torch.testing.assert_close(per_sample.mean(-1), torch.zeros(4, 3, dtype=torch.float64))
    half = tf_batch_normalization(x.half(), mean.float(), var.float(), None, None, 1e-3)
    assert half.dtype == torch.float16  # x's dtype, as TensorFlow casts to it
    with pytest.raises(RuntimeError):
        tf_batch_normalization(x, torch.zeros(4), var, None, None, 1e-3)  # mean does not broadcast against x
