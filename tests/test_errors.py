"""Bad input raises with a message that says what to change; NaN/inf propagate as in torch.

Every normcore error is a ``normcore.NormcoreError``: a ``ValueError`` and a ``RuntimeError``
both, so code that catches torch's exception catches normcore's. Which inputs raise at all is
tested against torch itself in ``test_probe_torch.py``; this file tests the messages.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import normcore
import normcore.functional as NF


def _raises(fn, *fragments: str) -> str:
    """Run fn, expect a ValueError, and check that the message contains every fragment."""
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- batch size 1


@pytest.mark.parametrize("cls_name,shape", [("BatchNorm1d", (1, 3)), ("BatchNorm2d", (1, 3, 1, 1)), ("BatchNorm3d", (1, 3, 1, 1, 1))])
def test_batch_size_one_in_training_says_to_use_a_bigger_batch_or_eval(cls_name, shape):
    layer = getattr(normcore, cls_name)(3)
    _raises(lambda: layer(torch.randn(shape)), "Expected more than 1 value per channel when training",
            f"got input size {torch.Size(shape)}", "batch of at least 2", ".eval()")
    _raises(lambda: NF.batch_norm(torch.randn(shape), None, None, training=True), "batch of at least 2")


def test_batch_size_one_is_fine_in_eval_and_with_spatial_positions():
    layer = normcore.BatchNorm2d(3)
    layer(torch.randn(1, 3, 2, 2))  # one sample, four positions: four values per channel
    layer.eval()
    layer(torch.randn(1, 3, 1, 1))


def test_instance_norm_with_one_spatial_position_says_to_use_a_larger_size():
    _raises(lambda: normcore.InstanceNorm1d(3)(torch.randn(2, 3, 1)), "Expected more than 1 spatial element when training",
            "larger spatial size")


def test_group_norm_with_one_value_per_group_says_what_to_change():
    # As torch (which checks N · C/G · spatial even in eval): one sample whose groups hold one value each.
    layer = normcore.GroupNorm(3, 3).eval()
    _raises(lambda: layer(torch.randn(1, 3)), "more than 1 value per group", "fewer groups")


# --------------------------------------------------------------------------- rank and channels


@pytest.mark.parametrize("layer,shape,expected", [
    (lambda: normcore.BatchNorm1d(3), (2, 3, 4, 4), "BatchNorm1d expects a 2D or 3D input (N, C) or (N, C, L), got a 4D input"),
    (lambda: normcore.BatchNorm2d(3), (2, 3, 4), "BatchNorm2d expects a 4D input (N, C, H, W), got a 3D input of shape (2, 3, 4)"),
    (lambda: normcore.BatchNorm3d(3), (2, 3, 4, 4), "BatchNorm3d expects a 5D input (N, C, D, H, W), got a 4D input"),
    (lambda: normcore.InstanceNorm2d(3), (3, 4), "InstanceNorm2d expects a 3D or 4D input (N, C, H, W) or (C, H, W), got a 2D input"),
    (lambda: normcore.GroupNorm(1, 3), (3,), "group_norm expects an input (N, C, *spatial) of at least 2 dims, got shape (3,)"),
])
def test_wrong_rank_names_the_expected_layout(layer, shape, expected):
    _raises(lambda: layer()(torch.randn(shape)), expected)


@pytest.mark.parametrize("layer,shape,name", [
    (lambda: normcore.BatchNorm2d(3), (2, 4, 5, 5), "BatchNorm2d"),
    (lambda: normcore.BatchNorm1d(3), (2, 5), "BatchNorm1d"),
    (lambda: normcore.GroupNorm(1, 3), (2, 4, 5), "GroupNorm"),
    (lambda: normcore.InstanceNorm1d(3, affine=True), (2, 4, 5), "InstanceNorm1d"),
])
def test_wrong_channel_count_says_how_many_and_what_to_change(layer, shape, name):
    _raises(lambda: layer()(torch.randn(shape)), f"{name} was built for 3 channels but the input has {shape[1]} in dim 1",
            f"Build the layer with {shape[1]} features")


def test_instance_norm_without_per_channel_state_only_warns_about_channels_like_torch():
    with pytest.warns(UserWarning):
        normcore.InstanceNorm1d(3)(torch.randn(2, 4, 5))


def test_layer_norm_shape_mismatch_says_which_trailing_dims():
    _raises(lambda: normcore.LayerNorm((4, 5))(torch.randn(2, 4, 6)), "normalizes over the trailing dims [4, 5]",
            "got [2, 4, 6]", "input.shape[1:]")


# --------------------------------------------------------------------------- groups


def test_channels_not_divisible_by_groups_lists_the_valid_counts():
    message = _raises(lambda: normcore.GroupNorm(3, 7))
    assert message.startswith("num_channels (7) must be divisible by num_groups (3)")
    assert "Valid group counts for 7 channels: 1, 7." in message
    message = _raises(lambda: NF.group_norm(torch.randn(2, 7, 4), 3))
    assert message.startswith("num_channels (7) must be divisible by num_groups (3)")
    assert _raises(lambda: normcore.GroupNorm(4, 6)).startswith("num_channels (6) must be divisible by num_groups (4)")


# --------------------------------------------------------------------------- eps and momentum


@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_batch_norm_eps_must_be_positive_in_training_like_torch(eps):
    layer = normcore.BatchNorm2d(3, eps=eps)  # accepted here, as torch: it is checked when used
    _raises(lambda: layer(torch.randn(2, 3, 2, 2)), "batch_norm eps must be positive when training", "typical values are 1e-5")
    _raises(lambda: NF.batch_norm(torch.randn(4, 3), None, None, training=True, eps=eps), "positive when training")


def test_batch_norm_eps_may_be_zero_in_eval_but_not_negative():
    x = torch.randn(4, 3)
    NF.batch_norm(x, torch.zeros(3), torch.ones(3), eps=0.0)
    _raises(lambda: NF.batch_norm(x, torch.zeros(3), torch.ones(3), eps=-1.0), "batch_norm eps must be non-negative")


@pytest.mark.parametrize("eps", [0.0, -1e-5, -10.0, float("nan"), float("inf")])
def test_layer_group_instance_norm_take_any_eps_like_torch(eps):
    x = torch.randn(2, 3, 4)
    for name, args in (("LayerNorm", (4,)), ("GroupNorm", (1, 3)), ("InstanceNorm1d", (3,))):
        ours, theirs = getattr(normcore, name)(*args, eps=eps), getattr(nn, name)(*args, eps=eps)
        torch.testing.assert_close(ours(x), theirs(x), equal_nan=True)


@pytest.mark.parametrize("momentum", [-1.2, 1.5, 5.0, float("nan")])
def test_any_momentum_is_taken_like_torch(momentum):
    x = torch.randn(4, 3, dtype=torch.float64)  # an extrapolating momentum magnifies float32 rounding
    for cls_name in ("BatchNorm1d", "InstanceNorm1d"):
        kwargs = {"momentum": momentum, "track_running_stats": True, "dtype": torch.float64}
        ours, theirs = getattr(normcore, cls_name)(3, **kwargs), getattr(nn, cls_name)(3, **kwargs)
        x_in = x if cls_name == "BatchNorm1d" else x.view(2, 3, 2)
        torch.testing.assert_close(ours(x_in), theirs(x_in))
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, equal_nan=True)
        torch.testing.assert_close(ours.running_var, theirs.running_var, equal_nan=True)
        ours.eval(), theirs.eval()  # unused in eval
        torch.testing.assert_close(ours(x_in), theirs(x_in), equal_nan=True)


@pytest.mark.parametrize("momentum", [0, 0.1, 1, None])
def test_valid_momenta_are_accepted(momentum):
    normcore.BatchNorm1d(3, momentum=momentum)(torch.randn(4, 3))


def test_normcore_errors_are_caught_by_torchs_exception_types():
    """A user catching what torch raises catches normcore's error too."""
    with pytest.raises(RuntimeError):  # torch: RuntimeError (running_mean has 3 entries, not 4)
        normcore.BatchNorm2d(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError):  # torch: ValueError
        normcore.BatchNorm2d(3)(torch.randn(1, 3, 1, 1))
    with pytest.raises(IndexError):  # torch: IndexError
        NF.batch_norm(torch.randn(4), None, None, training=True)
    with pytest.raises(ZeroDivisionError):  # torch: ZeroDivisionError
        normcore.GroupNorm(0, 4)
    with pytest.raises(NotImplementedError):  # torch: NotImplementedError
        normcore.BatchNorm1d(3)(torch.ones(4, 3, dtype=torch.long))
    assert issubclass(normcore.NormcoreIndexError, normcore.NormcoreError)


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_non_floating_input_says_to_convert(dtype):
    x = torch.ones(2, 3, 2, 2, dtype=dtype)
    for layer in (normcore.BatchNorm2d(3), normcore.GroupNorm(1, 3), normcore.LayerNorm((3, 2, 2)), normcore.InstanceNorm2d(3),
                  normcore.RMSNorm((3, 2, 2))):
        _raises(lambda: layer(x), "needs a floating-point input", str(dtype), "x.float()")
    _raises(lambda: NF.group_norm(x, 1), "needs a floating-point input")
    _raises(lambda: NF.rms_norm(x, (2,)), "needs a floating-point input")


def test_non_tensor_input_is_rejected():
    _raises(lambda: normcore.BatchNorm1d(3)([[1.0, 2.0, 3.0]]), "expects a torch.Tensor input, got list")


def test_eval_without_running_statistics_says_to_train_or_pass_them():
    _raises(lambda: NF.batch_norm(torch.randn(4, 3), None, None, training=False), "needs running_mean and running_var", "training=True")
    _raises(lambda: NF.instance_norm(torch.randn(4, 3, 2), use_input_stats=False), "needs running_mean and running_var", "use_input_stats=True")


def test_wrong_affine_shape_in_functional_calls():
    _raises(lambda: NF.batch_norm(torch.randn(4, 3), None, None, torch.ones(4), training=True), "weight must be a tensor with 3 entries", "got shape (4,)")
    _raises(lambda: NF.layer_norm(torch.randn(4, 3), (3,), torch.ones(3), torch.ones(2)), "bias must have shape (3,), got (2,)")
    _raises(lambda: NF.rms_norm(torch.randn(4, 3), (3,), torch.ones(1, 3)), "rms_norm: weight must have shape (3,), got (1, 3)")


def test_rms_norm_shape_mismatch_says_which_trailing_dims():
    _raises(lambda: normcore.RMSNorm((4, 5))(torch.randn(2, 4, 6)), "rms_norm normalizes over the trailing dims [4, 5]",
            "[*, 4, 5]", "got [2, 4, 6]", "input.shape[1:]")
    _raises(lambda: NF.rms_norm(torch.randn(2, 3), ()), "trailing dims []", "at least one")


@pytest.mark.parametrize("norm", ["rms_norm", "layer_norm"])
@pytest.mark.parametrize("normalized_shape,found", [(3, "got int 3"), ((3.0,), "element 0 is float 3.0"), ((True,), "element 0 is bool"),
                                                     (torch.tensor([3]), "got Tensor")])
def test_the_functionals_refuse_an_int_normalized_shape_like_torch_and_say_to_write_a_tuple(norm, normalized_shape, found):
    """torch's parser raises TypeError here; normcore's error is a TypeError too (and a ValueError)."""
    with pytest.raises(TypeError):
        getattr(torch.nn.functional, norm)(torch.randn(2, 3), normalized_shape)
    with pytest.raises(TypeError) as info:
        getattr(NF, norm)(torch.randn(2, 3), normalized_shape)
    for fragment in (f"{norm}: normalized_shape must be a tuple or list of ints", found, "write (C,)"):
        assert fragment in str(info.value)
    assert isinstance(info.value, normcore.NormcoreError)
    module = normcore.RMSNorm if norm == "rms_norm" else normcore.LayerNorm
    assert module(3)(torch.randn(2, 3)).shape == (2, 3)  # the module turns an int into (3,), as torch's
    for accepted in ([3], torch.Size([3]), (torch.tensor(3),)):  # what torch's parser accepts, normcore takes
        torch.testing.assert_close(getattr(NF, norm)(torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), accepted),
                                   getattr(torch.nn.functional, norm)(torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), accepted))


def test_unknown_backward_mode_lists_the_choices():
    message = _raises(lambda: normcore.BatchNorm2d(3, backward="numeric"))
    assert re.search(r"backward must be one of \('closed_form', 'autograd'\)", message)


# --------------------------------------------------------------------------- NaN and inf


LAYERS = {
    "BatchNorm2d": lambda m: m.BatchNorm2d(3),
    "GroupNorm": lambda m: m.GroupNorm(3, 3),
    "LayerNorm": lambda m: m.LayerNorm((3, 2, 2)),
    "InstanceNorm2d": lambda m: m.InstanceNorm2d(3, affine=True),
    "RMSNorm": lambda m: m.RMSNorm((3, 2, 2)),
}


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_nan_and_inf_propagate_like_torch(name, training, value, backward):
    """Same positions of NaN and ±inf in the output and in every gradient as torch.nn."""
    for position in [(0, 0, 0, 0), (1, 2, 1, 0)]:  # the first value (a shift) and another one
        theirs = LAYERS[name](nn).train(training)
        ours = getattr(normcore, name)(*_ctor_args(theirs), backward=backward).train(training)
        x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
        x[position] = value
        x_theirs, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_theirs, y_ours = theirs(x_theirs), ours(x_ours)
        assert torch.equal(y_ours.isnan(), y_theirs.isnan())
        assert torch.equal(y_ours.isinf(), y_theirs.isinf())
        y_theirs.backward(torch.ones_like(x))
        y_ours.backward(torch.ones_like(x))
        assert torch.equal(x_ours.grad.isnan(), x_theirs.grad.isnan())
        for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(p_ours.grad.isnan(), p_theirs.grad.isnan())
        for b_ours, b_theirs in zip(ours.buffers(), theirs.buffers()):
            if b_ours.is_floating_point():
                assert torch.equal(b_ours.isnan(), b_theirs.isnan())


def _ctor_args(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.GroupNorm):
        return (layer.num_groups, layer.num_channels)
    if isinstance(layer, (nn.LayerNorm, nn.RMSNorm)):
        return (layer.normalized_shape,)
    if isinstance(layer, nn.InstanceNorm2d):
        return (layer.num_features, layer.eps, layer.momentum, layer.affine)
    return (layer.num_features,)
