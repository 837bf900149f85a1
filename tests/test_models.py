"""The MLP and CNN: pluggable norms, identical starts for normcore and torch.nn, readable errors."""

import pytest
import torch
from torch import nn

import normcore
from normcore.lab import devices, models

VALID = [(k, n) for k in models.MODEL_KINDS for n in models.NORMS if not models.norm_problem(k, n, 8, 2)]
EXPECTED_LAYER = {
    ("mlp", "batch"): "BatchNorm1d", ("mlp", "layer"): "LayerNorm", ("mlp", "group"): "GroupNorm",
    ("cnn", "batch"): "BatchNorm2d", ("cnn", "layer"): "LayerNorm", ("cnn", "group"): "GroupNorm",
    ("cnn", "instance"): "InstanceNorm2d", ("mlp", "rms"): "RMSNorm", ("cnn", "rms"): "RMSNorm",
}


def tiny(kind, norm, impl="normcore", **kw):
    return models.make_model(kind, norm, impl, width=8, depth=2, num_groups=2, **kw)


@pytest.mark.parametrize("device", devices.available())
@pytest.mark.parametrize("kind,norm", VALID)
def test_every_model_classifies_on_every_device(kind, norm, device):
    model = tiny(kind, norm, device=device)
    assert model(torch.rand(5, 1, 8, 8, device=device)).shape == (5, 10)
    assert len(model.activations) == 2


@pytest.mark.parametrize("kind,norm", [kn for kn in VALID if kn[1] != "none"])
def test_norm_layers_come_from_the_chosen_implementation(kind, norm):
    for impl, namespace in (("normcore", normcore), ("torch", nn)):
        layers = [block[1] for block in tiny(kind, norm, impl).body]
        expected = getattr(namespace, EXPECTED_LAYER[(kind, norm)])
        assert all(type(layer) is expected for layer in layers)


@pytest.mark.parametrize("kind,norm", VALID)
def test_normcore_and_torch_models_start_identical(kind, norm):
    ours, theirs = tiny(kind, norm, "normcore", seed=5), tiny(kind, norm, "torch", seed=5)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(6, 1, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_seed_fixes_the_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny("mlp", "batch", seed=1)
    after = torch.rand(1)
    assert torch.equal(before, after)  # building a model drew nothing from the global RNG
    b, c = tiny("mlp", "batch", seed=1), tiny("mlp", "batch", seed=2)
    assert torch.equal(a.body[0][0].weight, b.body[0][0].weight)
    assert not torch.equal(a.body[0][0].weight, c.body[0][0].weight)


def test_momentum_and_eps_reach_the_norm_layers():
    model = models.make_model("cnn", "batch", width=4, depth=1, momentum=None, eps=1e-3)
    bn = model.body[0][1]
    assert bn.momentum is None and bn.eps == 1e-3


def test_pre_activation_is_the_norm_output():
    # Oracle: run the last block's linear and BatchNorm by hand, in float64 from the formula.
    model = tiny("mlp", "batch").double()
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    pre = models.pre_activation(model, x, layer=-1)
    hidden = model.body[0](x.flatten(1))
    z = model.body[1][0](hidden)
    expected = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(pre, expected.detach())
    assert models.pre_activation(tiny("cnn", "none"), torch.rand(3, 1, 8, 8)).shape == (3, 8, 8, 8)


@pytest.mark.parametrize("impl", models.IMPLS)
@pytest.mark.parametrize("kind", models.MODEL_KINDS)
def test_rmsnorm_divides_each_sample_by_its_root_mean_square_with_the_models_eps(kind, impl):
    # Oracle: the formula by hand in float64, over what LayerNorm would use: the features
    # (MLP), or one sample's C×H×W values (CNN). eps is the model's, not RMSNorm's None.
    model = models.make_model(kind, "rms", impl, width=4, depth=2, eps=0.5).double()
    norm = model.body[-1][1]
    assert norm.eps == 0.5 and norm.normalized_shape == ((4,) if kind == "mlp" else (4, 8, 8))
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)  # γ applies per element; no β to apply
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    pre = models.pre_activation(model, x, layer=-1)
    hidden = model.body[0](x.flatten(1) if kind == "mlp" else x)
    z = model.body[1][0](hidden).detach()
    dims = tuple(range(1, z.dim()))
    expected = z / torch.sqrt(z.square().mean(dims, keepdim=True) + 0.5) * norm.weight.detach()
    torch.testing.assert_close(pre, expected)
    assert pre.mean(dims).abs().max() > 1e-3  # not centred, unlike LayerNorm


def test_invalid_combinations_say_why():
    with pytest.raises(ValueError, match="InstanceNorm .* MLP"):
        models.make_model("mlp", "instance")
    with pytest.raises(ValueError, match=r"divisible by num_groups \(3\).*1, 2, 4, 8"):
        models.make_model("mlp", "group", width=8, num_groups=3)
    with pytest.raises(ValueError, match="Unknown norm"):
        models.make_model("mlp", "weight")
    with pytest.raises(ValueError, match="width and depth"):
        models.make_model("cnn", "batch", depth=0)
    assert models.norm_problem("cnn", "instance", 8, 2) is None


@pytest.mark.parametrize("kind,width,depth", [("mlp", 32, 3), ("cnn", 8, 2), ("cnn", 16, 1)])
def test_forward_macs_match_torchs_flop_counter(kind, width, depth):
    from torch.utils.flop_counter import FlopCounterMode

    model = models.make_model(kind, "none", width=width, depth=depth)
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 8, 8))
    assert counter.get_total_flops() == 2 * models.forward_macs(kind, width, depth)  # torch counts 2 FLOPs per MAC
