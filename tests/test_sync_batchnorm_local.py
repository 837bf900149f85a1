"""normcore.SyncBatchNorm in one process: no group, or a group of one, is plain BatchNorm.

Also: convert_sync_batchnorm on nested torch.nn / normcore models, the state_dict, the
messages for misuse. (Signatures: tests/test_signatures.py. Several workers:
tests/test_sync_batchnorm.py.)
"""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist
from torch import nn

import normcore
from normcore import cross_worker
from normcore.sync_batchnorm import SyncBatchNorm, time_collectives

TORCH_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@pytest.fixture
def group_of_one(tmp_path):
    """An initialized gloo group with this process as its only worker."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=10))
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


def _pair(rank: int, **kwargs):
    ours, theirs = SyncBatchNorm(3, **kwargs), TORCH_BN[rank](3, **kwargs)
    with torch.no_grad():
        for layer in (ours, theirs):
            if layer.weight is not None:
                layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
                layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return ours, theirs


def _assert_behaves_as_batchnorm(rank: int, momentum) -> None:
    ours, theirs = _pair(rank, momentum=momentum)
    g = torch.Generator().manual_seed(rank)
    shape = (6, 3) + (4, 3, 2)[: rank - 2]
    for _ in range(3):
        x = torch.randn(shape, generator=g, dtype=torch.float64).float()
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        dy = torch.randn(shape, generator=g)
        with time_collectives() as timer:
            y1 = ours(x1)
            y1.backward(dy)
        y2 = theirs(x2)
        y2.backward(dy)
        assert timer.calls == 0  # nothing to synchronize: no collective at all
        torch.testing.assert_close(y1, y2)
        torch.testing.assert_close(x1.grad, x2.grad)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(ours, name).grad, getattr(theirs, name).grad)
    torch.testing.assert_close(ours.state_dict(), theirs.state_dict())
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_without_a_process_group_it_is_batchnorm(rank, momentum):
    assert not dist.is_initialized()
    _assert_behaves_as_batchnorm(rank, momentum)


@pytest.mark.parametrize("rank", [2, 4])
def test_in_a_group_of_one_worker_it_is_batchnorm(group_of_one, rank):
    assert dist.get_world_size() == 1
    _assert_behaves_as_batchnorm(rank, 0.1)


def test_outputs_equal_torch_batchnorm_in_training():
    ours, theirs = _pair(4)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64).float()
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_var, theirs.running_var)


def test_torch_syncbatchnorm_refuses_the_cpu_where_normcore_runs(group_of_one):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="GPU"):
        nn.SyncBatchNorm(3)(x)
    assert SyncBatchNorm(3)(x).shape == x.shape


def test_same_state_dict_as_torch_syncbatchnorm_both_ways():
    ours, theirs = SyncBatchNorm(4, momentum=None), nn.SyncBatchNorm(4, momentum=None)
    ours(torch.randn(8, 4, 2))  # move ours away from the initial values
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs.state_dict(), ours.state_dict())
    fresh = SyncBatchNorm(4)
    fresh.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(fresh.state_dict(), ours.state_dict())
    assert list(SyncBatchNorm(4, affine=False, track_running_stats=False).state_dict()) == []


# -- convert_sync_batchnorm ------------------------------------------------------------------


def _nested_model() -> nn.Module:
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(12, 6), normcore.BatchNorm1d(6, momentum=None, unbiased_running_var=False), nn.ReLU())
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3, eps=1e-3, momentum=0.3),
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 12), nn.Sequential(nn.BatchNorm1d(12, affine=False)), inner),
        nn.Unflatten(1, (6, 1, 1, 1)),
        normcore.BatchNorm3d(6, bias=False),
        nn.BatchNorm3d(6, track_running_stats=False),
    )
    for _ in range(2):  # running statistics and num_batches_tracked away from their defaults
        model(torch.randn(5, 2, 2, 2))
    model[1].weight.requires_grad_(False)
    model[4].eval()
    return model


def test_convert_replaces_every_batchnorm_at_any_depth_and_keeps_its_state():
    model = _nested_model()
    originals = {name: m for name, m in model.named_modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, normcore.modules._BatchNorm))}
    assert len(originals) == 5
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: (m.training, m.eps, m.momentum, m.affine, m.track_running_stats, m.bias is not None) for name, m in originals.items()}
    params = {name: list(m.parameters()) for name, m in originals.items()}
    x = torch.randn(5, 2, 2, 2)
    before = _nested_model()(x)  # an identical, unconverted twin

    converted = SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    now = dict(model.named_modules())
    for name in originals:
        layer = now[name]
        assert type(layer) is SyncBatchNorm, name
        assert (layer.training, layer.eps, layer.momentum, layer.affine, layer.track_running_stats, layer.bias is not None) == flags[name]
        assert all(a is b for a, b in zip(layer.parameters(), params[name]))  # the same Parameters
        assert layer.process_group is None
    assert now["2.3.1"].unbiased_running_var is False
    assert now["1"].weight.requires_grad is False and now["1"].bias.requires_grad is True
    assert list(model.state_dict()) == list(state)
    torch.testing.assert_close(model.state_dict(), state)
    torch.testing.assert_close(model(x), before)  # training mode, except the one layer in eval


def test_convert_keeps_the_same_keys_as_torch_convert():
    ours = SyncBatchNorm.convert_sync_batchnorm(_nested_model())
    theirs = nn.SyncBatchNorm.convert_sync_batchnorm(_nested_model())
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_convert_of_a_single_layer_returns_the_new_layer_with_the_group():
    group = object()  # stored, not used until a synchronized forward pass
    layer = SyncBatchNorm.convert_sync_batchnorm(nn.SyncBatchNorm(3), process_group=group)
    assert type(layer) is SyncBatchNorm and layer.process_group is group
    plain = nn.Linear(2, 2)
    assert SyncBatchNorm.convert_sync_batchnorm(plain) is plain


# -- misuse --------------------------------------------------------------------------------


def test_inputs_below_2d_and_without_channels_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"at least 2D.*unsqueeze"):
        SyncBatchNorm(3)(torch.randn(3))
    with pytest.raises(ValueError, match="0 channels"):
        SyncBatchNorm(3)(torch.randn(4, 0))
    with pytest.raises(ValueError, match=r"built for 3 channels but the input has 5"):
        SyncBatchNorm(3)(torch.randn(4, 5))


def test_a_synchronized_pass_checks_channels_before_any_collective(group_of_one):
    layer = SyncBatchNorm(3)
    with time_collectives() as timer, pytest.raises(ValueError, match="built for 3 channels"):
        layer._forward_synced(torch.randn(4, 5), dist.group.WORLD)
    assert timer.calls == 0


def test_nccl_with_cpu_tensors_says_what_to_change(group_of_one, monkeypatch):
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    with pytest.raises(ValueError, match=r"NCCL.*cuda:LOCAL_RANK.*gloo"):
        SyncBatchNorm(3)._forward_synced(torch.randn(4, 3), dist.group.WORLD)


def test_collective_timer_is_off_unless_asked():
    assert cross_worker._ACTIVE == []
    with time_collectives() as outer:
        with time_collectives() as inner:
            assert len(cross_worker._ACTIVE) == 2
    assert cross_worker._ACTIVE == [] and outer.calls == inner.calls == 0
