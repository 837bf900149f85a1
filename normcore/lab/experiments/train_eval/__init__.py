"""Train vs eval: where a normalization layer's two modes part ways, and how to close the gap.

In training, BatchNorm normalizes with the statistics of the batch in front of it; in eval,
with running estimates (an EMA of past batches). Every scenario measures how far those two
outputs are apart, and why, on inputs with a known truth (``normcore.lab.populations``):

    train_eval_gap = mean |y_train − y_eval|     (in units of the output's std: γ = 1, β = 0)

Each scenario is a plain function ``(LabSettings, **params) -> ScenarioResult`` with tidy
pandas frames. :data:`SCENARIOS` below lists them with their title, explanation and own
controls (a :class:`~normcore.lab.fields.Schema` whose fields are the keyword arguments, with
work-related bounds from ``normcore.lab.limits``), so a page renders them in a loop;
:func:`run_scenario` checks the parameters against that schema and runs one by key.

* ``common``: the result types, the layer under test, the two modes, seeded batches, caps.
* ``single_layer``: 1 warm-up gap, 2 batch size, 3 which norms.
* ``data_shifts``: 4 non-i.i.d. batches, 5 shift at test time, 6 PreciseBN.
* ``digits``: 7 a forgotten model.eval(), 8 frozen BN for fine-tuning (a trained network).
* ``small_batches``: 9 micro-batches and non-i.i.d. batches: BatchNorm, Batch Renorm, GroupNorm.
"""

from __future__ import annotations

from typing import Any

from normcore.lab import limits
from normcore.lab.devices import Target, placed
from normcore.lab.fields import Schema
from normcore.lab.settings import DEFAULTS, FIELDS, LabSettings
from normcore.lab.experiments.train_eval.batches import PROBE_SEED, SAME, build_layer, probe_batch, stream
from normcore.lab.experiments.train_eval.modes import (
    closed_form_warmup, eval_output, has_running_stats, mean_abs_diff, train_output, train_step, warmup_steps,
)
from normcore.lab.experiments.train_eval.scenario import (
    Headline, Resource, Scenario, ScenarioResult, blocked, number_field,
)
from normcore.lab.experiments.train_eval.data_shifts import (
    ORDERS, SHIFT_MODES, cluster_batches, drift_batches, frozen_batches, mixture_stats, non_iid_batches,
    precise_bn, shifted_test_inputs,
)
from normcore.lab.experiments.train_eval.digits import (
    DIGITS_DEPTH, DIGITS_WIDTH, EVAL_MODES, FINETUNE_LR, FINETUNE_MODES, FINETUNE_SETS, DigitsModel,
    digits_config, forgot_eval, freeze_norm_statistics, frozen_bn_finetune, shifted_digits, train_digits_model,
)
from normcore.lab.experiments.train_eval.small_batches import RENORM_NORMS, small_batches
from normcore.lab.experiments.train_eval.single_layer import batch_size_gap, momentum_variants, norms_side_by_side, two_sample_table, warmup_gap

STEPS_CAP = ("scenario_steps",)  # the combined check (limits.scenario_steps) these steps go through
DIGITS_READS = tuple(digits_config(DEFAULTS))  # the digits network's own widths: no channels or spatial size
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
        Schema((
            number_field("steps", "Warm-up steps", 150, 10, limits.MAX_SCENARIO_STEPS, 10, caps=STEPS_CAP),
            number_field("stream_shift", "Stream mean shift", 2.0, -10.0, 10.0, 0.5, "Added to every channel's mean."),
            number_field("stream_scale", "Stream std ×", 3.0, 0.1, 10.0, 0.1, "Multiplies every channel's std."),
        )),
    ),
    Scenario(
        "batch_size", "Batch size", "📦",
        "Training mode normalizes each sample with statistics of the batch it happens to be in, so the "
        "same sample's output moves when its batch-mates change (**train-mode noise**), and it differs "
        "from eval mode by about as much. Both shrink like 1/√(N·H·W). LayerNorm, GroupNorm and RMSNorm use "
        "one sample at a time: no noise and no gap at any batch size.",
        batch_size_gap,
        Schema((number_field("probes", "Probe batches per size", 16, 4, limits.MAX_PROBES, 4),)),
        reads=tuple(n for n in FIELDS if n != "batch_size"),  # it sweeps the batch size itself
    ),
    Scenario(
        "norms", "Which norms", "🔍",
        "The same probe through each normalization in both modes. Only a layer with **running "
        "statistics** can differ between train and eval: BatchNorm always keeps them, InstanceNorm only "
        "with `track_running_stats=True`. LayerNorm, GroupNorm and RMSNorm compute the same thing in both "
        "modes, so their gap is exactly 0.",
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
        Schema((
            number_field("clusters", "Clusters", 4, 2, 10, 1),
            number_field("cluster_spread", "Cluster spread (σ)", 2.0, 0.0, 10.0, 0.5,
                         "Distance of the outer clusters from the centre."),
            number_field("run_length", "Batches in a row per cluster", 10, 1, 50, 1),
            number_field("steps", "Training steps", 200, 20, limits.MAX_SCENARIO_STEPS, 10, caps=STEPS_CAP),
        )),
    ),
    Scenario(
        "shift", "Test shift", "🌊",
        "The test inputs are shifted (and scaled) away from what the layer was trained on. **Eval mode** "
        "normalizes with the training statistics, so the shift comes through to the output: right when "
        "the shift is real signal. **Training mode** at test time re-estimates the statistics from the "
        "test batch (test-time adaptation), so the shift is removed: right when it is a nuisance, such "
        "as a recalibrated sensor, and only with large enough test batches.",
        shifted_test_inputs,
        Schema((
            number_field("shift", "Test shift (σ)", 1.5, -4.0, 4.0, 0.5),
            number_field("scale_factor", "Test std ×", 1.0, 0.25, 4.0, 0.25),
        )),
    ),
    Scenario(
        "precise_bn", "PreciseBN", "🎯",
        "While the weights before a BatchNorm layer are learning, its inputs drift and the EMA of batch "
        "statistics lags behind them. **PreciseBN** (Wu & Johnson 2021) freezes the weights after "
        "training and recomputes the statistics as a plain average over K fresh batches; a few thousand "
        "samples remove most of the train/eval inconsistency.",
        precise_bn,
        Schema((
            number_field("drift", "Input drift during training (σ)", 3.0, 0.0, 10.0, 0.5),
            number_field("steps", "Training steps", 200, 20, limits.MAX_SCENARIO_STEPS, 10, caps=STEPS_CAP),
            number_field("max_batches", "PreciseBN batches K (max)", 256, 8, limits.MAX_PRECISE_BN_BATCHES, 8,
                         caps=STEPS_CAP),
        )),
    ),
    Scenario(
        "forgot_eval", "Forgot .eval()", "🙈",
        "A small network trained on scikit-learn's 8×8 digits (offline), with the chosen norm, batch size, "
        "momentum and eps. Tested in **eval mode**, every digit is normalized with the running statistics, "
        "so the accuracy does not depend on how the test set is batched. Tested in **train mode** (a "
        "forgotten `model.eval()`), each test batch is normalized with its own statistics: fine for large "
        "batches, worse for small ones, and an error for a single sample.",
        forgot_eval, resource="digits_model", reads=DIGITS_READS,
    ),
    Scenario(
        "frozen_bn", "Frozen BN", "🧊",
        "Continue training the digits network on a small **shifted** set (brighter, or lower-contrast "
        "digits). With BN **frozen** (its layers kept in eval mode) the running statistics stay those of "
        "the original data while the weights, γ and β adapt; the usual choice when fine-tuning batches are "
        "small. In **train mode** the statistics are re-estimated from the new data (as AdaBN does), which "
        "absorbs a shift of the inputs at once, at the price of noisy statistics from small batches, and "
        "of the original data (dashed lines), which the statistics no longer describe.",
        frozen_bn_finetune,
        Schema((
            number_field("finetune_size", "Fine-tuning set size", 100, 20, limits.MAX_FINETUNE_SAMPLES, 10),
            number_field("brightness", "Brightness added", 0.5, -1.0, 2.0, 0.1),
            number_field("contrast", "Contrast ×", 1.0, 0.2, 3.0, 0.1),
            number_field("epochs", "Fine-tuning epochs", 10, 1, limits.MAX_FINETUNE_EPOCHS, 1),
        )),
        resource="digits_model", reads=DIGITS_READS,
    ),
    Scenario(
        "renorm", "Small batches", "🔬",
        "The digits network trained with **BatchNorm**, **Batch Renormalization** (Ioffe 2017) and **GroupNorm** "
        "at micro-batches of 2 to 16, and with **non-i.i.d.** micro-batches (16 digits of 2 classes each). "
        "BatchNorm trains on each micro-batch's own statistics and is tested with running ones: the smaller "
        "or less representative the batch, the larger the **train/eval gap** (mean |logits in train mode − "
        "eval mode|, in units of their std). Batch Renorm corrects the batch statistics toward the running "
        "ones, x̂·r + d, with r and d clipped by r_max (1 → 3) and d_max (0 → 5) on the paper's schedule, "
        "scaled to this run (`normcore.renorm_schedule`). At micro-batch 2, r centres near 1/√2: the biased "
        "std of two values, corrected toward the population's. GroupNorm has no batch statistics at all.",
        small_batches,
        Schema((number_field("steps", "Training steps per network", 200, 20, limits.MAX_SCENARIO_STEPS, 10, caps=STEPS_CAP),)),
        reads=("seed",),
    ),
]


def scenario(key: str) -> Scenario:
    return next(sc for sc in SCENARIOS if sc.key == key)


def checked_params(sc: Scenario, params: dict) -> dict:
    """``params`` checked against the scenario's fields (type and range), or a ValueError that
    names each wrong one."""
    values, errors = sc.params.check(params)
    errors += [f"{name}: not a control of {sc.title!r}." for name in params if name not in sc.params]
    if errors:
        raise ValueError(" ".join(errors))
    return values


def run_scenario(key: str, s: LabSettings, params: dict | None = None, resource: Any = None) -> ScenarioResult:
    """Run one scenario with its defaults overridden by ``params``. A scenario that needs a
    resource builds it here unless the caller passes a cached one."""
    sc = scenario(key)
    kwargs = sc.defaults() | checked_params(sc, params or {})
    # One CPU thread: these tensors are small, and on a busy shared machine torch's worker
    # threads waiting for each other cost far more than they save (seen: 0.4 s -> 12 s).
    with placed(Target("cpu", 1)):
        if sc.resource is None:
            return sc.run(s, **kwargs)
        if resource is None:
            spec = RESOURCES[sc.resource]
            resource = spec.build(spec.config(s))
        return sc.run(s, resource, **kwargs)


__all__ = [
    "RENORM_NORMS", "small_batches", "DIGITS_DEPTH", "DIGITS_WIDTH", "EVAL_MODES", "FINETUNE_LR", "FINETUNE_MODES", "FINETUNE_SETS", "ORDERS",
    "PROBE_SEED", "RESOURCES", "SAME", "SCENARIOS", "SHIFT_MODES", "DigitsModel", "Headline", "Resource",
    "Scenario", "ScenarioResult", "batch_size_gap", "blocked", "build_layer", "checked_params",
    "closed_form_warmup", "cluster_batches", "digits_config", "drift_batches", "eval_output", "forgot_eval",
    "freeze_norm_statistics", "frozen_batches", "frozen_bn_finetune", "has_running_stats", "mean_abs_diff",
    "mixture_stats", "momentum_variants", "non_iid_batches", "norms_side_by_side", "number_field", "precise_bn",
    "probe_batch", "run_scenario", "scenario", "shifted_digits", "shifted_test_inputs", "stream",
    "train_digits_model", "train_output", "train_step", "two_sample_table", "warmup_gap", "warmup_steps",
]
