"""Train vs eval: where a normalization layer's two modes part ways, and how to close the gap.

In training, BatchNorm normalizes with the statistics of the batch in front of it; in eval,
with running estimates (an EMA of past batches). Every scenario below measures how far
those two outputs are apart, and why, on inputs with a known truth (``normcore.data``):

    train_eval_gap = mean |y_train − y_eval|     (in units of the output's std: γ = 1, β = 0)

Each scenario is a plain function ``(LabSettings, **params) -> ScenarioResult`` with tidy
pandas frames; :data:`SCENARIOS` lists them with their title, explanation and controls so
a page can render them in a loop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pandas as pd
import torch

from .. import limits
from ..data import draw_batch, make_generator, population_stats
from ..datasets import Split, load_digits_split
from ..devices import Target, placed
from ..functional import batch_norm
from ..models import Classifier, make_model, norm_problem
from ..modules import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm
from ..settings import LabSettings, Problem, problems
from ..stats import NORM_LABELS, keras_momentum_from_torch
from ..training import TrainConfig, TrainResult, evaluate, train

PROBE_SEED = 7919  # the probe batch has its own generator, so it never appears in the stream
SAME = object()  # "take the momentum from the settings" (None is a valid momentum)
MAX_WARMUP = 300  # warm-up steps before a measurement, at most (see warmup_steps)


# ---------------------------------------------------------------------------------------
# What a scenario returns, and how a page finds it
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    label: str
    value: str
    help: str = ""


@dataclass
class ScenarioResult:
    """Tidy frames for the chart, one headline number, and messages to show above it.

    ``messages`` use :class:`~normcore.settings.Problem` levels, plus ``"info"``. An empty
    ``frames`` means the scenario could not run with these settings (the messages say why).
    """

    frames: dict[str, pd.DataFrame]
    headline: Headline | None
    messages: list[Problem] = field(default_factory=list)
    table: pd.DataFrame | None = None
    table_caption: str = ""


@dataclass(frozen=True)
class Param:
    """A scenario's own control (the shared ones come from the sidebar)."""

    name: str
    label: str
    default: float
    low: float
    high: float
    step: float
    help: str = ""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    icon: str
    explanation: str  # markdown
    run: Callable[..., ScenarioResult]
    params: tuple[Param, ...] = ()
    # The name of an expensive part in RESOURCES (the trained digits model), built once per
    # setting and shared by every scenario that names it; then run(s, resource, **params).
    resource: str | None = None

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


def blocked(messages: list[Problem]) -> ScenarioResult:
    return ScenarioResult({}, None, messages)


# ---------------------------------------------------------------------------------------
# Layers and the two modes
# ---------------------------------------------------------------------------------------


def build_layer(s: LabSettings, kind: str | None = None, *, momentum=SAME, track_running_stats: bool = True, affine: bool | None = None):
    """The normcore layer for ``kind`` (default: the chosen norm) on (N, C, H, W) input.

    InstanceNorm keeps running statistics here (``track_running_stats=True``) unless told
    otherwise: without them it has no eval mode of its own, and nothing to compare.
    """
    kind = kind or s.norm
    m = s.momentum if momentum is SAME else momentum
    affine = s.affine if affine is None else affine
    c = s.channels
    if kind == "batch":
        return BatchNorm2d(c, s.eps, m, affine)
    if kind == "instance":
        return InstanceNorm2d(c, s.eps, m, affine, track_running_stats)
    if kind == "layer":
        return LayerNorm((c, s.spatial, s.spatial), s.eps, elementwise_affine=affine)
    return GroupNorm(s.num_groups, c, s.eps, affine)


def has_running_stats(layer) -> bool:
    return getattr(layer, "running_mean", None) is not None


@torch.no_grad()
def train_step(layer, x: torch.Tensor) -> torch.Tensor:
    """One training-mode forward pass: batch statistics, running statistics updated."""
    layer.train()
    return layer(x)


@torch.no_grad()
def train_output(layer, x: torch.Tensor) -> torch.Tensor:
    """The training-mode output, leaving the running statistics as they were (a peek)."""
    saved = [b.clone() for b in layer.buffers()]
    y = train_step(layer, x)
    for b, old in zip(layer.buffers(), saved):
        b.copy_(old)
    return y


@torch.no_grad()
def eval_output(layer, x: torch.Tensor) -> torch.Tensor:
    layer.eval()
    return layer(x)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def normalize_with(layer, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """What the layer would output in eval if its running statistics were exactly (mean, var)."""
    return batch_norm(x, mean.float(), var.float(), layer.weight, layer.bias, False, 0.0, layer.eps).detach()


def warmup_steps(momentum: float | None) -> int:
    """Warm-up before a measurement: until the initial running values weigh < 1%, i.e.
    (1 − m)^k < 0.01, capped at MAX_WARMUP. A cumulative average (None) forgets them at once
    but averages 50 batches; momentum 0 never moves, so warming up would change nothing."""
    if momentum is None:
        return 50
    k = closed_form_warmup(momentum)
    return 0 if k is None else min(k, MAX_WARMUP)


def closed_form_warmup(momentum: float | None) -> int | None:
    """The first k with (1 − m)^k < 1%; a cumulative average (None) replaces them at step 1."""
    if momentum is None or momentum >= 1.0:
        return 1
    if momentum <= 0.0:
        return None  # never: running statistics that never move
    return math.ceil(math.log(0.01) / math.log1p(-momentum) - 1e-9)  # 1e-9: 0.99 needs 1 step, not 2


def stream(s: LabSettings, steps: int, offset: float = 0.0, scale_factor: float = 1.0, batch_size: int | None = None):
    """The seeded stream of training batches every scenario warms its layers up on."""
    gen = make_generator(s.seed)
    for _ in range(steps):
        yield draw_batch(s, gen, offset, scale_factor, batch_size)


def probe_batch(s: LabSettings, offset: float = 0.0, scale_factor: float = 1.0, batch_size: int | None = None) -> torch.Tensor:
    return draw_batch(s, make_generator(s.seed + PROBE_SEED), offset, scale_factor, batch_size)


def settings_problems(s: LabSettings, training: bool = True) -> tuple[list[Problem], bool]:
    found = problems(s, training)
    return found, any(p.level == "error" for p in found)


def stand_in(s: LabSettings, what: str) -> tuple[LabSettings, list[Problem]]:
    """LayerNorm and GroupNorm keep no running statistics, so a running-statistics scenario
    measures their (zero) gap and then shows BatchNorm, with every other setting kept."""
    if s.norm in ("batch", "instance"):
        return s, []
    errors = [p for p in problems(s) if p.level == "error"]
    if errors:
        note = Problem("info", f"The chart shows BatchNorm with your other settings ({s.norm_label} cannot run, see above).")
        return replace(s, norm="batch"), errors + [note]
    layer = build_layer(s)
    probe = probe_batch(s)
    gap = mean_abs_diff(train_output(layer, probe), eval_output(layer, probe))
    return replace(s, norm="batch"), [Problem("info", (
        f"{s.norm_label} keeps no running statistics, so {what} cannot affect it: its train/eval gap on "
        f"this scenario's probe is {gap:g} (exactly). The chart shows BatchNorm with your other settings."
    ))]


def momentum_label(m: float | None) -> str:
    return "None (cumulative)" if m is None else f"PyTorch {m:g}"


# ---------------------------------------------------------------------------------------
# 1. Warm-up gap
# ---------------------------------------------------------------------------------------


def momentum_variants(s: LabSettings) -> list[tuple[str, float | None]]:
    """The chosen momentum, the same number read in the other convention, None, and Keras's
    default 0.99 typed into PyTorch as-is vs converted. Duplicates keep their first label."""
    out: list[tuple[str, float | None]] = []
    if s.momentum is None:
        out.append(("your setting: None (cumulative)", None))
    else:
        m, k = s.momentum, keras_momentum_from_torch(s.momentum)
        if s.momentum_convention == "keras":
            out += [(f"your setting: Keras {k:g} = PyTorch {m:g}", m), (f"Keras {k:g} typed into PyTorch as-is", k)]
        else:
            out += [(f"your setting: PyTorch {m:g}", m), (f"PyTorch {m:g} typed into Keras as-is (= PyTorch {k:g})", k)]
        out.append(("None: cumulative average", None))
    out += [("Keras default 0.99 typed into PyTorch as-is", 0.99), ("Keras 0.99 converted: PyTorch 0.01", 0.01)]
    seen, unique = set(), []
    for label, m in out:
        if m not in seen:
            seen.add(m)
            unique.append((label, m))
    return unique


def warmup_gap(s: LabSettings, steps: int = 150, stream_shift: float = 2.0, stream_scale: float = 3.0) -> ScenarioResult:
    """A layer sees ``steps`` batches; after each, a fixed probe goes through it in both modes.

    The running statistics start at mean 0 / variance 1; the stream's mean is shifted by
    ``stream_shift`` and its std multiplied by ``stream_scale``, so they have ground to cover.
    """
    s, messages = stand_in(s, "the warm-up")
    messages += [p for p in problems(s) if p.level != "error"]
    if any(p.level == "error" for p in problems(s)):
        return blocked(messages + problems(s))
    steps = _capped_steps(int(steps), s.num_elements * 6, messages)
    variants = momentum_variants(s)
    layers = [build_layer(s, momentum=m) for _, m in variants]
    probe = probe_batch(s, stream_shift, stream_scale)
    y_train = train_output(layers[0], probe)  # batch statistics: the same for every variant
    probe_mean = probe.double().mean(dim=(0, 2, 3))
    probe_var = probe.double().var(dim=(0, 2, 3), correction=0)
    true_mean, true_var = population_stats(s, stream_shift, stream_scale)
    # The floor: the gap left when the running statistics are the exact population's; the
    # probe's own sampling noise keeps any estimate from doing better.
    floor = mean_abs_diff(y_train, normalize_with(layers[0], probe, true_mean, true_var))
    record_every = max(1, steps // 400)
    gaps, channels = [], []
    batches = stream(s, steps, stream_shift, stream_scale)
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            for (label, m), layer in zip(variants, layers):
                rm, rv = layer.running_mean.double(), layer.running_var.double()
                gaps.append({
                    "step": step, "variant": label, "momentum": momentum_label(m),
                    "train_eval_gap": mean_abs_diff(y_train, eval_output(layer, probe)),
                    "mean_gap": float((rm - probe_mean).abs().mean()), "var_gap": float((rv - probe_var).abs().mean()),
                })
            for c in range(min(s.channels, 8)):  # per channel, for the chosen momentum only
                rm, rv = float(layers[0].running_mean[c]), float(layers[0].running_var[c])
                channels.append({
                    "step": step, "channel": c, "running_mean": rm, "running_var": rv,
                    "mean_gap": rm - float(probe_mean[c]), "var_gap": rv - float(probe_var[c]),
                })
        if step < steps:
            x = next(batches)
            for layer in layers:
                train_step(layer, x)
    gap_frame = pd.DataFrame(gaps)
    markers = []
    for label, m in variants:
        g = gap_frame[gap_frame.variant == label]
        below = g[g.train_eval_gap <= floor + 0.01]
        k = closed_form_warmup(m) if not (s.norm == "instance" and m is None) else None
        markers.append({
            "variant": label, "momentum": momentum_label(m),
            "step": int(below.step.iloc[0]) if len(below) else None,
            "train_eval_gap": float(below.train_eval_gap.iloc[0]) if len(below) else None,
            "closed_form_step": k,
        })
    if s.norm == "instance" and any(m is None for _, m in variants):
        messages.append(Problem("info", (
            "InstanceNorm with momentum=None never updates its running statistics (torch passes None on "
            "as 0.0), so that line stays at its starting gap."
        )))
    chosen = markers[0]
    value = f"step {chosen['step']}" if chosen["step"] is not None else f"not within {steps} steps"
    closed = chosen["closed_form_step"]
    return ScenarioResult(
        {"gap": gap_frame, "channels": pd.DataFrame(channels), "markers": pd.DataFrame(markers),
         "floor": pd.DataFrame([{"floor": floor, "threshold": floor + 0.01}])},
        Headline(
            f"Gap within 1% of its floor ({momentum_label(variants[0][1])})", value,
            f"Closed form: the initial values weigh (1 − m)^k < 1% after k = {closed if closed else '∞'} steps. "
            f"Floor (probe noise, exact population statistics): {floor:.3g}.",
        ),
        messages,
    )


def _capped_steps(steps: int, values_per_step: int, messages: list[Problem]) -> int:
    cap = max(1, limits.MAX_TRAIN_EVAL_VALUES // max(values_per_step, 1))
    if steps > cap:
        messages.append(Problem("warning", f"Capped at {cap} steps to keep this demo responsive ({steps} asked)."))
    return min(steps, cap)


# ---------------------------------------------------------------------------------------
# 2. Batch size
# ---------------------------------------------------------------------------------------


def torch_single_sample_error(channels: int) -> str:
    """torch's own message for training BatchNorm on one value per channel, e.g. (1, C)."""
    try:
        torch.nn.functional.batch_norm(torch.zeros(1, channels), None, None, training=True)
    except ValueError as exc:
        return str(exc)
    return ""  # a future torch that accepted it would show no message


def two_sample_table(s: LabSettings) -> pd.DataFrame:
    """Batch size 2 on (2, C) features, affine off: every output is ±1 (a little less with eps)."""
    x = draw_batch(s, make_generator(s.seed), batch_size=2)[:, :, 0, 0]
    layer = BatchNorm1d(s.channels, s.eps, affine=False)
    y = train_step(layer, x)
    half_d = (x[0] - x[1]).double().abs() / 2
    return pd.DataFrame({
        "channel": range(s.channels), "x₁": x[0].tolist(), "x₂": x[1].tolist(),
        "batch mean": layer.last_stats.mean.tolist(), "biased std = |d|/2": half_d.tolist(),
        "y₁": y[0].tolist(), "y₂": y[1].tolist(),
        "closed form |y| = (d/2)/√(d²/4+ε)": (half_d / torch.sqrt(half_d**2 + s.eps)).tolist(),
    })


def batch_sizes(s: LabSettings, kind: str) -> list[int]:
    """1, the powers of two up to 512 and the chosen size, where ``kind`` can train at that size
    (batch size 1 is fine for BatchNorm on a spatial map; on 1×1 maps torch refuses it)."""
    sizes = {1} | {2**k for k in range(1, 10)} | {s.batch_size}
    return sorted(n for n in sizes if not any(p.level == "error" for p in problems(replace(s, norm=kind, batch_size=n))))


def batch_size_gap(s: LabSettings, probes: int = 16) -> ScenarioResult:
    """Gap and train-mode noise vs batch size, after warming up at each size.

    ``noise`` is how much one fixed sample's training-mode output moves when only its
    batch-mates change: the RMS over its elements of the std across ``probes`` batches.
    """
    at_two = problems(replace(s, batch_size=max(s.batch_size, 2)))
    if any(p.level == "error" for p in at_two):
        return blocked([p for p in at_two if p.level == "error"])
    messages = [p for p in problems(s) if p.level == "warning"]
    torch_message = torch_single_sample_error(s.channels)
    messages.append(Problem("error" if s.batch_size * s.spatial**2 == 1 and s.norm == "batch" else "info", (
        f"Batch size 1 on (N, C) features (an MLP): torch raises “{torch_message}”. One value per channel "
        "is its own mean and has variance 0, so BatchNorm would output 0 (then β) for every input, and "
        "learn nothing. Use a batch of ≥ 2 in training; in eval a single sample is fine (running stats)."
    )))
    kinds = [s.norm] + (["batch"] if s.norm != "batch" else [])
    warmup = warmup_steps(s.momentum)
    # Work grows with the sum of the batch sizes; drop the largest ones past the cap.
    per_sample = s.channels * s.spatial**2 * (warmup + 2 * probes)
    rows, skipped = [], []
    for kind in kinds:
        spent = 0
        for n in batch_sizes(s, kind):
            spent += n * per_sample
            if spent > limits.MAX_TRAIN_EVAL_VALUES // len(kinds):
                skipped.append(n)
                continue
            ks = replace(s, norm=kind, batch_size=n)
            layer = build_layer(ks)
            if has_running_stats(layer):
                for x in stream(ks, warmup):
                    train_step(layer, x)
            gen = make_generator(s.seed + PROBE_SEED)
            x0 = draw_batch(ks, gen, batch_size=1)  # the fixed sample
            outputs, gaps = [], []
            for _ in range(probes):
                batch = torch.cat([x0, draw_batch(ks, gen, batch_size=n - 1)]) if n > 1 else x0
                y_train = train_output(layer, batch)
                gaps.append(mean_abs_diff(y_train, eval_output(layer, batch)))
                outputs.append(y_train[0].double())
            noise = float(torch.stack(outputs).var(dim=0, correction=1).mean().sqrt())
            m = n * s.spatial**2
            rows.append({
                "norm": NORM_LABELS[kind], "batch_size": n, "train_eval_gap": sum(gaps) / len(gaps),
                "train_noise": noise,
                # Gaussian closed form for BatchNorm: the batch mean and std each move by
                # ~σ/√M (M = N·H·W values); x0's own values are fixed, hence (N − 1)/N.
                "noise_closed_form": math.sqrt(1.5 * (n - 1) / (n * m)) if kind == "batch" else None,
            })
    if skipped:
        messages.append(Problem("warning", (
            f"Batch sizes from {min(skipped)} up skipped to keep this demo responsive "
            f"({warmup} warm-up steps each at this momentum); a larger momentum or smaller maps allow more."
        )))
    frame = pd.DataFrame(rows)
    mine = frame[(frame.norm == s.norm_label) & (frame.batch_size == s.batch_size)]
    value = f"{float(mine.train_eval_gap.iloc[0]):.3g}" if len(mine) else "cannot train"
    return ScenarioResult(
        {"sizes": frame, "chosen": pd.DataFrame([{"batch_size": s.batch_size}])},
        Headline(f"{s.norm_label} train/eval gap at batch size {s.batch_size}", value,
                 f"Mean |y_train − y_eval| over {probes} probe batches, after {warmup} warm-up steps."),
        messages, two_sample_table(s),
        "Batch size 2, affine off, on (2, C) features: with two values, x − mean = ±d/2 and the biased "
        "std is |d|/2, so every output is ±1 (slightly less: eps sits inside the square root).",
    )


# ---------------------------------------------------------------------------------------
# 3. Which norms have a train/eval difference
# ---------------------------------------------------------------------------------------

NORM_ROWS = (
    ("batch", True, "BatchNorm"),
    ("layer", False, "LayerNorm"),
    ("group", False, "GroupNorm"),
    ("instance", False, "InstanceNorm"),
    ("instance", True, "InstanceNorm, track_running_stats=True"),
)


def norms_side_by_side(s: LabSettings) -> ScenarioResult:
    """BN, LN, GN and IN on the same stream and the same probe, both modes, measured gap."""
    rows, messages = [], []
    for kind, track, label in NORM_ROWS:
        if kind == "group":
            label = f"GroupNorm (G={s.num_groups})"
        ks = replace(s, norm=kind)
        errors = [p for p in problems(ks) if p.level == "error"]
        if errors:
            messages += [Problem("error", f"{label}: {p.message}") for p in errors]
            rows.append({"norm": label, "train_eval_gap": None, "max_abs_gap": None, "exactly_equal": None, "running_stats": track})
            continue
        layer = build_layer(ks, track_running_stats=track)
        if has_running_stats(layer):
            for x in stream(ks, warmup_steps(s.momentum)):
                train_step(layer, x)
        probe = probe_batch(ks)
        y_train, y_eval = train_output(layer, probe), eval_output(layer, probe)
        rows.append({
            "norm": label, "train_eval_gap": mean_abs_diff(y_train, y_eval),
            "max_abs_gap": float((y_train - y_eval).abs().max()), "exactly_equal": bool(torch.equal(y_train, y_eval)),
            "running_stats": has_running_stats(layer),
        })
    frame = pd.DataFrame(rows)
    bn = frame[frame.norm == "BatchNorm"].train_eval_gap.iloc[0]
    return ScenarioResult(
        {"norms": frame}, Headline("BatchNorm train/eval gap", "n/a" if pd.isna(bn) else f"{bn:.3g}",
                                   "LayerNorm, GroupNorm and InstanceNorm without running statistics: exactly 0."),
        messages,
    )


# ---------------------------------------------------------------------------------------
# 4. Non-i.i.d. batches
# ---------------------------------------------------------------------------------------


def cluster_offsets(s: LabSettings, clusters: int, spread: float) -> torch.Tensor:
    """Each cluster (class) shifts every channel by spread·scale·u_k, u_k evenly in [−1, 1]."""
    u = torch.linspace(-1.0, 1.0, clusters, dtype=torch.float64) if clusters > 1 else torch.zeros(1, dtype=torch.float64)
    return spread * s.scale * u


def cluster_batches(s: LabSettings, steps: int, clusters: int, spread: float, run_length: int, order: str):
    """``order="shuffled"``: each sample from a random cluster. ``"one cluster per batch"``:
    ``run_length`` batches in a row from one cluster, then the next (a class-sorted loader)."""
    gen = make_generator(s.seed)
    offsets = cluster_offsets(s, clusters, spread)
    for step in range(steps):
        base = draw_batch(s, gen)
        if order == "shuffled":
            which = torch.randint(clusters, (s.batch_size,), generator=gen)
        else:
            which = torch.full((s.batch_size,), (step // run_length) % clusters)
        yield base + offsets[which].float().view(-1, 1, 1, 1)


def mixture_stats(s: LabSettings, clusters: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form for the equal mixture: mean μ_c + mean(o), variance σ_c² + var(o)."""
    mean, var = population_stats(s)
    o = cluster_offsets(s, clusters, spread)
    return mean + o.mean(), var + o.var(correction=0)


ORDERS = ("shuffled", "one cluster per batch")


def non_iid_batches(s: LabSettings, clusters: int = 4, cluster_spread: float = 2.0, run_length: int = 10, steps: int = 200) -> ScenarioResult:
    s, messages = stand_in(s, "batch composition")
    found, error = settings_problems(s)
    if error:
        return blocked(messages + found)
    messages += found
    clusters, run_length = int(clusters), int(run_length)
    steps = _capped_steps(int(steps), s.num_elements * 6, messages)
    true_mean, true_var = mixture_stats(s, clusters, cluster_spread)
    test_gen = make_generator(s.seed + PROBE_SEED)
    o = cluster_offsets(s, clusters, cluster_spread)
    test = draw_batch(s, test_gen) + o[torch.randint(clusters, (s.batch_size,), generator=test_gen)].float().view(-1, 1, 1, 1)
    rows = []
    for order in ORDERS:
        layer = build_layer(s)
        ideal_test = normalize_with(layer, test, true_mean, true_var)
        for step, x in enumerate(cluster_batches(s, steps, clusters, cluster_spread, run_length, order), start=1):
            y_train = train_step(layer, x)
            batch_mean = x.double().mean(dim=(0, 2, 3))
            rows.append({
                "step": step, "order": order,
                "batch_mean": float(batch_mean[0]), "running_mean": float(layer.running_mean[0]),
                "running_var": float(layer.running_var[0]),
                "eval_error": mean_abs_diff(eval_output(layer, test), ideal_test),
                "train_error": mean_abs_diff(y_train, normalize_with(layer, x, true_mean, true_var)),
            })
    frame = pd.DataFrame(rows)
    last = frame[frame.step > steps - clusters * run_length].groupby("order").eval_error.mean()
    return ScenarioResult(
        {"steps": frame, "truth": pd.DataFrame([{"mean": float(true_mean[0]), "var": float(true_var[0])}])},
        Headline(
            "Eval-mode error, one cluster per batch vs shuffled", f"{last[ORDERS[1]]:.3g} vs {last[ORDERS[0]]:.3g}",
            "Mean |y_eval − y_true| on a shuffled test batch, where y_true normalizes with the exact mixture "
            "statistics; averaged over the last full cycle of clusters.",
        ),
        messages,
    )


# ---------------------------------------------------------------------------------------
# 5. Distribution shift at test time
# ---------------------------------------------------------------------------------------

SHIFT_GRID = tuple(x / 2 for x in range(-8, 9))  # −4σ … 4σ
SHIFT_MODES = ("eval (running statistics)", "train mode (test-time adaptation)")


def test_time_shift(s: LabSettings, shift: float = 1.5, scale_factor: float = 1.0) -> ScenarioResult:
    """Warm up on the training distribution, then test on inputs shifted by ``shift``·σ and
    scaled by ``scale_factor``: eval mode (running statistics) vs training mode (the test
    batch's own statistics: test-time adaptation), against both readings of the shift."""
    s, messages = stand_in(s, "a test-time shift")
    found, error = settings_problems(s)
    if error:
        return blocked(messages + found)
    messages += found
    layer = build_layer(s)
    for x in stream(s, warmup_steps(s.momentum)):
        train_step(layer, x)
    train_mean, train_var = population_stats(s)
    rows = []
    for delta in sorted(set(SHIFT_GRID) | {float(shift)}):
        offset = delta * s.scale
        test = probe_batch(s, offset, scale_factor)
        test_mean, test_var = population_stats(s, offset, scale_factor)
        # Two readings of the same shift: a nuisance (sensor drift: remove it) or real signal
        # (the inputs really are larger: keep it, as normalizing with the training statistics does).
        removed = normalize_with(layer, test, test_mean, test_var)
        kept = normalize_with(layer, test, train_mean, train_var)
        for mode, y in zip(SHIFT_MODES, (eval_output(layer, test), train_output(layer, test))):
            rows.append({
                "shift": delta, "mode": mode, "output_mean": float(y.double().mean()), "output_std": float(y.double().std()),
                "error_if_nuisance": mean_abs_diff(y, removed), "error_if_signal": mean_abs_diff(y, kept),
            })
    frame = pd.DataFrame(rows)
    at = frame[frame["shift"] == float(shift)].set_index("mode")
    return ScenarioResult(
        {"shifts": frame, "chosen": pd.DataFrame([{"shift": float(shift)}])},
        Headline(
            f"Mean output at shift {shift:g}σ: eval vs test-time adaptation",
            f"{at.output_mean[SHIFT_MODES[0]]:.2f} vs {at.output_mean[SHIFT_MODES[1]]:.2f}",
            "Eval mode carries the shift through (right when it is real signal); training mode removes it "
            "(right when it is a nuisance, like a recalibrated sensor).",
        ),
        messages,
    )


# ---------------------------------------------------------------------------------------
# 6. PreciseBN
# ---------------------------------------------------------------------------------------


def drift_batches(s: LabSettings, steps: int, drift: float):
    """Training-time inputs whose mean moves linearly from 0 to drift·σ, as a layer's inputs do
    while the weights before it are still learning."""
    gen = make_generator(s.seed)
    for step in range(1, steps + 1):
        yield draw_batch(s, gen, offset=drift * s.scale * step / steps)


def frozen_batches(s: LabSettings, count: int, drift: float):
    """Fresh batches from the final input distribution (weights frozen after training)."""
    gen = make_generator(s.seed + 1)
    for _ in range(count):
        yield draw_batch(s, gen, offset=drift * s.scale)


def precise_bn(s: LabSettings, drift: float = 3.0, steps: int = 200, max_batches: int = 256) -> ScenarioResult:
    """EMA statistics after a drifting training run vs PreciseBN (Wu & Johnson 2021): freeze the
    weights (the final input distribution) and average the statistics of K fresh batches."""
    s, messages = stand_in(s, "PreciseBN")
    found, error = settings_problems(s)
    if error:
        return blocked(messages + found)
    messages += found
    steps = _capped_steps(int(steps), s.num_elements * 2, messages)
    max_batches = _capped_steps(int(max_batches), s.num_elements * 2, messages)
    layer = build_layer(s)
    for x in drift_batches(s, steps, drift):
        train_step(layer, x)
    final_offset = drift * s.scale
    true_mean, true_var = population_stats(s, final_offset)
    test = probe_batch(s, final_offset)
    ideal = normalize_with(layer, test, true_mean, true_var)
    ema_error = mean_abs_diff(eval_output(layer, test), ideal)
    precise = build_layer(s)
    precise.load_state_dict(layer.state_dict())  # same weights; only the statistics are redone
    rows, grid = [], {min(2**k, max_batches) for k in range(12)} | {max_batches}
    for k, x in enumerate(frozen_batches(s, max_batches, drift), start=1):
        precise.momentum = 1.0 / k  # an equal-weight average of K batches, as fvcore's PreciseBN
        train_step(precise, x)
        if k in grid:
            rows.append({"batches": k, "samples": k * s.batch_size,
                         "precise_error": mean_abs_diff(eval_output(precise, test), ideal), "ema_error": ema_error})
    frame = pd.DataFrame(rows)
    lag = float((true_mean - layer.running_mean.double()).mean())
    m, rate = s.momentum, drift * s.scale / steps
    closed = f"{rate * (1 - m) / m:.3g}" if m else "—"
    messages.append(Problem("info", (
        f"EMA with {momentum_label(m)}: its running mean lags the final inputs by {lag:.3g}. For a steady "
        f"drift of r = {rate:.3g} per step the closed form is r·(1 − m)/m = {closed}; a cumulative average "
        "(None) lags by about half the total drift."
    )))
    return ScenarioResult(
        {"precise": frame, "ema": pd.DataFrame({
            "channel": range(s.channels), "running_mean": layer.running_mean.tolist(), "true_mean": true_mean.tolist(),
        })},
        Headline("Eval-mode error: EMA vs PreciseBN", f"{ema_error:.3g} vs {frame.precise_error.iloc[-1]:.3g}",
                 f"PreciseBN over {max_batches} batches ({max_batches * s.batch_size} samples) with frozen weights."),
        messages,
    )


# ---------------------------------------------------------------------------------------
# 7 and 8. A small network on sklearn's digits: a forgotten model.eval(), frozen BN
# ---------------------------------------------------------------------------------------

DIGITS_WIDTH, DIGITS_DEPTH, DIGITS_LR = 64, 2, 0.05
CNN_WIDTH = 16  # channels: a 64-channel CNN would take seconds to train; 16 learns the digits as well
DIGITS_STEPS = 200  # about this many training steps, whatever the batch size (3 to 15 epochs)
TEST_BATCH_SIZES = tuple(2**k for k in range(9))  # 1 … 256
EVAL_MODES = ("eval mode", "train mode (forgot model.eval())")


@dataclass(frozen=True)
class Resource:
    """An expensive part some scenarios share: ``build(config(s), on_progress)`` runs once per
    distinct config (a page caches it); ``on_progress`` gets the fraction done."""

    config: Callable[[LabSettings], dict]
    build: Callable[..., Any]
    message: str


@dataclass
class DigitsModel:
    """A network trained on sklearn's digits with the chosen norm, or why it could not be."""

    model: Classifier | None
    data: Split
    history: TrainResult | None
    problems: list[Problem]


def digits_config(s: LabSettings) -> dict:
    """Only the settings the trained network depends on (others do not retrain it)."""
    return {"norm": s.norm, "batch_size": s.batch_size, "momentum": s.momentum, "eps": s.eps,
            "num_groups": s.num_groups, "seed": s.seed}


def digits_kind(norm: str) -> str:
    return "cnn" if norm == "instance" else "mlp"  # InstanceNorm needs spatial maps


def digits_epochs(batch_size: int, train_size: int) -> int:
    return min(15, max(3, math.ceil(DIGITS_STEPS / max(train_size // batch_size, 1))))


def train_digits_model(config: dict, on_progress: Callable[[float], None] | None = None) -> DigitsModel:
    """Train the small network once; the scenarios only copy it."""
    data = load_digits_split(config["seed"])
    norm, kind, batch_size = config["norm"], digits_kind(config["norm"]), config["batch_size"]
    width = CNN_WIDTH if kind == "cnn" else DIGITS_WIDTH
    problem = norm_problem(kind, norm, width, config["num_groups"])
    if problem:
        return DigitsModel(None, data, None, [Problem("error", f"The digits network cannot use this norm: {problem}")])
    if batch_size < 2:
        why = (f"torch raises “{torch_single_sample_error(DIGITS_WIDTH)}” in the first BatchNorm layer: one value "
               "per feature is its own mean with variance 0" if norm == "batch" else
               "this lab's training loop needs at least 2 samples per step (BatchNorm cannot train on one)")
        return DigitsModel(None, data, None, [Problem("error", (
            f"Training batch size 1: {why}. Set the batch size to 2 or more to train the digits network."
        ))])
    model = make_model(kind, norm=norm, impl="normcore", width=width, depth=DIGITS_DEPTH,
                       num_groups=config["num_groups"], momentum=config["momentum"], eps=config["eps"], seed=config["seed"])
    batch_size = min(batch_size, len(data.x_train))
    cfg = TrainConfig(epochs=digits_epochs(batch_size, len(data.x_train)), batch_size=batch_size, lr=DIGITS_LR,
                      seed=config["seed"], log_every=5)
    # One thread: for a network this small it is as fast, and it does not fight other users of the CPU.
    history = train(model, data, cfg, threads=1, callback=(lambda p: on_progress(p.fraction)) if on_progress else None)
    found = [] if history.status == "finished" else [Problem("warning", history.message)]
    return DigitsModel(model, data, history, found)


@torch.no_grad()
def accuracy_in_batches(model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy over the full batches of ``batch_size`` (the remainder is left out), in the
    model's current mode: in train mode each batch is normalized with its own statistics."""
    used = (len(x) // batch_size) * batch_size
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, used, batch_size))
    return correct / used


def forgot_eval(s: LabSettings, digits: DigitsModel) -> ScenarioResult:
    """Test accuracy in eval mode and in train mode, for test batch sizes 1 … 256."""
    if digits.model is None:
        return blocked(digits.problems)
    messages, rows = list(digits.problems), []
    x, y = digits.data.x_test, digits.data.y_test
    for b in TEST_BATCH_SIZES:
        for mode in EVAL_MODES:
            model = copy.deepcopy(digits.model)  # train mode moves the running statistics: never the cached copy
            model.train(mode != EVAL_MODES[0])
            try:
                acc, error = accuracy_in_batches(model, x, y, b), ""
            except ValueError as exc:
                acc, error = None, str(exc)
                messages.append(Problem("warning", (
                    f"Test batch size {b} in train mode raises, as it would in torch: {error} A forgotten "
                    "model.eval() in a service that answers one request at a time fails exactly like this."
                )))
            rows.append({"test_batch_size": b, "mode": mode, "accuracy": acc, "samples": (len(x) // b) * b, "error": error})
    frame = pd.DataFrame(rows)
    if not any(has_running_stats(m) for m in digits.model.modules()):
        messages.append(Problem("info", f"A {NORM_LABELS[s.norm]} network keeps no running statistics, so train and eval "
                                        "mode give the same accuracy at every test batch size."))
    at2 = frame[frame.test_batch_size == 2].set_index("mode").accuracy
    return ScenarioResult(
        {"accuracy": frame},
        Headline("Test accuracy at test batch size 2: train mode vs eval mode",
                 f"{at2[EVAL_MODES[1]]:.1%} vs {at2[EVAL_MODES[0]]:.1%}",
                 f"{NORM_LABELS[s.norm]} network trained with batch size {s.batch_size}, "
                 f"{len(x)} test digits."),
        messages,
    )


# -- 8. Frozen BN for fine-tuning -------------------------------------------------------

FINETUNE_MODES = ("frozen statistics (BN in eval mode)", "re-estimated statistics (BN in train mode)")
FINETUNE_SETS = ("shifted test set", "original test set")
FINETUNE_LR = 0.01  # 0.02 lets frozen statistics diverge on strongly shifted inputs


def freeze_norm_statistics(model):
    """Keep every layer with running statistics in eval mode whatever ``model.train()`` says,
    so its statistics stay frozen while γ, β and the weights keep learning. A forward
    pre-hook, so the training loop needs no change; returns the hook's handle."""
    layers = [m for m in model.modules() if has_running_stats(m)]

    def keep_frozen(_module, _inputs):
        for m in layers:
            m.eval()

    return model.register_forward_pre_hook(keep_frozen)


def shifted_digits(data: Split, size: int, brightness: float, contrast: float) -> Split:
    """A small fine-tuning set from a new domain: pixels → contrast · x + brightness."""
    shift = lambda x: x * contrast + brightness  # noqa: E731
    return Split("digits, shifted", shift(data.x_train[:size]), data.y_train[:size], shift(data.x_test), data.y_test, data.num_classes)


def frozen_bn_finetune(s: LabSettings, digits: DigitsModel, finetune_size: int = 100, brightness: float = 0.5,
                       contrast: float = 1.0, epochs: int = 10) -> ScenarioResult:
    """Fine-tune the trained network on a small shifted set, BN frozen vs in train mode."""
    if digits.model is None:
        return blocked(digits.problems)
    messages, stats, acc = list(digits.problems), [], []
    target = shifted_digits(digits.data, int(finetune_size), brightness, contrast)
    batch_size = max(2, min(s.batch_size, len(target.x_train)))
    if batch_size != s.batch_size:
        messages.append(Problem("info", f"Fine-tuning batches hold {batch_size} samples (the set has {len(target.x_train)})."))
    for mode in FINETUNE_MODES:
        model = copy.deepcopy(digits.model)
        if mode == FINETUNE_MODES[0]:
            freeze_norm_statistics(model)
        first_norm = next((m for m in model.modules() if has_running_stats(m)), None)
        # How far the statistics move from where fine-tuning began, averaged over units: a plain
        # average would hide the moves, which go both ways.
        start = None if first_norm is None else (first_norm.running_mean.clone(), first_norm.running_var.clone())

        def record(step: int, epoch: float, test_accuracy: float | None) -> None:
            if first_norm is not None:
                stats.append({"step": step, "mode": mode,
                              "running_mean_change": float((first_norm.running_mean - start[0]).abs().mean()),
                              "running_var_change": float((first_norm.running_var - start[1]).abs().mean())})
            if test_accuracy is not None:
                original = evaluate(model, digits.data.x_test, digits.data.y_test)[1]
                acc.extend([{"epoch": epoch, "mode": mode, "test_set": FINETUNE_SETS[0], "accuracy": test_accuracy},
                            {"epoch": epoch, "mode": mode, "test_set": FINETUNE_SETS[1], "accuracy": original}])

        record(0, 0.0, evaluate(model, target.x_test, target.y_test)[1])
        cfg = TrainConfig(epochs=int(epochs), batch_size=batch_size, lr=FINETUNE_LR, seed=s.seed, log_every=1)
        run = train(model, target, cfg, threads=1, callback=lambda p: record(p.step, p.epoch, p.test_accuracy))
        if run.status != "finished":
            messages.append(Problem("warning", f"{mode}: {run.message}"))
    if not stats:
        messages.append(Problem("info", f"A {NORM_LABELS[s.norm]} network keeps no running statistics: there is nothing "
                                        "to freeze, and both fine-tuning runs are the same."))
    accuracy = pd.DataFrame(acc)
    final = accuracy[accuracy.test_set == FINETUNE_SETS[0]].groupby("mode").accuracy.last()
    return ScenarioResult(
        {"stats": pd.DataFrame(stats, columns=["step", "mode", "running_mean_change", "running_var_change"]), "accuracy": accuracy},
        Headline("Shifted-test accuracy after fine-tuning: frozen vs re-estimated",
                 f"{final[FINETUNE_MODES[0]]:.1%} vs {final[FINETUNE_MODES[1]]:.1%}",
                 f"Before fine-tuning: {acc[0]['accuracy']:.1%}. {len(target.x_train)} shifted training digits, "
                 f"{int(epochs)} epochs, batch size {batch_size}."),
        messages,
    )


RESOURCES = {
    "digits_model": Resource(digits_config, train_digits_model, "Training the digits network (once per setting)…"),
}


# ---------------------------------------------------------------------------------------
# The registry a page loops over
# ---------------------------------------------------------------------------------------

SCENARIOS: list[Scenario] = [
    Scenario(
        "warmup", "Warm-up", "🌡️",
        "A fresh layer's running statistics start at mean 0 and variance 1. It sees a stream of batches; "
        "after each, a fixed **probe** batch goes through it in training mode (its own batch statistics) "
        "and in eval mode (the running ones). The gap closes as the EMA forgets its starting values, at a "
        "rate set by the momentum, until only the probe's own sampling noise is left (the dashed floor). "
        "Momentum means opposite things in PyTorch and Keras: typing Keras's 0.99 into PyTorch as-is "
        "makes the running statistics follow the last batch alone.",
        warmup_gap,
        (Param("steps", "Warm-up steps", 150, 10, 1000, 10),
         Param("stream_shift", "Stream mean shift", 2.0, -10.0, 10.0, 0.5, "Added to every channel's mean."),
         Param("stream_scale", "Stream std ×", 3.0, 0.1, 10.0, 0.1, "Multiplies every channel's std.")),
    ),
    Scenario(
        "batch_size", "Batch size", "📦",
        "Training mode normalizes each sample with statistics of the batch it happens to be in, so the "
        "same sample's output moves when its batch-mates change (**train-mode noise**), and it differs "
        "from eval mode by about as much. Both shrink like 1/√(N·H·W). LayerNorm and GroupNorm use one "
        "sample at a time: no noise and no gap at any batch size.",
        batch_size_gap,
        (Param("probes", "Probe batches per size", 16, 4, 64, 4),),
    ),
    Scenario(
        "norms", "Which norms", "🔍",
        "The same probe through each normalization in both modes. Only a layer with **running "
        "statistics** can differ between train and eval: BatchNorm always keeps them, InstanceNorm only "
        "with `track_running_stats=True`. LayerNorm and GroupNorm compute the same thing in both modes, "
        "so their gap is exactly 0.",
        norms_side_by_side,
    ),
    Scenario(
        "non_iid", "Non-i.i.d.", "🧩",
        "The data has several clusters (think classes) with different means. A shuffled loader mixes "
        "them in every batch; a class-sorted loader serves one cluster at a time. Then each batch's "
        "statistics describe one cluster, training mode removes the cluster offset, and the running "
        "statistics swing with the last cluster seen and miss the between-cluster variance, so eval mode "
        "is wrong on mixed test data. Shuffle your training data.",
        non_iid_batches,
        (Param("clusters", "Clusters", 4, 2, 10, 1),
         Param("cluster_spread", "Cluster spread (σ)", 2.0, 0.0, 10.0, 0.5, "Distance of the outer clusters from the centre."),
         Param("run_length", "Batches in a row per cluster", 10, 1, 50, 1),
         Param("steps", "Training steps", 200, 20, 1000, 10)),
    ),
    Scenario(
        "shift", "Test shift", "🌊",
        "The test inputs are shifted (and scaled) away from what the layer was trained on. **Eval mode** "
        "normalizes with the training statistics, so the shift comes through to the output: right when "
        "the shift is real signal. **Training mode** at test time re-estimates the statistics from the "
        "test batch (test-time adaptation), so the shift is removed: right when it is a nuisance, such "
        "as a recalibrated sensor, and only with large enough test batches.",
        test_time_shift,
        (Param("shift", "Test shift (σ)", 1.5, -4.0, 4.0, 0.5),
         Param("scale_factor", "Test std ×", 1.0, 0.25, 4.0, 0.25)),
    ),
    Scenario(
        "precise_bn", "PreciseBN", "🎯",
        "While the weights before a BatchNorm layer are learning, its inputs drift and the EMA of batch "
        "statistics lags behind them. **PreciseBN** (Wu & Johnson 2021) freezes the weights after "
        "training and recomputes the statistics as a plain average over K fresh batches; a few thousand "
        "samples remove most of the train/eval inconsistency.",
        precise_bn,
        (Param("drift", "Input drift during training (σ)", 3.0, 0.0, 10.0, 0.5),
         Param("steps", "Training steps", 200, 20, 1000, 10),
         Param("max_batches", "PreciseBN batches K (max)", 256, 8, 1024, 8)),
    ),
    Scenario(
        "forgot_eval", "Forgot .eval()", "🙈",
        "A small network trained on scikit-learn's 8×8 digits (offline), with the chosen norm, batch size, "
        "momentum and eps. Tested in **eval mode**, every digit is normalized with the running statistics, "
        "so the accuracy does not depend on how the test set is batched. Tested in **train mode** (a "
        "forgotten `model.eval()`), each test batch is normalized with its own statistics: fine for large "
        "batches, worse for small ones, and an error for a single sample.",
        forgot_eval, resource="digits_model",
    ),
    Scenario(
        "frozen_bn", "Frozen BN", "🧊",
        "Continue training the digits network on a small **shifted** set (brighter, or lower-contrast "
        "digits). With BN **frozen** (its layers kept in eval mode) the running statistics stay those of "
        "the original data while the weights, γ and β adapt; the usual choice when fine-tuning batches are "
        "small. In **train mode** the statistics are re-estimated from the new data (as AdaBN does), which "
        "absorbs a shift of the inputs at once, at the price of noisy statistics from small batches.",
        frozen_bn_finetune,
        (Param("finetune_size", "Fine-tuning set size", 100, 20, 1000, 10),
         Param("brightness", "Brightness added", 0.5, -1.0, 2.0, 0.1),
         Param("contrast", "Contrast ×", 1.0, 0.2, 3.0, 0.1),
         Param("epochs", "Fine-tuning epochs", 10, 1, 30, 1)),
        resource="digits_model",
    ),
]


def scenario(key: str) -> Scenario:
    return next(sc for sc in SCENARIOS if sc.key == key)


def run_scenario(key: str, s: LabSettings, params: dict | None = None, resource: Any = None) -> ScenarioResult:
    """Run one scenario with its defaults overridden by ``params``. A scenario that needs a
    resource builds it here unless the caller passes a cached one."""
    sc = scenario(key)
    kwargs = sc.defaults() | (params or {})
    # One CPU thread: these tensors are small, and on a busy shared machine torch's worker
    # threads waiting for each other cost far more than they save (seen: 0.4 s -> 12 s).
    with placed(Target("cpu", 1)):
        if sc.resource is None:
            return sc.run(s, **kwargs)
        if resource is None:
            spec = RESOURCES[sc.resource]
            resource = spec.build(spec.config(s))
        return sc.run(s, resource, **kwargs)
