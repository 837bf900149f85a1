"""normcore.fuse_conv_bn_eval / fuse_linear_bn_eval against the unfolded pair in eval (the oracle),
and against torch.nn.utils.fusion where torch's are right; and the cases where torch's fail."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import fusion as torch_fusion
from torch.testing import assert_close

import normcore

CONVS = {(d, t): getattr(nn, f"Conv{'Transpose' if t else ''}{d}d") for d in (1, 2, 3) for t in (False, True)}
BNS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def calibrated(bn: nn.Module, gen: torch.Generator) -> nn.Module:
    """A BatchNorm in eval with statistics and γ/β far from a fresh layer's (μ=0, σ²=1, γ=1, β=0),
    which would fold to the identity and hide a missing term."""
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=gen))
        bn.running_var.copy_(torch.rand(c, generator=gen) * 3 + 0.05)
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(c, generator=gen) * 4 - 2)  # negative γ too
        if bn.bias is not None:
            bn.bias.copy_(torch.randn(c, generator=gen))
    return bn.eval()


@st.composite
def conv_bn_pairs(draw):
    dims, transposed = draw(st.sampled_from([1, 2, 3])), draw(st.booleans())
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel, stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    extra = dict(output_padding=draw(st.integers(0, 1)) * (stride > 1)) if transposed else {}
    padding = draw(st.integers(0, 1))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    affine = draw(st.booleans())
    with torch.random.fork_rng():
        torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
        conv = CONVS[dims, transposed](c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups,
                                       padding=padding, bias=draw(st.booleans()), **extra).eval()
        bn = BNS[dims](c_out, affine=affine, bias=draw(st.booleans()) if affine else True)
    # ≥ 1 output position either way: a transposed conv's padding crops its output
    size = dilation * (kernel - 1) + 1 + 2 * padding + draw(st.integers(0, 2))
    x = torch.randn(2, c_in, *(size,) * dims, generator=gen)
    return conv, calibrated(bn, gen), x


def describe(conv, bn) -> str:
    return f"{conv!r} -> {bn!r} (weight {bn.weight is not None}, bias {bn.bias is not None})"


@settings(max_examples=80, deadline=None)
@given(conv_bn_pairs())
def test_conv_fold_equals_the_unfolded_pair_in_eval(pair):
    conv, bn, x = pair
    fused = normcore.fuse_conv_bn_eval(conv, bn, transpose=conv.transposed)
    with torch.no_grad():
        expected = bn(conv(x))
        assert_close(fused(x), expected, msg=lambda m: f"{describe(conv, bn)}\n{m}")
        # torch's utility is a second oracle where it is right: not for a grouped ConvTranspose.
        if not (conv.transposed and conv.groups > 1):
            theirs = torch_fusion.fuse_conv_bn_eval(conv, bn, transpose=conv.transposed)
            assert_close(fused(x), theirs(x), msg=lambda m: f"{describe(conv, bn)}\n{m}")
    assert type(fused) is type(conv) and fused.weight.shape == conv.weight.shape and fused.bias.shape == (conv.out_channels,)


@settings(max_examples=40, deadline=None)
@given(in_features=st.integers(1, 6), out_features=st.integers(1, 6), bias=st.booleans(), affine=st.booleans(),
       bn_bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_linear_fold_equals_the_unfolded_pair_in_eval(in_features, out_features, bias, affine, bn_bias, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        linear = nn.Linear(in_features, out_features, bias=bias).eval()
        bn = calibrated(nn.BatchNorm1d(out_features, affine=affine, bias=bn_bias if affine else True), gen)
    x = torch.randn(5, in_features, generator=gen)
    with torch.no_grad():
        assert_close(normcore.fuse_linear_bn_eval(linear, bn)(x), bn(linear(x)))
        if bn.weight is not None and bn.bias is not None:  # torch's needs both (a TypeError otherwise)
            assert_close(normcore.fuse_linear_bn_eval(linear, bn)(x), torch_fusion.fuse_linear_bn_eval(linear, bn)(x))


def test_normcores_own_batchnorm_folds_too():
    gen = torch.Generator().manual_seed(1)
    conv, bn = nn.Conv2d(3, 4, 3).eval(), calibrated(normcore.BatchNorm2d(4), gen)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    with torch.no_grad():
        assert_close(normcore.fuse_conv_bn_eval(conv, bn)(x), bn(conv(x)))


# -- where torch's utilities fail and normcore's do not --------------------------------------


def _pair(conv, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return conv.eval(), calibrated(nn.BatchNorm2d(conv.out_channels), gen), torch.randn(2, conv.in_channels, 5, 5, generator=gen)


def test_conv_transpose_without_transpose_true_is_silently_wrong_in_torch_and_refused_here():
    conv, bn, x = _pair(nn.ConvTranspose2d(4, 4, 3))
    with torch.no_grad():
        expected = bn(conv(x))
        wrong = torch_fusion.fuse_conv_bn_eval(conv, bn)(x)  # no error, no warning
        assert (wrong - expected).abs().max() > 0.1
        with pytest.raises(ValueError, match="pass transpose=True"):
            normcore.fuse_conv_bn_eval(conv, bn)
        assert_close(normcore.fuse_conv_bn_eval(conv, bn, transpose=True)(x), expected)
    with pytest.raises(ValueError, match="leave transpose=False"):
        normcore.fuse_conv_bn_eval(nn.Conv2d(4, 4, 3).eval(), bn, transpose=True)


@pytest.mark.parametrize("c_in,c_out,groups", [(4, 6, 2), (6, 6, 3), (4, 4, 4)])
def test_grouped_conv_transpose_fails_in_torch_and_folds_here(c_in, c_out, groups):
    conv, bn, x = _pair(nn.ConvTranspose2d(c_in, c_out, 3, groups=groups))
    with torch.no_grad(), pytest.raises(RuntimeError, match="size"):
        # out/groups > 1: a shape error while folding; = 1 (depthwise): a weight of the wrong shape
        torch_fusion.fuse_conv_bn_eval(conv, bn, transpose=True)(x)
    with torch.no_grad():
        assert_close(normcore.fuse_conv_bn_eval(conv, bn, transpose=True)(x), bn(conv(x)))


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(bias=False)])
def test_linear_with_batchnorm_without_affine_or_bias_fails_in_torch_and_folds_here(kwargs):
    gen = torch.Generator().manual_seed(2)
    linear, bn = nn.Linear(3, 5).eval(), calibrated(nn.BatchNorm1d(5, **kwargs), gen)
    x = torch.randn(4, 3, generator=gen)
    with pytest.raises(TypeError):
        torch_fusion.fuse_linear_bn_eval(linear, bn)
    with torch.no_grad():
        assert_close(normcore.fuse_linear_bn_eval(linear, bn)(x), bn(linear(x)))


# -- refusals that say what to change; what is kept ------------------------------------------


def test_training_mode_is_refused_with_a_call_to_eval():
    conv, bn = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3)
    for layers in ((conv.train(), bn.eval()), (conv.eval(), bn.train())):
        with pytest.raises(ValueError, match=r"Call \.eval\(\)"):
            normcore.fuse_conv_bn_eval(*layers)
    with pytest.raises(ValueError, match=r"Call \.eval\(\)"):
        normcore.fuse_linear_bn_eval(nn.Linear(2, 3).eval(), nn.BatchNorm1d(3).train())


def test_batchnorm_without_running_statistics_or_matching_channels_is_refused():
    with pytest.raises(ValueError, match="track_running_stats=False"):
        normcore.fuse_conv_bn_eval(nn.Conv2d(2, 3, 1).eval(), nn.BatchNorm2d(3, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="has 4 channels but the Conv2d gives 3"):
        normcore.fuse_conv_bn_eval(nn.Conv2d(2, 3, 1).eval(), nn.BatchNorm2d(4).eval())
    with pytest.raises(TypeError, match="must be a BatchNorm"):
        normcore.fuse_conv_bn_eval(nn.Conv2d(2, 3, 1).eval(), nn.GroupNorm(1, 3).eval())


def test_linear_with_a_single_feature_batchnorm_folds_like_torch():
    gen = torch.Generator().manual_seed(3)
    linear, bn = nn.Linear(3, 4).eval(), calibrated(nn.BatchNorm1d(1), gen)
    x = torch.randn(5, 1, 3, generator=gen)  # (N, C=1, L): one statistic for all
    with torch.no_grad():
        assert_close(normcore.fuse_linear_bn_eval(linear, bn)(x), bn(linear(x)))
        assert_close(normcore.fuse_linear_bn_eval(linear, bn)(x), torch_fusion.fuse_linear_bn_eval(linear, bn)(x))


def test_float16_layer_is_folded_from_exact_factors_and_keeps_its_dtype():
    gen = torch.Generator().manual_seed(4)
    bn = calibrated(nn.BatchNorm2d(8), gen)
    with torch.no_grad():
        bn.running_var[:4] = 1e-4  # near-dead channels: a large factor γ/√(σ²+ε)
    conv16 = nn.Conv2d(3, 8, 3).eval().half().requires_grad_(False)
    with pytest.warns(normcore.fusion.HalfPrecisionFoldWarning, match="Conv2d's weights are torch.float16"):
        ours = normcore.fuse_conv_bn_eval(conv16, bn)
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()  # the formula, in float64
    expected_w = (conv16.weight.double() * scale.view(-1, 1, 1, 1)).half()
    expected_b = ((conv16.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()).half()
    assert ours.weight.dtype == ours.bias.dtype == torch.float16
    assert torch.equal(ours.weight, expected_w) and torch.equal(ours.bias, expected_b)
    assert not ours.weight.requires_grad and normcore.fuse_conv_bn_eval(nn.Conv2d(3, 8, 3).eval(), bn).weight.requires_grad


def test_the_originals_are_untouched():
    conv, bn, x = _pair(nn.Conv2d(3, 3, 3))
    before = {k: v.clone() for k, v in {**conv.state_dict(), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}.items()}
    fused = normcore.fuse_conv_bn_eval(conv, bn)
    after = {**conv.state_dict(), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}
    assert all(torch.equal(before[k], after[k]) for k in before) and fused.weight is not conv.weight


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_folding_a_model_cast_to_half_warns_to_fold_in_float32_first(dtype):
    """The Fold tab's float16 mistake (model.half() first, then fold) warns with the fix; folding
    the float32 model, then casting, does not."""
    import warnings

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Conv1d(1, 2, 1), nn.BatchNorm1d(2)).eval()
    with pytest.warns(normcore.fusion.HalfPrecisionFoldWarning) as caught:
        normcore.fold_batchnorm(copy.deepcopy(model).to(dtype))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all("BatchNorm1d's running_vars are " + str(dtype) in m for m in messages)
    assert all("fold the float32 model and cast once at the end" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normcore.fold_batchnorm(model).to(dtype)
