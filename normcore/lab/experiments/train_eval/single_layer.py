"""Scenarios 1-3, one layer on a stream of synthetic batches: the warm-up gap, the batch
size, and which normalizations have a train/eval difference at all."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch

from normcore.lab import limits
from normcore.lab.populations import draw_batch, make_generator, population_stats
from normcore.modules import BatchNorm1d
from normcore.lab.settings import LabSettings, Problem, problems
from normcore.lab.norms import NORM_LABELS
from normcore.ema import keras_momentum_from_torch
from normcore.lab.experiments.train_eval.batches import (
    PROBE_SEED, capped_steps, build_layer, probe_batch, stand_in, stream, torch_single_sample_error,
)
from normcore.lab.experiments.train_eval.modes import (
    closed_form_warmup, eval_output, has_running_stats, mean_abs_diff, momentum_label, normalize_with, train_output, train_step, warmup_steps,
)
from normcore.lab.experiments.train_eval.scenario import Headline, ScenarioResult, blocked


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
    steps = capped_steps(int(steps), s.num_elements * 6, messages, "warm-up steps")
    variants = momentum_variants(s)
    layers = [build_layer(s, momentum=m, track_running_stats=True) for _, m in variants]
    probe = probe_batch(s, stream_shift, stream_scale)
    y_train = train_output(layers[0], probe)  # batch statistics: the same for every variant
    true_mean, true_var = population_stats(s, stream_shift, stream_scale)
    # The floor: the gap left when the running statistics are the exact population's; the
    # probe's own sampling noise keeps any estimate from doing better.
    floor = mean_abs_diff(y_train, normalize_with(layers[0], probe, true_mean, true_var))
    gaps, channels = _warm_up_and_record(s, steps, stream_shift, stream_scale, variants, layers, probe, y_train)
    gap_frame = pd.DataFrame(gaps)
    markers = _warmup_markers(s, variants, gap_frame, floor)
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


def _warm_up_and_record(s, steps, stream_shift, stream_scale, variants, layers, probe, y_train):
    """Stream ``steps`` batches through every variant's layer; about 400 times along the way,
    record each variant's train/eval gap on the probe and the chosen one's running statistics
    per channel (against the probe's own)."""
    probe_mean = probe.double().mean(dim=(0, 2, 3))
    probe_var = probe.double().var(dim=(0, 2, 3), correction=0)
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
    return gaps, channels


def _warmup_markers(s, variants, gap_frame: pd.DataFrame, floor: float) -> list[dict]:
    """Per variant: the first recorded step where the gap is within 0.01 of its floor, next
    to the closed form's step count."""
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
    return markers


# ---------------------------------------------------------------------------------------
# 2. Batch size
# ---------------------------------------------------------------------------------------


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


def _gap_at_batch_size(ks: LabSettings, warmup: int, probes: int) -> dict:
    """One row of the batch-size chart: a layer warmed up at this size, then ``probes``
    batches that share one fixed sample (its train-mode noise) and the train/eval gap."""
    n = ks.batch_size
    layer = build_layer(ks, track_running_stats=True)
    if has_running_stats(layer):
        for x in stream(ks, warmup):
            train_step(layer, x)
    gen = make_generator(ks.seed + PROBE_SEED)
    x0 = draw_batch(ks, gen, batch_size=1)  # the fixed sample
    outputs, gaps = [], []
    for _ in range(probes):
        batch = torch.cat([x0, draw_batch(ks, gen, batch_size=n - 1)]) if n > 1 else x0
        y_train = train_output(layer, batch)
        gaps.append(mean_abs_diff(y_train, eval_output(layer, batch)))
        outputs.append(y_train[0].double())
    noise = float(torch.stack(outputs).var(dim=0, correction=1).mean().sqrt())
    m = n * ks.spatial**2
    return {
        "norm": NORM_LABELS[ks.norm], "batch_size": n, "train_eval_gap": sum(gaps) / len(gaps),
        "train_noise": noise,
        # Gaussian closed form for BatchNorm: the batch mean and std each move by
        # ~σ/√M (M = N·H·W values); x0's own values are fixed, hence (N − 1)/N.
        "noise_closed_form": math.sqrt(1.5 * (n - 1) / (n * m)) if ks.norm == "batch" else None,
    }


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
    # Work grows with the sum of the batch sizes; drop the largest ones past the cap. Only
    # layers with running statistics are warmed up.
    rows, skipped, spent = [], [], 0
    for kind in kinds:
        steps_per_sample = (warmup if kind in ("batch", "instance") else 0) + 2 * probes
        for n in batch_sizes(s, kind):
            spent += n * s.channels * s.spatial**2 * steps_per_sample
            if spent > limits.MAX_TRAIN_EVAL_VALUES:
                skipped.append(n)
                continue
            rows.append(_gap_at_batch_size(replace(s, norm=kind, batch_size=n), warmup, probes))
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
    ("rms", False, "RMSNorm"),  # per sample like LayerNorm, by the mean square: no running statistics either
    ("instance", False, "InstanceNorm"),
    ("instance", True, "InstanceNorm, track_running_stats=True"),
)


def norms_side_by_side(s: LabSettings) -> ScenarioResult:
    """BN, LN, GN, RMSNorm and IN on the same stream and the same probe, both modes, measured gap."""
    rows, messages = [], []
    warmup = capped_steps(warmup_steps(s.momentum), s.num_elements * 2, messages, "warm-up steps")
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
            for x in stream(ks, warmup):
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
                                   "LayerNorm, GroupNorm, RMSNorm and InstanceNorm without running statistics: exactly 0."),
        messages,
    )
