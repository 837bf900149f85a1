"""The Transformers page's own controls. Its norm list is a transformer's (LayerNorm, RMSNorm,
Dynamic Tanh, none, BatchNorm over batch × time), not the shared sidebar's; the sidebar's batch
size and eps do apply, and reach the options as ``batch_size`` and ``eps`` (not controls here).

:data:`FIELDS` says each control once (URL names prefixed ``ti_`` at initialization, ``tw_``
for warm-up); :class:`InitOptions` and :class:`WarmupOptions` are the frozen values each tab
runs with (each tab's cache key); :func:`init_problems` and :func:`warmup_problems` say, in
words, what cannot run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema
from normcore.lab.settings import DEFAULTS as SIDEBAR, Problem
from normcore.lab.transformer import INIT_LABELS, INITS
from normcore.lab.transformer_norms import IMPLS, NORMS, TRANSFORMER_NORM_LABELS

NORM_NOTE = ("This page has its own normalization control: the sidebar's list (BatchNorm, LayerNorm, GroupNorm, "
             "InstanceNorm, RMSNorm over an image batch) does not map onto a transformer's, which normalizes each "
             "token's features. The sidebar's batch size and eps do apply.")
LR_CHOICES = (1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)
HEAD_CHOICES = (1, 2, 4, 8)
CLIP_CHOICES = (0.0, 0.5, 1.0, 2.0, 5.0)  # 0: no clipping
IMPL_LABELS = {"normcore": "normcore's layers", "torch": "torch.nn's layers"}
_NORM = dict(choices=NORMS, labels=TRANSFORMER_NORM_LABELS)
_WIDTH_HELP = "d_model: features per token (a multiple of the heads)."

INIT_FIELDS = Schema((
    Field("depth", "Depth (blocks)", 12, "int", "Blocks of the model whose first backward pass is read.", 2,
          limits.MAX_TRANSFORMER_INIT_DEPTH, 1, url="ti_depth", caps=("transformer_init_work",)),
    Field("init", "Init", "xavier", "choice", "Xavier-normal with N(0, 1) embeddings is Xiong et al.'s analysis; "
          "GPT-2's is N(0, 0.02) with residual projections scaled by 1/√(2L).", choices=INITS, labels=INIT_LABELS,
          widget="radio", url="ti_init"),
    Field("norm", "Normalization", "layer", "choice", "The transformer's norm (this page's own list).", url="ti_norm", **_NORM),
    Field("seeds", "Seeds averaged", 1, "int", "Each seed draws new weights and new random tokens.", 1,
          limits.MAX_TRANSFORMER_SEEDS, 1, url="ti_seeds", caps=("transformer_init_work",)),
    Field("width", "Width", 64, "int", _WIDTH_HELP, 8, limits.MAX_TRANSFORMER_WIDTH, 8, url="ti_width",
          caps=("transformer_init_work",)),
    Field("heads", "Heads", 4, "int", "Attention heads.", choices=HEAD_CHOICES, url="ti_heads"),
    Field("context", "Context (tokens)", 64, "int", "Tokens per sequence.", 8, limits.MAX_TRANSFORMER_CONTEXT, 8,
          url="ti_context", caps=("transformer_init_work",)),
    Field("impl", "Layers from", "normcore", "choice", "normcore's or torch.nn's norms: the same numbers.",
          choices=IMPLS, labels=IMPL_LABELS, widget="radio", url="ti_impl"),
))

WARMUP_FIELDS = Schema((
    Field("depth", "Depth (blocks)", 4, "int", "Blocks of each model trained.", 1, limits.MAX_TRANSFORMER_DEPTH, 1,
          url="tw_depth", caps=("transformer_training_work",)),
    Field("steps", "Training steps", 100, "int", "AdamW steps of each of the four runs.", 10,
          limits.MAX_TRANSFORMER_STEPS, 10, url="tw_steps", caps=("transformer_training_work",)),
    Field("lr", "Learning rate", 5e-3, "float", "AdamW's (β 0.9, 0.95), reached after the warm-up.",
          choices=LR_CHOICES, labels=lambda v: f"{v:g}", snap=True, url="tw_lr"),
    Field("warmup_steps", "Warm-up steps", 20, "int", "The learning rate rises linearly from lr/n to lr over "
          "these steps, in the two runs with warm-up.", 1, limits.MAX_TRANSFORMER_STEPS, 1, url="tw_warmup"),
    Field("norm", "Normalization", "layer", "choice", "The transformer's norm (this page's own list).", url="tw_norm", **_NORM),
    Field("clip", "Clip gradients at", 0.0, "float", "The gradients' global norm is clipped to this (0: no clipping).",
          choices=CLIP_CHOICES, labels=lambda v: "off" if v == 0 else f"{v:g}", url="tw_clip"),
    Field("width", "Width", 64, "int", _WIDTH_HELP, 8, limits.MAX_TRANSFORMER_WIDTH, 8, url="tw_width",
          caps=("transformer_training_work",)),
    Field("context", "Context (tokens)", 32, "int", "Characters per training sequence.", 8,
          limits.MAX_TRANSFORMER_CONTEXT, 8, url="tw_context", caps=("transformer_training_work",)),
    Field("seed", "Seed", 0, "int", "Seed of the weights and of the batches (the same for the four runs).",
          0, 2**31 - 1, 1, widget="number_input", url="tw_seed"),
    Field("heads", "Heads", 4, "int", "Attention heads.", choices=HEAD_CHOICES, url="tw_heads"),
    Field("impl", "Layers from", "normcore", "choice", "normcore's or torch.nn's norms: the same numbers.",
          choices=IMPLS, labels=IMPL_LABELS, widget="radio", url="tw_impl"),
))


def _check_sidebar(batch_size: int) -> list[Problem]:
    if batch_size > limits.MAX_TRANSFORMER_BATCH:
        return [Problem("error", f"A batch of {batch_size} sequences is over this page's cap of "
                                 f"{limits.MAX_TRANSFORMER_BATCH}. Lower the batch size in the sidebar.", ("batch_size",))]
    if batch_size < 2:
        return [Problem("error", "This page needs a batch of at least 2 sequences. Raise the batch size in the sidebar.",
                        ("batch_size",))]
    return []


@dataclass(frozen=True)
class InitOptions(QueryOptions):
    """The at-initialization tab's options; defaults are :data:`INIT_FIELDS`' (and the sidebar's)."""

    SCHEMA: ClassVar[Schema] = INIT_FIELDS
    FROM_SIDEBAR: ClassVar[tuple[str, ...]] = ("batch_size", "eps")  # not this page's controls
    depth: int = INIT_FIELDS["depth"].default
    init: str = INIT_FIELDS["init"].default
    norm: str = INIT_FIELDS["norm"].default
    seeds: int = INIT_FIELDS["seeds"].default
    width: int = INIT_FIELDS["width"].default
    heads: int = INIT_FIELDS["heads"].default
    context: int = INIT_FIELDS["context"].default
    impl: str = INIT_FIELDS["impl"].default
    batch_size: int = SIDEBAR.batch_size  # the shared sidebar's
    eps: float | None = None  # the shared sidebar's; None: each norm's torch default


@dataclass(frozen=True)
class WarmupOptions(QueryOptions):
    """The warm-up tab's options; defaults are :data:`WARMUP_FIELDS`' (and the sidebar's)."""

    SCHEMA: ClassVar[Schema] = WARMUP_FIELDS
    FROM_SIDEBAR: ClassVar[tuple[str, ...]] = ("batch_size", "eps")  # not this page's controls
    depth: int = WARMUP_FIELDS["depth"].default
    steps: int = WARMUP_FIELDS["steps"].default
    lr: float = WARMUP_FIELDS["lr"].default
    warmup_steps: int = WARMUP_FIELDS["warmup_steps"].default
    norm: str = WARMUP_FIELDS["norm"].default
    clip: float = WARMUP_FIELDS["clip"].default
    width: int = WARMUP_FIELDS["width"].default
    context: int = WARMUP_FIELDS["context"].default
    seed: int = WARMUP_FIELDS["seed"].default
    heads: int = WARMUP_FIELDS["heads"].default
    impl: str = WARMUP_FIELDS["impl"].default
    batch_size: int = SIDEBAR.batch_size  # the shared sidebar's
    eps: float | None = None  # the shared sidebar's; None: each norm's torch default


def _width_problems(width: int, heads: int) -> list[Problem]:
    if width % heads:
        return [Problem("error", f"The width {width} is not a multiple of the {heads} heads; pick a width that "
                                 f"{heads} divides.", ("width", "heads"))]
    return []


def init_problems(o: InitOptions, *, sweep: bool = False, environ=os.environ) -> list[Problem]:
    """Why the first view (or, with ``sweep``, the depth and init charts) cannot run, in words."""
    from normcore.lab.experiments.transformers.at_init import SWEEP_PLACEMENTS, sweep_depths

    out = _check_sidebar(o.batch_size) + _width_problems(o.width, o.heads)
    passes, depths = (2 * len(SWEEP_PLACEMENTS) * o.seeds, sweep_depths(o.depth)) if sweep else (3 * o.seeds, (o.depth,))
    if message := limits.transformer_init_work(passes, o.batch_size, o.context, sum(depths), o.width, environ):
        out.append(Problem("error", message, ("depth", "seeds", "batch_size", "context", "width")))
    return out


def warmup_problems(o: WarmupOptions, environ=os.environ) -> list[Problem]:
    """Why the warm-up comparison cannot run, in words."""
    out = _check_sidebar(o.batch_size) + _width_problems(o.width, o.heads)
    if o.warmup_steps > o.steps:
        out.append(Problem("error", f"{o.warmup_steps} warm-up steps is more than the {o.steps} training steps; "
                                    "use fewer warm-up steps.", ("warmup_steps", "steps")))
    if message := limits.transformer_training_work(4, o.steps, o.batch_size, o.context, o.depth, o.width, environ):
        out.append(Problem("error", message, ("steps", "batch_size", "context", "depth", "width")))
    return out


__all__ = ["NORM_NOTE", "INIT_FIELDS", "InitOptions", "WARMUP_FIELDS", "WarmupOptions", "init_problems", "warmup_problems"]
