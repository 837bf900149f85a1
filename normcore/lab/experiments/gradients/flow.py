"""Part 3: gradient flow in depth. A deep MLP on digits, trained with a norm and without one,
read layer by layer at initialization and after training.

The model is the training page's (:func:`normcore.lab.models.make_model`, Xavier-normal init
at the chosen gain) and so is the loop (:func:`normcore.lab.loop.train`, with its
pre-activation percentile probe on the first hidden block). Per layer, on one fixed batch in
train mode (:func:`layer_profile`):

* the mean and std of each block's output (the activation), and for tanh and sigmoid its
  saturation % (:func:`saturation`);
* the std of the gradient reaching that activation, and the std of the gradient of that
  block's weight: two series, because they tell different stories;
* the update:data ratio log10(std(lr·∂L/∂W) / std(W)); ~−3 is the usual healthy value.

:func:`flow_sentence` turns a measured profile into the words the page shows.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn

from normcore.lab import datasets, devices, limits, loop, models
from normcore.lab.fields import Field, Schema
from normcore.lab.norms import NORM_LABELS

BATCH = 128  # the training batch, and the fixed batch every profile is measured on
SATURATED = 0.97  # |tanh| above this (sigmoid: within 0.03 of 0 or 1) counts as saturated
# normcore's own layers (the same numbers as torch.nn's: the training page compares the two);
# a default run (20 layers × 200 steps) costs 2.9–3.5 s of CPU against torch.nn's 2.5 s, hence MAX_FLOW_WORK.
IMPL = "normcore"
PROFILE_COLUMNS = ("layer", "act_mean", "act_std", "saturation_pct", "act_grad_std", "weight_grad_std", "update_ratio")
HEALTHY_UPDATE_RATIO = -3.0  # log10(std(lr·grad)/std(w)) (Karpathy, makemore part 3)
# Small layers: one thread is faster than two (and far faster on a loaded machine). placed()
# also runs one such experiment at a time per process, as the training page's runs.
ONE_THREAD = devices.Target("cpu", 1)
EXPLODE, VANISH = 10.0, 0.1  # first/last std ratios past these are called exploding / vanishing

FLOW_NORMS = ("batch", "layer", "group", "rms", "none")  # an MLP's (InstanceNorm needs a map)
ACTIVATION_CHOICES = ("tanh", "relu", "sigmoid")
LR_CHOICES = (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0)
GAIN_MARKS = "1 = Xavier (Glorot); √2 ≈ 1.41 = Kaiming for ReLU (they agree on square layers); 5/3 = torch's gain for tanh."
FLOW_FIELDS = Schema((  # the Gradients page's part-3 controls (normcore.lab.experiments.gradients.options)
    Field("depth", "Depth (hidden layers)", 20, "int", "Linear → norm → activation blocks.", 2,
          limits.MAX_FLOW_DEPTH, 1, url="g_depth", caps=("flow_work",)),
    Field("width", "Width", 64, "int", "Units per hidden layer (a multiple of 8, so GroupNorm's 4 groups fit).",
          8, limits.MAX_FLOW_WIDTH, 8, url="g_width", caps=("flow_work",)),
    Field("activation", "Activation", "tanh", "choice", "The nonlinearity after each norm.",
          choices=ACTIVATION_CHOICES, widget="radio", url="g_act"),
    Field("gain", "Init gain", 1.0, "float", "Weights ~ Xavier-normal × gain, biases 0. " + GAIN_MARKS,
          0.2, 5.0, 0.05, resolution=2, url="g_gain"),
    Field("flow_norm", "Normalization (against none)", "batch", "choice", "Trained beside the same net without a norm.",
          choices=FLOW_NORMS, labels=NORM_LABELS, url="g_fnorm"),
    Field("steps", "Training steps", 200, "int", "SGD steps (momentum 0.9, batch 128) of each run.", 10,
          limits.MAX_FLOW_STEPS, 10, url="g_steps", caps=("flow_work",)),
    Field("flow_lr", "Learning rate", 0.05, "float", "The same for both runs.", choices=LR_CHOICES, snap=True,
          url="g_lr"),
))


@dataclass(frozen=True)
class FlowSettings:
    """What one part-3 comparison depends on (the cache key); defaults from :data:`FLOW_FIELDS`."""

    depth: int = FLOW_FIELDS["depth"].default
    width: int = FLOW_FIELDS["width"].default
    activation: str = FLOW_FIELDS["activation"].default
    gain: float = FLOW_FIELDS["gain"].default
    norm: str = FLOW_FIELDS["flow_norm"].default
    steps: int = FLOW_FIELDS["steps"].default
    lr: float = FLOW_FIELDS["flow_lr"].default
    seed: int = 0  # not a control: both runs start from the same seeded weights

    @property
    def norms(self) -> tuple[str, ...]:
        return (self.norm, "none") if self.norm != "none" else ("none",)


@dataclass
class FlowResult:
    """Per-layer profiles (column ``run``: the norm; ``when``: init or trained), the loop's
    histories (pre-activation percentiles, loss), each run's status, and the ratios."""

    profiles: pd.DataFrame
    histories: pd.DataFrame
    status: dict[str, str]
    settings: FlowSettings

    def ratios(self) -> pd.DataFrame:
        return ratio_table(self.profiles)


def saturation(h: torch.Tensor, activation: str) -> float:
    """% of ``h`` (an activation's output) in its flat tails; NaN for ReLU (it has none)."""
    if activation == "tanh":
        return float((h.abs() > SATURATED).double().mean() * 100)
    if activation == "sigmoid":
        return float(((h < 1 - SATURATED) | (h > SATURATED)).double().mean() * 100)
    return math.nan


def layer_profile(model: models.Classifier, x: torch.Tensor, y: torch.Tensor, lr: float, activation: str) -> pd.DataFrame:
    """One row per hidden block of ``model`` (an MLP) on the batch (x, y), in train mode, on a
    copy (the model's running statistics and gradients are left as they were)."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    h, outputs = x.flatten(1), []
    for linear, norm, act in net.body:
        h = act(norm(linear(h)))
        h.retain_grad()
        outputs.append(h)
    nn.functional.cross_entropy(net.head(h), y).backward()
    rows = []
    for i, ((linear, _, _), out) in enumerate(zip(net.body, outputs)):
        w, g = linear.weight.detach(), linear.weight.grad
        a = out.detach()
        rows.append(dict(layer=i + 1, act_mean=float(a.mean()), act_std=float(a.std()),
                         saturation_pct=saturation(a, activation), act_grad_std=float(out.grad.std()),
                         weight_grad_std=float(g.std()), update_ratio=_log10_ratio(lr * float(g.std()), float(w.std()))))
    return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))


def _log10_ratio(a: float, b: float) -> float:
    return math.log10(a / b) if a > 0 and b > 0 else -math.inf if b > 0 else math.nan


def ratio_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """First-layer over last-layer std, per run and moment, for both gradient series."""
    rows = []
    for (run, when), p in profiles.groupby(["run", "when"], sort=False):
        p = p.sort_values("layer")
        rows.append(dict(run=run, when=when, **{
            f"{what} first/last": _ratio(p[column].iloc[0], p[column].iloc[-1])
            for what, column in (("activation grad", "act_grad_std"), ("weight grad", "weight_grad_std"))}))
    return pd.DataFrame(rows)


def _ratio(first: float, last: float) -> float:
    return first / last if last > 0 else math.inf if first > 0 else math.nan


def compare(s: FlowSettings, on_progress: Callable[[float], None] | None = None,
            stop: Callable[[], bool] | None = None) -> FlowResult:
    """Train one model per norm in ``s.norms`` from the same seed; profile each at init and after."""
    data = datasets.load_digits_split(seed=s.seed)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(s.seed))[:BATCH]
    x, y = data.x_train[pick], data.y_train[pick]
    per_epoch = len(data.x_train) // BATCH
    config = loop.TrainConfig(epochs=math.ceil(s.steps / per_epoch), batch_size=BATCH, lr=s.lr, seed=s.seed,
                              log_every=10, probe_layer=0)
    profiles, histories, status = [], [], {}
    with devices.placed(ONE_THREAD), no_denormals():
        for k, norm in enumerate(s.norms):
            model = models.make_model("mlp", norm=norm, impl=IMPL, width=s.width, depth=s.depth,
                                      activation=s.activation, init_gain=s.gain, seed=s.seed)
            profiles.append(layer_profile(model, x, y, s.lr, s.activation).assign(run=norm, when="init"))
            done = lambda p, k=k: on_progress and on_progress((k + p.step / s.steps) / len(s.norms))  # noqa: E731
            result = loop.train(model, data, config, callback=done, stop=stop, max_steps=s.steps)
            status[norm] = result.status if result.status != "finished" else ""
            if result.status != "diverged":
                profiles.append(layer_profile(model, x, y, s.lr, s.activation).assign(run=norm, when="trained"))
            histories.append(result.history.assign(run=norm))
    return FlowResult(pd.concat(profiles, ignore_index=True), pd.concat(histories, ignore_index=True), status, s)


class no_denormals:
    """Flush denormal floats to zero while training: a vanishing signal otherwise runs into
    them and slows every layer's arithmetic by orders of magnitude on a CPU."""

    def __enter__(self):
        self.before = torch.set_flush_denormal(True)

    def __exit__(self, *exc):
        torch.set_flush_denormal(False)


def flow_sentence(profile: pd.DataFrame, norm: str, when: str, column: str = "act_grad_std") -> str:
    """What one measured profile shows, in words: where the gradient std vanishes or explodes
    going from the last hidden layer back to the first, and (BatchNorm at init) how it
    compares with Yang et al. 2019's prediction."""
    p = profile.sort_values("layer")
    std = p[column].to_numpy()
    last = std[-1]
    name = NORM_LABELS.get(norm, norm) if norm != "none" else "Without a norm"
    what = "activation gradients" if column == "act_grad_std" else "weight gradients"
    if not (last > 0 and math.isfinite(last)):
        return f"{name}, {when}: the {what} at the last hidden layer are zero or not finite; nothing flows."
    ratio = std[0] / last
    head = f"{name}, {when}: the {what}' std at layer 1 is {ratio:.2g}× that at layer {len(std)}"
    if ratio > EXPLODE:
        where = int(p.layer[std / last > EXPLODE].max())  # the layer nearest the output past 10×
        verdict = f"; they explode towards the input (past 10× from layer {where} down)"
    elif ratio < VANISH:
        where = int(p.layer[std / last < VANISH].max())
        verdict = f"; they vanish towards the input (below 1/10 from layer {where} down)"
    else:
        verdict = "; they stay within a factor of 10 across the depth"
    text = head + verdict + "."
    if norm == "batch" and when == "init" and column == "act_grad_std":
        agree = "as" if ratio > 1 else "unlike what"
        text += (f" This is {agree} Yang et al. 2019 predict for BatchNorm at initialization: gradients that "
                 "grow towards the input.")
    return text
