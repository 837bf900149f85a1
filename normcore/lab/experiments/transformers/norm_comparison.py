"""Which norm: LayerNorm, RMSNorm, Dynamic Tanh, none and BatchNorm (over batch × time) in a
pre-LN TinyGPT, from the same weights (every Linear and Embedding) and the same batches.

:func:`run_norms` trains the chosen norms one after the other into a :class:`NormComparison`
(live curves, Stop keeps what finished, finished runs cached); its frames give the validation
loss, DyT's α per layer over training and the share of DyT's inputs in tanh's saturated range.
:func:`step_times` times one training step of normcore's layers against torch.nn's.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import pandas as pd

from normcore.lab import devices, limits
from normcore.lab.text_corpus import load_corpus
from normcore.lab.transformer_norms import TRANSFORMER_NORM_LABELS

from normcore.lab.experiments.transformers.live_runs import LiveRuns
from normcore.lab.experiments.transformers.part2_options import NormOptions
from normcore.lab.experiments.transformers.run_config import LMRunConfig, make_adamw
from normcore.lab.experiments.transformers.training import LMRun, next_token_loss, train_lm
from normcore.lab.experiments.transformers.warmup import FINISHED_RUNS, ONE_THREAD

WARMUP_STEPS = 20


def norm_config(o: NormOptions, norm: str, **changes) -> LMRunConfig:
    config = LMRunConfig(norm=norm, placement="pre", d_model=o.width, n_heads=o.heads, n_layers=o.depth,
                         context=o.context, batch_size=o.batch_size, steps=o.steps, lr=o.lr,
                         warmup_steps=min(WARMUP_STEPS, o.steps), clip=1.0, dyt_alpha=o.dyt_alpha, seed=o.seed,
                         log_every=max(1, o.steps // 20), probe_every=max(1, o.steps // 10))
    return replace(config, **changes)


@dataclass
class NormComparison(LiveRuns):
    """The runs as they train, in ``options.norms`` order. ``status``: running, then finished or stopped."""

    options: NormOptions
    runs: list[LMRun] = field(default_factory=list)

    def planned_steps(self) -> int:
        return len(self.options.norms) * self.options.steps

    def planned_runs(self) -> int:
        return len(self.options.norms)

    def run_label(self, run: LMRun) -> str:
        return TRANSFORMER_NORM_LABELS[run.config.norm]

    def curves(self) -> pd.DataFrame:
        """Tidy training-loss curves: one row per (norm, report)."""
        frames = [run.history().assign(norm=TRANSFORMER_NORM_LABELS[run.config.norm]) for run in self.runs]
        columns = ["norm", "step", "loss", "lr", "wall_s"]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def summary(self) -> pd.DataFrame:
        """One row per run: final validation loss, how it ended, training seconds per step."""
        return pd.DataFrame([dict(norm=TRANSFORMER_NORM_LABELS[r.config.norm], validation_loss=r.validation_loss,
                                  final_train_loss=r.final_loss, status=r.status, steps=r.steps,
                                  ms_per_step=1e3 * r.train_time_s / max(1, r.steps)) for r in self.runs],
                            columns=["norm", "validation_loss", "final_train_loss", "status", "steps", "ms_per_step"])

    def sentence(self) -> str:
        loss = {r.config.norm: r.validation_loss for r in self.runs if r.status == "finished"}
        dyt = self.dyt()
        last = dyt[(dyt["step"] == dyt["step"].max()) & dyt["layer"].str.startswith(f"blocks.{self.options.depth - 1}.")]
        return _sentence(loss, float(last["saturated"].mean()) if len(last) else None)

    def dyt(self) -> pd.DataFrame:
        """DyT's α and the share of its inputs with |αx| > 2, per layer (module name) and probe step."""
        frames = [run.dyt_frame() for run in self.runs if run.config.norm == "dyt"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "layer", "alpha", "saturated"])


def _sentence(loss: dict, saturated: float | None) -> str:
    """What the finished runs show, beside Zhu et al. 2025 (DyT matches LayerNorm at scale)."""
    parts = []
    if "layer" in loss and "dyt" in loss:
        gap = loss["dyt"] - loss["layer"]
        where = "behind" if gap > 0.02 else "ahead of" if gap < -0.02 else "level with"
        parts.append(f"Dynamic Tanh ends {where} LayerNorm here ({loss['dyt']:.3f} against {loss['layer']:.3f})"
                     + (f", with {saturated:.0%} of its last block's inputs saturated (|αx| > 2)" if saturated is not None else "")
                     + ". Zhu et al. 2025 find DyT matching LayerNorm in large models; at small budgets a single-author "
                     "2026 preprint finds it ahead or behind depending on data budget and saturation, so one tiny run "
                     "does not settle it.")
    if "none" in loss and "layer" in loss:
        parts.append(f"Without normalization: {loss['none']:.3f}.")
    if "batch" in loss:
        parts.append(f"BatchNorm's {loss['batch']:.3f} is in eval mode; in training it sees later tokens and other "
                     "sequences (the leaks below), which a causal model must not.")
    return " ".join(parts)


def run_norms(o: NormOptions, *, on_progress: Callable[[NormComparison], None] | None = None,
              stop: Callable[[], bool] | None = None, cache=FINISHED_RUNS, environ=os.environ,
              live: NormComparison | None = None) -> NormComparison:
    """Train (or take from ``cache``) one run per norm; ``on_progress(comparison)`` after each
    report. All runs together stop at :func:`limits.transformer_run_seconds`."""
    comparison, cap = live if live is not None else NormComparison(o), limits.transformer_run_seconds(environ)

    def report(_run=None) -> None:
        comparison.elapsed_s = time.perf_counter() - comparison.started
        if on_progress is not None:
            on_progress(comparison)

    for norm in o.norms:
        config = norm_config(o, norm)
        finished = cache.get(config) if cache is not None else None
        if finished is not None:
            comparison.runs.append(finished)
            continue
        comparison.runs.append(LMRun(config))
        i = len(comparison.runs) - 1
        with devices.placed(ONE_THREAD):
            trained = train_lm(config, on_progress=lambda r, i=i: (comparison.runs.__setitem__(i, r), report()),
                               stop=stop, max_seconds=max(0.0, cap - (time.perf_counter() - comparison.started)))
        comparison.runs[i] = trained
        if cache is not None:
            cache.put(trained)
        if trained.status == "stopped":
            comparison.status, comparison.message = "stopped", trained.message
            break
    comparison.status = "finished" if comparison.status == "running" else comparison.status
    report()
    return comparison


def step_times(config: LMRunConfig, steps: int) -> dict[str, float]:
    """CPU seconds per training step with normcore's layers and torch.nn's (``impl``), the two
    alternated step by step from the same weights and batches; medians, the first two steps left out."""
    corpus = load_corpus()
    runs = {}
    for impl in ("normcore", "torch"):
        model = replace(config, impl=impl).build_model(corpus.vocab_size)
        runs[impl] = (model, make_adamw(model, config), [])
    batches = corpus.batches("train", steps + 2, config.batch_size, config.context, seed=config.seed)
    for i, (x, y) in enumerate(batches):
        for impl, (model, optimizer, times) in runs.items():
            start = time.process_time()
            loss = next_token_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i >= 2:  # the first steps pay one-time costs
                times.append(time.process_time() - start)
    return {impl: statistics.median(times) for impl, (_, _, times) in runs.items()}


def step_time_table(o: NormOptions, steps: int = 12) -> pd.DataFrame:
    """Per norm with a torch.nn counterpart (not DyT or none): ms per step, normcore and torch, and the ratio."""
    rows = []
    with devices.placed(ONE_THREAD):
        for norm in o.norms:
            if norm in ("dyt", "none"):
                continue
            t = step_times(norm_config(o, norm), steps)
            rows.append(dict(norm=TRANSFORMER_NORM_LABELS[norm], normcore_ms=1e3 * t["normcore"],
                             torch_ms=1e3 * t["torch"], ratio=t["normcore"] / t["torch"]))
    return pd.DataFrame(rows, columns=["norm", "normcore_ms", "torch_ms", "ratio"])


__all__ = ["NormComparison", "norm_config", "run_norms", "step_time_table", "step_times"]
