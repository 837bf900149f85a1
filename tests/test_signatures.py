"""Every normcore layer and functional takes its torch twin's signature, then its own extras.

Same parameter names, order, kinds and defaults as torch (annotations aside: normcore's are
strings under ``from __future__ import annotations``); normcore's extras come after, as
keyword-only arguments with defaults. A torch release that changes a signature fails here.
"""

from __future__ import annotations

import inspect

import pytest
import torch.nn.functional as TF
from torch import nn

import normcore
import normcore.functional as NF

CLASSES = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "GroupNorm", "RMSNorm"]
CLASSES += ["SyncBatchNorm"]  # process_group before device, dtype; its classmethod is checked below
FUNCTIONS = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm"]
EXTRAS = {"backward", "unbiased_running_var", "return_stats"}


def _parameters(obj) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(obj).parameters.values()]


def _assert_torch_then_extras(ours, theirs) -> None:
    ours, theirs = _parameters(ours), _parameters(theirs)
    assert ours[: len(theirs)] == theirs, f"torch: {theirs}\nnormcore: {ours[: len(theirs)]}"
    for name, kind, default in ours[len(theirs) :]:
        assert name in EXTRAS and kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty, name


@pytest.mark.parametrize("name", CLASSES)
def test_layer_signature_is_torchs_then_keyword_only_extras(name):
    _assert_torch_then_extras(getattr(normcore, name), getattr(nn, name))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functional_signature_is_torchs_then_keyword_only_extras(name):
    _assert_torch_then_extras(getattr(NF, name), getattr(TF, name))


@pytest.mark.parametrize("name,args", [("BatchNorm2d", (4,)), ("InstanceNorm1d", (4,)), ("GroupNorm", (2, 4)), ("LayerNorm", (4,))])
def test_bias_false_gives_a_weight_without_a_bias_like_torch(name, args):
    extra = {"affine": True} if name.startswith("Instance") else {}
    ours, theirs = getattr(normcore, name)(*args, bias=False, **extra), getattr(nn, name)(*args, bias=False, **extra)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()] == ["weight"]
    assert ours.bias is None
    ours.load_state_dict(theirs.state_dict())


def test_convert_sync_batchnorm_signature_is_torchs():
    assert _parameters(normcore.SyncBatchNorm.convert_sync_batchnorm) == _parameters(nn.SyncBatchNorm.convert_sync_batchnorm)


@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_has_no_bias_at_all_like_torch(affine):
    """torch's RMSNorm has no ``bias`` attribute (not even None) and a state_dict of γ alone."""
    ours, theirs = normcore.RMSNorm((4, 3), elementwise_affine=affine), nn.RMSNorm((4, 3), elementwise_affine=affine)
    assert hasattr(ours, "bias") == hasattr(theirs, "bias") == False  # noqa: E712
    assert list(ours.state_dict()) == list(theirs.state_dict()) == (["weight"] if affine else [])
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert (ours.weight is None) == (theirs.weight is None)
    ours.load_state_dict(theirs.state_dict())


@pytest.mark.parametrize("args,kwargs", [((4,), {}), (((4, 3),), {"eps": 1e-6}), ((5,), {"elementwise_affine": False, "eps": 0.1})])
def test_rms_norm_repr_is_torchs(args, kwargs):
    assert repr(normcore.RMSNorm(*args, **kwargs)) == repr(nn.RMSNorm(*args, **kwargs))
    assert repr(normcore.RMSNorm(4, backward="autograd")) == "RMSNorm((4,), eps=None, elementwise_affine=True, backward='autograd')"


@pytest.mark.parametrize("name", ["fuse_conv_bn_eval", "fuse_linear_bn_eval"])
def test_fusion_signature_is_torchs(name):
    from torch.nn.utils import fusion

    assert _parameters(getattr(normcore, name)) == _parameters(getattr(fusion, name))
