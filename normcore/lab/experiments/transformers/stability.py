"""Stability: a learning-rate sweep with QK-norm off and on (and, if asked, with z-loss), after
Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training instabilities".

Every run starts from the same weights and sees the same batches (one seed); only the rate and
the variant change. At high rates the attention logits grow until the softmax is one-hot
(Dehghani et al. 2023); normalizing each head's queries and keys bounds them. A sweep is
summarised by its LR sensitivity, :func:`lr_sensitivity`. :func:`run_stability` fills a
:class:`StabilitySweep` run by run (live, Stop keeps the finished runs; finished runs come from
the shared cache on a rerun).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import pandas as pd
import torch

from normcore.lab import devices, limits
from normcore.lab.text_corpus import load_corpus

from normcore.lab.experiments.transformers.live_runs import LiveRuns
from normcore.lab.experiments.transformers.part2_options import QK_LABELS, StabilityOptions
from normcore.lab.experiments.transformers.run_config import LMRunConfig
from normcore.lab.experiments.transformers.training import LMRun, train_lm, validation_loss
from normcore.lab.experiments.transformers.warmup import FINISHED_RUNS, ONE_THREAD

Z_LOSS = 1e-4  # PaLM's coefficient of log²Z
PAPER_FINDING = ("Wortsman et al. 2023 find the same at small scale: without QK-norm the attention logits grow at high "
                 "learning rates and the loss degrades; qk-layernorm lowers the LR sensitivity.")


def lr_sensitivity(final_losses, initial_loss: float) -> float:
    """Wortsman et al.'s LR sensitivity E_η[min(ℓ(η), ℓ₀) − ℓ*]: the mean over the sweep's rates
    of each final loss, capped at the loss at initialization ℓ₀, less the best final loss ℓ*.
    A non-finite final loss (a diverged run) counts as ℓ₀."""
    capped = [min(loss, initial_loss) if math.isfinite(loss) else initial_loss for loss in final_losses]
    if not capped:
        return math.nan
    return sum(capped) / len(capped) - min(capped)


def variants(o: StabilityOptions) -> list[tuple[str, str | None, float]]:
    """(label, qk_norm, z_loss) of each variant, in order."""
    out = [("no QK-norm", None, 0.0), (f"QK-{QK_LABELS[o.qk_norm].split(' ')[0]}", o.qk_norm, 0.0)]
    return out + ([("z-loss, no QK-norm", None, Z_LOSS)] if o.z_loss else [])


def run_config(o: StabilityOptions, lr: float, qk_norm: str | None, z_loss: float) -> LMRunConfig:
    return LMRunConfig(norm="layer", placement="pre", qk_norm=qk_norm, d_model=o.width, n_heads=o.heads,
                       n_layers=o.depth, context=o.context, batch_size=o.batch_size, steps=o.steps, lr=lr,
                       warmup_steps=o.warmup_steps, clip=1.0, z_loss=z_loss, seed=o.seed,
                       log_every=max(1, o.steps // 20), probe_every=max(1, o.steps // 20))


@dataclass
class StabilitySweep(LiveRuns):
    """The sweep as it trains: ``runs`` (label, LMRun) grows run by run; ``initial_loss`` per
    variant (the validation loss of the untrained model). ``status``: running, then finished or
    stopped (by Stop, the time cap, or :meth:`mark_interrupted`)."""

    options: StabilityOptions
    runs: list[tuple[str, LMRun]] = field(default_factory=list)
    initial_loss: dict[str, float] = field(default_factory=dict)

    @property
    def total_runs(self) -> int:
        return len(self.options.rates) * len(variants(self.options))

    def planned_runs(self) -> int:
        return self.total_runs

    def lm_runs(self) -> list[LMRun]:
        return [run for _, run in self.runs]

    def planned_steps(self) -> int:
        return self.total_runs * self.options.steps

    def run_label(self, run: LMRun) -> str:
        label = next(label for label, r in self.runs if r is run)
        return f"{label}, lr {run.config.lr:g}"

    def finished_runs(self) -> list[tuple[str, LMRun]]:
        return [(label, run) for label, run in self.runs if run.status in ("finished", "diverged")]

    def table(self) -> pd.DataFrame:
        """One row per finished (or diverged) run: lr, variant, final validation loss, largest logit."""
        rows = [dict(lr=run.config.lr, variant=label, final_loss=run.validation_loss,
                     max_logit=run.probe_frame()["max_logit"].max(), status=run.status)
                for label, run in self.finished_runs()]
        return pd.DataFrame(rows, columns=["lr", "variant", "final_loss", "max_logit", "status"])

    def logits(self) -> pd.DataFrame:
        """The largest attention logit (over blocks and heads) at each probe step, per run."""
        frames = [run.probe_frame().groupby("step", as_index=False)["max_logit"].max().assign(variant=label,
                  lr=run.config.lr) for label, run in self.runs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "max_logit", "variant", "lr"])

    def entropy(self) -> pd.DataFrame:
        """Each head's attention entropy (nats) at each probe step, per run (block and head from 1)."""
        frames = [run.head_frame().assign(variant=label, lr=run.config.lr) for label, run in self.runs]
        columns = ["step", "block", "head", "max_logit", "entropy", "variant", "lr"]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def sensitivity(self) -> pd.DataFrame:
        """Each variant's LR sensitivity over its finished rates (and ℓ₀, ℓ*)."""
        table, rows = self.table(), []
        for label, _, _ in variants(self.options):
            losses = table.loc[table["variant"] == label, "final_loss"].tolist()
            if losses and label in self.initial_loss:
                l0 = self.initial_loss[label]
                rows.append(dict(variant=label, rates=len(losses), sensitivity=lr_sensitivity(losses, l0),
                                 initial_loss=l0, best_loss=min(min(x, l0) for x in losses if math.isfinite(x))))
        return pd.DataFrame(rows, columns=["variant", "rates", "sensitivity", "initial_loss", "best_loss"])

    def sentence(self) -> str:
        """Whether QK-norm lowered the LR sensitivity here, and by how much, beside the paper."""
        s = self.sensitivity()
        names = [label for label, _, _ in variants(self.options)]
        got = dict(zip(s["variant"], s["sensitivity"]))
        if names[0] not in got or names[1] not in got or len(set(s["rates"])) != 1 or s["rates"].iloc[0] < 2:
            return "The comparison needs every variant at two or more rates. " + PAPER_FINDING
        off, on, n = got[names[0]], got[names[1]], int(s["rates"].iloc[0])
        table = self.table()
        top = table[table["lr"] == table["lr"].max()].set_index("variant")["max_logit"]
        logit = (f" At lr {table['lr'].max():g} the largest attention logit reaches {top[names[0]]:.3g} without "
                 f"QK-norm and {top[names[1]]:.3g} with it.")
        head = f"Over these {n} rates the LR sensitivity is {off:.2f} without QK-norm and {on:.2f} with {names[1]}"
        if on < off * 0.9:
            verdict = f": QK-norm lowered it by {off - on:.2f} ({(off - on) / off:.0%}), as in the paper."
        elif on <= off:
            verdict = ": about the same. Unlike the paper, at these settings QK-norm barely helps; add higher rates."
        else:
            verdict = ": higher with QK-norm, unlike the paper; the tiny model may not reach the instability at these rates."
        extra = ""
        if len(names) > 2 and names[2] in got:
            extra = f" With z-loss and no QK-norm it is {got[names[2]]:.2f} (z-loss targets the output logits, not attention's)."
        return head + verdict + logit + extra + " " + PAPER_FINDING


@lru_cache(maxsize=64)
def initial_loss(config: LMRunConfig) -> float:
    """The validation loss of ``config``'s untrained model (ℓ₀), once per process."""
    corpus = load_corpus()
    model = config.build_model(corpus.vocab_size)
    return validation_loss(model, corpus, config, torch.device(config.device))


def run_stability(o: StabilityOptions, *, on_progress: Callable[[StabilitySweep], None] | None = None,
                  on_run: Callable[[StabilitySweep], None] | None = None, stop: Callable[[], bool] | None = None,
                  cache=FINISHED_RUNS, environ=os.environ, live: StabilitySweep | None = None) -> StabilitySweep:
    """Train (or take from ``cache``) every (rate, variant) run, rate by rate from the lowest;
    ``on_progress(sweep)`` after each report, ``on_run(sweep)`` after each run ends. The whole
    sweep stops at :func:`limits.transformer_sweep_seconds`. ``live``: an empty record to fill."""
    sweep, cap = live if live is not None else StabilitySweep(o), limits.transformer_sweep_seconds(environ)

    def report(_run=None) -> None:
        sweep.elapsed_s = time.perf_counter() - sweep.started
        if on_progress is not None:
            on_progress(sweep)

    with devices.placed(ONE_THREAD):
        for label, qk, z in variants(o):
            sweep.initial_loss[label] = initial_loss(run_config(o, o.learning_rates[0], qk, z))
        for lr in o.learning_rates:
            for label, qk, z in variants(o):
                if not _one_run(sweep, label, run_config(o, lr, qk, z), cache, stop, cap, report):
                    break
                if on_run is not None:
                    on_run(sweep)
            if sweep.status != "running":
                break
    sweep.status = "finished" if sweep.status == "running" else sweep.status
    report()
    return sweep


def _one_run(sweep: StabilitySweep, label: str, config: LMRunConfig, cache, stop, cap: float, report) -> bool:
    """Train one run into the sweep; False when it was stopped (the sweep is then stopped)."""
    finished = cache.get(config) if cache is not None else None
    if finished is not None:
        sweep.runs.append((label, finished))
        return True
    sweep.runs.append((label, LMRun(config)))
    i = len(sweep.runs) - 1

    def progress(run: LMRun) -> None:
        sweep.runs[i] = (label, run)
        report(run)

    trained = train_lm(config, on_progress=progress, stop=stop,
                       max_seconds=max(0.0, cap - (time.perf_counter() - sweep.started)))
    sweep.runs[i] = (label, trained)
    if cache is not None:
        cache.put(trained)
    if trained.status == "stopped":
        sweep.status, sweep.message = "stopped", trained.message
        return False
    return True


__all__ = ["PAPER_FINDING", "StabilitySweep", "Z_LOSS", "initial_loss", "lr_sensitivity", "run_config", "run_stability",
           "variants"]
