"""The Fold tab's experiment: the lab's digits CNN folded with :func:`normcore.fold_batchnorm`.

* :func:`build_model`: the CNN (Conv 3×3 → BatchNorm → ReLU blocks), trained briefly on
  scikit-learn's digits, or with random weights, statistics from one calibration pass and
  random γ/β. A fresh BatchNorm (μ=0, σ²=1, γ=1, β=0) would fold to the identity and show
  no mistake at all.
* :func:`run`: fold it and measure, on the 450 test digits, the max |Δ| of the logits against
  the unfolded model in eval (normcore's fold, and torch.nn.utils.fusion's for comparison),
  the parameter and layer counts before and after, the inference speed-up (the median of
  per-pass CPU-time ratios, both versions timed alternately in this process), the classic
  mistakes (``mistakes``) and the folded state_dict as bytes (tensors only).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import fusion as torch_fusion

import normcore
from normcore.lab import limits
from normcore.lab.datasets import Split, load_digits_split
from normcore.lab.devices import Target, placed
from normcore.lab.loop import TrainConfig, evaluate, train
from normcore.lab.models import Classifier, forward_macs, make_model, parameter_count
from normcore.lab.settings import Problem

from normcore.lab.experiments.deploy import mistakes as M
from normcore.lab.experiments.deploy.fold_options import FoldOptions

TRAINING = TrainConfig(epochs=3, batch_size=32, lr=0.05)
FILE_NAME = "digits_cnn_folded.pt"
WARMUP_PASSES = 3


@dataclass
class DigitsCNN:
    """The model the tab folds, in eval mode, and the data it saw."""

    model: Classifier
    data: Split
    accuracy: float  # on the test digits, eval mode


def calibrate(model: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """Random γ ~ U(0.5, 1.5) and β ~ N(0, 0.5²) in every BatchNorm, then running statistics
    from one pass of ``x`` in training mode (a cumulative average), then eval."""
    gen = torch.Generator().manual_seed(int(seed) + 1)
    bns = [m for m in model.modules() if isinstance(m, normcore.fusion.BATCH_NORMS)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(0.5 * torch.randn(bn.num_features, generator=gen))
            bn.reset_running_stats()
        saved = [bn.momentum for bn in bns]
        for bn in bns:
            bn.momentum = None
        model.train()
        model(x)
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return model.eval()


def build_model(o: FoldOptions) -> DigitsCNN:
    """The digits CNN of these options (trained or calibrated), in eval mode."""
    data = load_digits_split(seed=0)
    model = make_model("cnn", norm="batch", impl="torch", input_shape=data.input_shape, width=o.width,
                       depth=o.depth, seed=o.seed)
    with placed(Target("cpu", 1)):
        if o.source == "trained":
            train(model, data, TrainConfig(**{**TRAINING.__dict__, "seed": o.seed}))
        else:
            calibrate(model, data.x_train, o.seed)
        model.eval()
        return DigitsCNN(model, data, evaluate(model, data.x_test, data.y_test)[1])


@dataclass(frozen=True)
class Timing:
    unfolded_ms: float  # median of one pass of the test digits
    folded_ms: float
    speedup: float  # median over passes of unfolded / folded time
    passes: int


@dataclass(frozen=True)
class FoldResult:
    accuracy: float  # the unfolded model's, on the test digits
    parity: pd.DataFrame  # comparison, max_abs_delta, predictions_changed
    counts: pd.DataFrame  # what, before, after
    timing: Timing
    report: str  # normcore.fold_batchnorm's report, printed
    mistakes: pd.DataFrame  # one row per classic mistake (see mistakes.MISTAKES)
    state_bytes: bytes  # torch.save of the folded state_dict (tensors only)
    snippet: str  # how to load it
    messages: tuple[Problem, ...]


def max_abs_delta(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def torch_folded(model: Classifier) -> Classifier:
    """The same fold with torch.nn.utils.fusion, block by block (it has no whole-model walk)."""
    out = copy.deepcopy(model)
    for block in out.body:
        block[0], block[1] = torch_fusion.fuse_conv_bn_eval(block[0], block[1]), nn.Identity()
    return out


def _layers(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity))


def counts(before: nn.Module, after: nn.Module) -> pd.DataFrame:
    rows = []
    for what, count in (
        ("layers (leaf modules, Identity not counted)", _layers),
        ("BatchNorm layers", lambda m: sum(isinstance(x, normcore.fusion.BATCH_NORMS) for x in m.modules())),
        ("parameters", parameter_count),
        ("values in the state_dict (parameters + buffers)",
         lambda m: sum(v.numel() for v in m.state_dict().values() if v.is_floating_point())),
    ):
        rows.append({"what": what, "before": count(before), "after": count(after)})
    return pd.DataFrame(rows)


def time_versions(unfolded: nn.Module, folded: nn.Module, x: torch.Tensor, passes: int) -> Timing:
    """Both versions on ``x``, alternately (which goes first alternates too), ``passes`` times each.

    Each pass is timed in CPU time of this thread, with torch on this one thread, so time the
    shared machine gives other processes mid-pass is not counted (nor is any work hidden on
    other threads)."""
    def once(model) -> float:
        start = time.thread_time()
        model(x)
        return time.thread_time() - start

    with placed(Target("cpu", 1)), torch.inference_mode():
        for _ in range(WARMUP_PASSES):
            once(unfolded), once(folded)
        pairs = []
        for i in range(passes):
            if i % 2:
                f = once(folded)
                pairs.append((once(unfolded), f))
            else:
                pairs.append((once(unfolded), once(folded)))
    u, f = zip(*pairs)
    return Timing(statistics.median(u) * 1e3, statistics.median(f) * 1e3,
                  statistics.median(a / b for a, b in pairs), passes)


def state_bytes(model: nn.Module) -> bytes:
    """``torch.save`` of the state_dict as plain tensors, which ``torch.load(weights_only=True)`` reads."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def snippet(o: FoldOptions) -> str:
    return (
        "import torch\n"
        "from normcore.lab.models import make_model\n\n"
        f'state = torch.load("{FILE_NAME}", weights_only=True)  # tensors only: no code runs on load\n'
        f'model = make_model("cnn", norm="none", width={o.width}, depth={o.depth})  # the CNN, BatchNorm-free\n'
        "model.load_state_dict(state)\n"
        "model.eval()"
    )


def _parity(reference, ours, theirs) -> pd.DataFrame:
    rows = [("normcore.fold_batchnorm vs unfolded (eval)", reference, ours),
            ("torch.nn.utils.fusion vs unfolded (eval)", reference, theirs),
            ("normcore vs torch.nn.utils.fusion", theirs, ours)]
    return pd.DataFrame([{"comparison": name, "max_abs_delta": max_abs_delta(a, b),
                          "predictions_changed": int((b.argmax(1) != a.argmax(1)).sum())} for name, a, b in rows])


def run(o: FoldOptions, cnn: DigitsCNN | None = None) -> FoldResult:
    """Fold the CNN of ``o`` (``cnn``: an already built one, e.g. cached) and measure everything."""
    cnn = cnn or build_model(o)
    model, data = cnn.model, cnn.data
    passes, warning = limits.fold_timing_repeats(o.repeats, forward_macs("cnn", o.width, o.depth) * len(data.x_test))
    with placed(Target("cpu", 1)), torch.no_grad():
        folded, report = normcore.fold_batchnorm(model, return_report=True)
        reference = model(data.x_test)
        parity = _parity(reference, folded(data.x_test), torch_folded(model)(data.x_test))
        timing = time_versions(model, folded, data.x_test, passes)
        table = M.run_all(cnn, o, reference)
    messages = (Problem("warning", warning),) if warning else ()
    return FoldResult(cnn.accuracy, parity, counts(model, folded), timing, str(report), table, state_bytes(folded),
                      snippet(o), messages)


__all__ = ["DigitsCNN", "FILE_NAME", "FoldResult", "Timing", "build_model", "calibrate", "counts", "max_abs_delta",
           "run", "snippet", "state_bytes", "time_versions", "torch_folded"]
