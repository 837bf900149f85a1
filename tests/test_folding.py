"""normcore.fold_batchnorm: a folded copy of a whole model, its report, and the train-mode refusal.
The oracle is the original model in eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import normcore
from normcore.lab.models import make_model


def calibrate(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Running statistics from ``x`` (a cumulative average) and random γ/β, then eval."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, normcore.fusion.BATCH_NORMS):
            m.momentum = None
            if m.weight is not None:
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    if m.bias is not None:
                        m.bias.copy_(torch.randn(m.num_features, generator=gen))
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


class Nested(nn.Module):
    """Sequentials in Sequentials, a ConvTranspose, a ReLU before a BN, a BN called from forward()."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Sequential(nn.BatchNorm2d(4))))
        self.up = nn.Sequential(nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2), nn.BatchNorm2d(6, affine=False))
        self.post = nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU(), nn.BatchNorm2d(6))  # activation in between
        self.free = nn.BatchNorm2d(6)  # used in forward(), in no Sequential
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 16 * 16, 5), nn.BatchNorm1d(5), nn.BatchNorm1d(5))

    def forward(self, x):
        return self.head(self.free(self.post(self.up(self.stem(x)))))


@pytest.fixture(scope="module")
def nested():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    return calibrate(Nested(), x), x


def test_nested_model_folds_every_adjacent_pair_and_equals_the_original(nested):
    model, x = nested
    folded, report = normcore.fold_batchnorm(model, return_report=True)
    assert [(f.layer, f.norm) for f in report.folded] == [
        ("stem.0", "stem.1"), ("stem.3.0", "stem.3.1.0"), ("up.0", "up.1"), ("head.1", "head.2"), ("head.1", "head.3")]
    with torch.no_grad():
        assert_close(folded(x), model(x))
    remaining = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert remaining == ["post.2", "free"]


def test_the_report_says_why_each_batchnorm_was_left(nested):
    model, _ = nested
    _, report = normcore.fold_batchnorm(model, return_report=True)
    reasons = {x.norm: x.reason for x in report.left}
    assert set(reasons) == {"post.2", "free"}
    assert "after post.1 (ReLU)" in reasons["post.2"] and "not linear" in reasons["post.2"]
    assert "not in a Sequential" in reasons["free"]
    text = str(report)
    assert text.startswith("folded 5 BatchNorm, left 2:") and "folded stem.1 (BatchNorm2d) into stem.0 (Conv2d)" in text


def test_the_original_is_untouched(nested):
    model, x = nested
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    folded = normcore.fold_batchnorm(model)
    assert folded is not model and isinstance(model.stem[1], nn.BatchNorm2d)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()) and state.keys() == model.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(model(x), before)
    # The layers keep their names; the folded BNs' keys are gone; a conv without bias gains one.
    assert set(folded.state_dict()) - set(state) == {"stem.0.bias"}
    assert not any(k.startswith(("stem.1.", "up.1.", "head.2.")) for k in folded.state_dict())


def test_training_mode_is_refused_and_says_to_call_eval(nested):
    model, _ = nested
    with pytest.raises(ValueError, match=r"the model itself.* Call model\.eval\(\) first"):
        normcore.fold_batchnorm(make_model("cnn", norm="batch", impl="torch", width=4, depth=1))  # fresh: training
    model.stem[1].train()  # one layer left in training mode is enough to refuse
    try:
        with pytest.raises(ValueError, match=r"but 'stem\.1' is in training mode"):
            normcore.fold_batchnorm(model)
    finally:
        model.eval()


def test_batchnorm_without_running_statistics_and_shared_layers_are_left():
    conv = nn.Conv2d(2, 2, 1)
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2, track_running_stats=False), conv, nn.BatchNorm2d(2), conv).eval()
    folded, report = normcore.fold_batchnorm(model, return_report=True)
    reasons = {x.norm: x.reason for x in report.left}
    assert not report.folded and "track_running_stats=False" in reasons["1"] and "used more than once" in reasons["3"]
    x = torch.randn(4, 2, 3, 3)
    with torch.no_grad():
        assert_close(folded(x), model(x))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("impl", ["torch", "normcore"])
def test_the_labs_models_fold_with_either_batchnorm(kind, impl):
    x = torch.rand(64, 1, 8, 8)
    model = calibrate(make_model(kind, norm="batch", impl=impl, width=8, depth=2, seed=1), x)
    folded, report = normcore.fold_batchnorm(model, return_report=True)
    assert len(report.folded) == 2 and not report.left
    with torch.no_grad():
        assert_close(folded(x), model(x))
