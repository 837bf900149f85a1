"""normcore.lab.layers.build_layer: the layer the settings describe, from normcore or torch.nn."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import normcore
from normcore.lab.layers import build_layer
from normcore.lab.settings import DEFAULTS

S = replace(DEFAULTS, batch_size=5, channels=4, spatial=3, num_groups=2, eps=1e-3, momentum=0.3, affine=True)
KINDS = ("batch", "instance", "layer", "group", "rms")
# The torch.nn layer each kind stands for, written out here from torch's own signatures.
TORCH = {
    "batch": lambda track: torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.3, affine=True, track_running_stats=track),
    "instance": lambda track: torch.nn.InstanceNorm2d(4, eps=1e-3, momentum=0.3, affine=True, track_running_stats=track),
    "layer": lambda track: torch.nn.LayerNorm((4, 3, 3), eps=1e-3, elementwise_affine=True),
    "group": lambda track: torch.nn.GroupNorm(2, 4, eps=1e-3, affine=True),
    "rms": lambda track: torch.nn.RMSNorm((4, 3, 3), eps=1e-3, elementwise_affine=True),
}


def run_both(a: torch.nn.Module, b: torch.nn.Module, steps: int = 3):
    """Train a and b on the same batches, then evaluate both on a fresh one."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(5, 4, 3, 3, generator=g) * 2 + 1
            torch.testing.assert_close(a.train()(x), b.train()(x), rtol=1e-5, atol=1e-5)
        x = torch.randn(5, 4, 3, 3, generator=g)
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_matches_its_torch_nn_layer(kind, track):
    s = replace(S, norm=kind)
    mine, twin, expected = (build_layer(s, track_running_stats=track), build_layer(s, library=torch.nn, track_running_stats=track),
                            TORCH[kind](track))
    assert isinstance(mine, getattr(normcore, type(expected).__name__)) and type(twin) is type(expected)
    assert mine.state_dict().keys() == twin.state_dict().keys() == expected.state_dict().keys()
    assert repr(twin) == repr(expected)
    run_both(mine, expected)
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(mine.state_dict()[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, keeps", [("batch", True), ("instance", True), ("layer", False), ("group", False), ("rms", False)])
def test_track_running_stats_is_honoured(kind, keeps):
    s = replace(DEFAULTS, norm=kind)
    for library in (normcore, torch.nn):
        assert (getattr(build_layer(s, library=library, track_running_stats=True), "running_mean", None) is not None) is keeps
        assert getattr(build_layer(s, library=library, track_running_stats=False), "running_mean", None) is None


def test_track_running_stats_must_be_said():
    with pytest.raises(TypeError):
        build_layer(DEFAULTS)  # noqa


def test_kind_momentum_and_affine_override_the_settings():
    layer = build_layer(S, "instance", momentum=None, affine=False, track_running_stats=True)
    assert isinstance(layer, normcore.InstanceNorm2d) and layer.momentum is None and not layer.affine
    assert build_layer(S, track_running_stats=True).momentum == 0.3 and build_layer(S, momentum=0.5, track_running_stats=True).momentum == 0.5
    assert build_layer(replace(S, affine=False), "group", track_running_stats=False).weight is None
    assert build_layer(S, "layer", affine=False, library=torch.nn, track_running_stats=False).weight is None
    assert build_layer(S, "rms", affine=False, track_running_stats=False).weight is None
    cumulative = build_layer(S, momentum=None, track_running_stats=True)
    run_both(cumulative, torch.nn.BatchNorm2d(4, eps=1e-3, momentum=None, affine=True))
    with pytest.raises(ValueError, match="Unknown normalization"):
        build_layer(S, "batchy", track_running_stats=True)
