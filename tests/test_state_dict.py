"""state_dicts move between normcore and torch.nn layers, both ways, with identical eval outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import normcore

# (class name, constructor args, kwargs, input shape)
LAYERS = [
    ("BatchNorm1d", (4,), {}, (6, 4)),
    ("BatchNorm1d", (4,), {"affine": False}, (6, 4, 3)),
    ("BatchNorm2d", (4,), {"momentum": None}, (3, 4, 5, 5)),
    ("BatchNorm3d", (4,), {}, (2, 4, 3, 2, 2)),
    ("BatchNorm2d", (4,), {"track_running_stats": False}, (3, 4, 2, 2)),
    ("InstanceNorm1d", (4,), {"affine": True, "track_running_stats": True}, (3, 4, 7)),
    ("InstanceNorm2d", (4,), {"track_running_stats": True}, (3, 4, 3, 3)),
    ("InstanceNorm3d", (4,), {"affine": True}, (2, 4, 2, 3, 2)),
    ("LayerNorm", ((4, 3),), {}, (5, 4, 3)),
    ("LayerNorm", (3,), {"bias": False}, (5, 4, 3)),
    ("LayerNorm", (3,), {"elementwise_affine": False}, (5, 3)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5)),
    ("GroupNorm", (4, 4), {"affine": False}, (3, 4, 2, 2)),
    ("RMSNorm", ((4, 3),), {}, (5, 4, 3)),
    ("RMSNorm", (3,), {"eps": 1e-6}, (5, 4, 3)),
    ("RMSNorm", (3,), {"elementwise_affine": False}, (5, 3)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, _, kw, _ in LAYERS]


def _trained(layer: nn.Module, shape, seed: int) -> nn.Module:
    """A few training steps and a parameter nudge, so that no value is still its default."""
    g = torch.Generator().manual_seed(seed)
    layer.train()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn(p.shape, generator=g))
        for _ in range(3):
            layer(torch.randn(shape, generator=g) * 2 + 1)
    return layer.eval()


@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_torch_state_dict_loads_into_normcore_and_back(name, args, kwargs, shape):
    theirs = _trained(getattr(nn, name)(*args, **kwargs), shape, seed=0)
    ours = getattr(normcore, name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys, shapes and dtypes
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours.eval()(x), theirs(x), rtol=0, atol=1e-6)

    back = getattr(nn, name)(*args, **kwargs)
    back.load_state_dict(ours.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    torch.testing.assert_close(back.eval()(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_normcore_state_dict_loads_into_torch(name, args, kwargs, shape):
    ours = _trained(getattr(normcore, name)(*args, **kwargs), shape, seed=2)
    theirs = getattr(nn, name)(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours(x), theirs.eval()(x), rtol=0, atol=1e-6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
        assert ours.state_dict()[key].dtype == value.dtype, key


def test_state_dict_keys_and_dtypes_match_torch_for_batch_norm():
    ours, theirs = normcore.BatchNorm2d(5), nn.BatchNorm2d(5)
    assert list(ours.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].dtype == value.dtype
        assert torch.equal(ours.state_dict()[key], value)


def test_loading_a_state_dict_without_num_batches_tracked_works():
    source = _trained(nn.BatchNorm2d(3), (4, 3, 2, 2), seed=4)
    # An old-style checkpoint: a plain dict (no version metadata) without the key.
    old = {k: v for k, v in source.state_dict().items() if k != "num_batches_tracked"}
    ours = normcore.BatchNorm2d(3)
    ours.load_state_dict(old)  # strict
    assert int(ours.num_batches_tracked) == 0  # keeps its own count, as torch does
    torch.testing.assert_close(ours.running_mean, source.running_mean)
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(ours.eval()(x), source(x))

    # torch keeps the loading layer's own count; so does normcore.
    counted = normcore.BatchNorm2d(3)
    counted(torch.randn(4, 3, 2, 2))
    counted.load_state_dict(old)
    reference = nn.BatchNorm2d(3)
    reference(torch.randn(4, 3, 2, 2))
    reference.load_state_dict(old)
    assert int(counted.num_batches_tracked) == int(reference.num_batches_tracked) == 1

    # A current state_dict (with version metadata) that lost the key loads too (torch refuses it).
    current = source.state_dict()
    del current["num_batches_tracked"]
    normcore.BatchNorm2d(3).load_state_dict(current)


def test_state_dict_round_trip_inside_a_model():
    """Prefixed keys (a layer inside a model) load both ways too."""
    def model(lib):
        return nn.Sequential(nn.Conv2d(2, 4, 3), lib.BatchNorm2d(4), nn.ReLU(), lib.GroupNorm(2, 4))
    theirs = model(nn)
    theirs(torch.randn(3, 2, 6, 6))
    ours = model(normcore)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 2, 6, 6)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))
    theirs.load_state_dict(ours.state_dict())
