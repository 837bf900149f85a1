"""Controls of the Transformers page's part 2: the learning-rate sweep with and without QK-norm
(URL names ``ts_``) and the comparison of norms (``tn_``). As in ``options.py``, the sidebar's
batch size reaches the options as ``batch_size``; :func:`stability_problems` and
:func:`norm_problems` say in words what cannot run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema
from normcore.lab.settings import DEFAULTS as SIDEBAR, Problem
from normcore.lab.transformer_norms import NORMS, TRANSFORMER_NORM_LABELS

from normcore.lab.experiments.transformers.options import HEAD_CHOICES, _check_sidebar, _width_problems

RATE_CHOICES = ("0.001", "0.003", "0.01", "0.03", "0.1", "0.3")  # a multiselect's items
DEFAULT_RATES = ("0.001", "0.01", "0.03", "0.1", "0.3")
QK_LABELS = {"layer": "LayerNorm per head", "rms": "RMSNorm per head"}
ALPHA_CHOICES = (0.05, 0.1, 0.2, 0.5, 0.8, 1.0, 2.0)
ALPHA_GUIDANCE = ("Zhu et al. 2025: α₀ = 0.5 works for most models; wider LLMs want a smaller α₀, and a smaller one "
                  "in the FFN than in attention (LLaMA 7B: 0.8 attention, 0.2 FFN, 0.2 final).")
NORM_LR_CHOICES = (1e-3, 3e-3, 1e-2, 3e-2)
S_NORMS = ("ln_1", "ln_2")
S_NORM_LABELS = {"ln_1": "before attention (ln_1)", "ln_2": "before the MLP (ln_2)"}

STABILITY_FIELDS = Schema((
    Field("rates", "Learning rates", DEFAULT_RATES, "choices", "Each rate trains once without QK-norm and once "
          "with it (and once with z-loss, if added), from the same weights and batches.", choices=RATE_CHOICES,
          url="ts_rates", caps=("transformer_sweep_work",)),
    Field("qk_norm", "QK-norm", "layer", "choice", "The norm applied to each head's queries and keys.",
          choices=("layer", "rms"), labels=QK_LABELS, widget="radio", url="ts_qk"),
    Field("z_loss", "Add a z-loss variant", False, "bool", "A third run per rate, without QK-norm, with "
          "1e-4·log²Z added to the loss (PaLM's z-loss).", url="ts_zloss", caps=("transformer_sweep_work",)),
    Field("steps", "Steps per run", 200, "int", "AdamW steps (β 0.9, 0.95, clipping at 1) of each run.", 50,
          limits.MAX_TRANSFORMER_STEPS, 50, url="ts_steps", caps=("transformer_sweep_work",)),
    Field("warmup_steps", "Warm-up steps", 20, "int", "Linear warm-up to each run's rate.", 0, 200, 10, url="ts_warmup"),
    Field("depth", "Depth (blocks)", 2, "int", "Blocks of each model.", 1, limits.MAX_TRANSFORMER_DEPTH, 1,
          url="ts_depth", caps=("transformer_sweep_work",)),
    Field("width", "Width", 64, "int", "d_model (a multiple of the heads).", 8, limits.MAX_TRANSFORMER_WIDTH, 8,
          url="ts_width", caps=("transformer_sweep_work",)),
    Field("heads", "Heads", 4, "int", "Attention heads.", choices=HEAD_CHOICES, url="ts_heads"),
    Field("context", "Context (tokens)", 32, "int", "Characters per training sequence.", 8,
          limits.MAX_TRANSFORMER_CONTEXT, 8, url="ts_context", caps=("transformer_sweep_work",)),
    Field("seed", "Seed", 0, "int", "Seed of the weights and batches (the same for every run).", 0, 2**31 - 1, 1,
          widget="number_input", url="ts_seed"),
))

NORM_FIELDS = Schema((
    Field("norms", "Norms trained", NORMS, "choices", "Each is trained in a pre-LN TinyGPT from the same weights "
          "and batches.", choices=NORMS, labels=TRANSFORMER_NORM_LABELS, url="tn_norms",
          caps=("transformer_training_work",)),
    Field("steps", "Steps per run", 120, "int", "AdamW steps (β 0.9, 0.95, clipping at 1) of each run.", 20,
          limits.MAX_TRANSFORMER_STEPS, 20, url="tn_steps", caps=("transformer_training_work",)),
    Field("lr", "Learning rate", 1e-2, "float", "Reached after a 20-step warm-up.", choices=NORM_LR_CHOICES,
          labels=lambda v: f"{v:g}", snap=True, url="tn_lr"),
    Field("dyt_alpha", "DyT's initial α", 0.5, "float", ALPHA_GUIDANCE, choices=ALPHA_CHOICES,
          labels=lambda v: f"{v:g}", snap=True, url="tn_alpha"),
    Field("depth", "Depth (blocks)", 4, "int", "Blocks of each model.", 2, limits.MAX_TRANSFORMER_DEPTH, 1,
          url="tn_depth", caps=("transformer_training_work",)),
    Field("width", "Width", 64, "int", "d_model (a multiple of the heads).", 8, limits.MAX_TRANSFORMER_WIDTH, 8,
          url="tn_width", caps=("transformer_training_work",)),
    Field("context", "Context (tokens)", 32, "int", "Characters per training sequence.", 8,
          limits.MAX_TRANSFORMER_CONTEXT, 8, url="tn_context", caps=("transformer_training_work",)),
    Field("s_block", "S-curve: block", 3, "int", "The block whose LayerNorm is shown (at most the depth). The "
          "first block's looks linear at this scale; later ones bend.", 1, limits.MAX_TRANSFORMER_DEPTH, 1,
          url="tn_sblock"),
    Field("s_norm", "S-curve: which LayerNorm", "ln_1", "choice", "The block's norm before attention or before "
          "the MLP.", choices=S_NORMS, labels=S_NORM_LABELS, widget="radio", url="tn_snorm"),
    Field("seed", "Seed", 0, "int", "Seed of the weights and batches (the same for every run).", 0, 2**31 - 1, 1,
          widget="number_input", url="tn_seed"),
))


@dataclass(frozen=True)
class StabilityOptions(QueryOptions):
    """The Stability tab's options; defaults are :data:`STABILITY_FIELDS`' (and the sidebar's)."""

    SCHEMA: ClassVar[Schema] = STABILITY_FIELDS
    FROM_SIDEBAR: ClassVar[tuple[str, ...]] = ("batch_size",)  # not this page's control
    rates: tuple = STABILITY_FIELDS["rates"].default
    qk_norm: str = STABILITY_FIELDS["qk_norm"].default
    z_loss: bool = STABILITY_FIELDS["z_loss"].default
    steps: int = STABILITY_FIELDS["steps"].default
    warmup_steps: int = STABILITY_FIELDS["warmup_steps"].default
    depth: int = STABILITY_FIELDS["depth"].default
    width: int = STABILITY_FIELDS["width"].default
    heads: int = STABILITY_FIELDS["heads"].default
    context: int = STABILITY_FIELDS["context"].default
    seed: int = STABILITY_FIELDS["seed"].default
    batch_size: int = SIDEBAR.batch_size  # the shared sidebar's

    @property
    def learning_rates(self) -> list[float]:
        return sorted(float(r) for r in self.rates)


@dataclass(frozen=True)
class NormOptions(QueryOptions):
    """The Which-norm tab's options; defaults are :data:`NORM_FIELDS`' (and the sidebar's)."""

    SCHEMA: ClassVar[Schema] = NORM_FIELDS
    FROM_SIDEBAR: ClassVar[tuple[str, ...]] = ("batch_size",)  # not this page's control
    norms: tuple = NORM_FIELDS["norms"].default
    steps: int = NORM_FIELDS["steps"].default
    lr: float = NORM_FIELDS["lr"].default
    dyt_alpha: float = NORM_FIELDS["dyt_alpha"].default
    depth: int = NORM_FIELDS["depth"].default
    width: int = NORM_FIELDS["width"].default
    context: int = NORM_FIELDS["context"].default
    s_block: int = NORM_FIELDS["s_block"].default
    s_norm: str = NORM_FIELDS["s_norm"].default
    seed: int = NORM_FIELDS["seed"].default
    batch_size: int = SIDEBAR.batch_size  # the shared sidebar's
    heads = 4  # not a control here


def stability_problems(o: StabilityOptions, environ=os.environ) -> list[Problem]:
    """Why the sweep cannot run, in words."""
    out = _check_sidebar(o.batch_size) + _width_problems(o.width, o.heads)
    if len(o.rates) < 2:
        out.append(Problem("error", "A sweep needs at least two learning rates; pick more.", ("rates",)))
    if o.warmup_steps > o.steps:
        out.append(Problem("error", f"{o.warmup_steps} warm-up steps is more than the {o.steps} steps per run; "
                                    "use fewer warm-up steps.", ("warmup_steps", "steps")))
    variants = 3 if o.z_loss else 2
    if message := limits.transformer_sweep_work(len(o.rates), variants, o.steps, o.batch_size, o.context, o.depth,
                                                o.width, environ):
        out.append(Problem("error", message, ("rates", "z_loss", "steps", "batch_size", "context", "depth", "width")))
    return out


def norm_problems(o: NormOptions, environ=os.environ) -> list[Problem]:
    """Why the comparison of norms (or the S-curves) cannot run, in words."""
    out = _check_sidebar(o.batch_size) + _width_problems(o.width, o.heads)
    if not o.norms:
        out.append(Problem("error", "Pick at least one norm to train.", ("norms",)))
    if o.s_block > o.depth:
        out.append(Problem("error", f"The S-curve's block {o.s_block} is past the model's {o.depth} blocks; pick a "
                                    f"block up to {o.depth}.", ("s_block", "depth")))
    if message := limits.transformer_training_work(len(o.norms) + 1, o.steps, o.batch_size, o.context, o.depth,
                                                   o.width, environ):
        out.append(Problem("error", message, ("norms", "steps", "batch_size", "context", "depth", "width")))
    return out


__all__ = ["ALPHA_GUIDANCE", "DEFAULT_RATES", "NORM_FIELDS", "NormOptions", "QK_LABELS", "RATE_CHOICES",
           "STABILITY_FIELDS", "StabilityOptions", "norm_problems", "stability_problems"]
