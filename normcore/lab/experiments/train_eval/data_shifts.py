"""Scenarios 4-6, when the data the statistics were estimated on is not the data they are
used on: class-sorted batches, a shift at test time, and inputs that drift while training
(PreciseBN)."""

from __future__ import annotations

import math

import pandas as pd
import torch

from normcore.lab.populations import draw_batch, make_generator, population_stats
from normcore.lab.settings import LabSettings, Problem
from normcore.lab.experiments.train_eval.batches import (
    PROBE_SEED, capped_steps, build_layer, probe_batch, settings_problems, stand_in, stream,
)
from normcore.lab.experiments.train_eval.modes import (
    eval_output, mean_abs_diff, momentum_label, normalize_with, train_output, train_step, warmup_steps,
)
from normcore.lab.experiments.train_eval.scenario import Headline, ScenarioResult, blocked


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
    steps = capped_steps(int(steps), s.num_elements * 6, messages, "training steps")
    true_mean, true_var = mixture_stats(s, clusters, cluster_spread)
    test_gen = make_generator(s.seed + PROBE_SEED)
    o = cluster_offsets(s, clusters, cluster_spread)
    test = draw_batch(s, test_gen) + o[torch.randint(clusters, (s.batch_size,), generator=test_gen)].float().view(-1, 1, 1, 1)
    rows = []
    for order in ORDERS:
        layer = build_layer(s, track_running_stats=True)
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


def shifted_test_inputs(s: LabSettings, shift: float = 1.5, scale_factor: float = 1.0) -> ScenarioResult:
    """Warm up on the training distribution, then test on inputs shifted by ``shift``·σ and
    scaled by ``scale_factor``: eval mode (running statistics) vs training mode (the test
    batch's own statistics: test-time adaptation), against both readings of the shift."""
    s, messages = stand_in(s, "a test-time shift")
    found, error = settings_problems(s)
    if error:
        return blocked(messages + found)
    messages += found
    layer = build_layer(s, track_running_stats=True)
    for x in stream(s, capped_steps(warmup_steps(s.momentum), s.num_elements, messages, "warm-up steps")):
        train_step(layer, x)
    train_mean, train_var = population_stats(s)
    # Each shift costs a test batch and two passes: thin the grid out for large batches.
    points = capped_steps(len(SHIFT_GRID), s.num_elements * 3, messages, "test shifts")
    grid = SHIFT_GRID[:: math.ceil(len(SHIFT_GRID) / points)]
    rows = []
    for delta in sorted(set(grid) | {float(shift)}):
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
    steps = capped_steps(int(steps), s.num_elements * 2, messages, "training steps")
    max_batches = capped_steps(int(max_batches), s.num_elements * 2, messages, "PreciseBN batches")
    layer = build_layer(s, track_running_stats=True)
    for x in drift_batches(s, steps, drift):
        train_step(layer, x)
    final_offset = drift * s.scale
    true_mean, true_var = population_stats(s, final_offset)
    test = probe_batch(s, final_offset)
    ideal = normalize_with(layer, test, true_mean, true_var)
    ema_error = mean_abs_diff(eval_output(layer, test), ideal)
    precise = build_layer(s, track_running_stats=True)
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
