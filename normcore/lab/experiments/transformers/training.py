"""Training a :class:`~normcore.lab.transformer.TinyGPT` on the corpus, next character by next
character, with the lab loop's conventions (``normcore/lab/loop.py``):

* **progress**: ``on_progress(run)`` after every ``log_every`` steps with the :class:`LMRun`
  filled so far (its loss rows and probe rows), so a caller draws live curves;
* **Stop**: ``stop()`` is checked every step; the run then ends with ``status == "stopped"``
  and keeps everything up to that step;
* **divergence**: a NaN or infinite loss ends the run with ``status == "diverged"`` at the exact
  step (losses are checked a window at a time, as the loop does: one device sync per window);
* **caps**: a run longer than ``max_seconds`` of training ends as stopped, saying so;
* **timing**: training steps only (the loop's clock), the device synchronised at each reading.

Batches come from a CPU generator seeded with the config's seed, and the model's weights
from the same seed (``LMRunConfig.build_model``): one config, one result. The final
validation loss averages ``VALIDATION_BATCHES`` fixed batches in eval mode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch
from torch.nn import functional as F

from normcore.lab import devices
from normcore.lab.finished_cache import FinishedCache
from normcore.lab.loop import _check_losses, _TrainClock  # the loop's window check and training-only clock
from normcore.lab.text_corpus import Corpus, load_corpus

from normcore.lab.experiments.transformers.probes import (DYT_COLUMNS, HEAD_COLUMNS, PROBE_COLUMNS, dyt_rows, head_rows,
                                                          probe_rows)
from normcore.lab.experiments.transformers.run_config import LMRunConfig, make_adamw

LOSS_COLUMNS = ("step", "loss", "lr", "wall_s")
VALIDATION_BATCHES = 8
VALIDATION_SEED = 12345  # the validation batches are the same for every run


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of (B, T, V) logits against (B, T) targets, plus ``z_loss``·mean(log²Z)."""
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    if z_loss:
        loss = loss + z_loss * torch.logsumexp(logits.float(), dim=-1).pow(2).mean()
    return loss


@dataclass
class LMRun:
    """A run's record, filled while it trains: loss reports (``LOSS_COLUMNS``), probe rows
    (``PROBE_COLUMNS``, per head ``HEAD_COLUMNS``, per DynamicTanh ``DYT_COLUMNS``), and how it
    ended; ``model``: the trained model, kept only when asked (``train_lm(keep_model=True)``)."""

    config: LMRunConfig
    rows: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)
    heads: list[dict] = field(default_factory=list)
    dyt: list[dict] = field(default_factory=list)
    status: str = "running"  # then finished, stopped or diverged
    message: str = ""
    steps: int = 0
    train_time_s: float = 0.0
    validation_loss: float = math.nan
    model: torch.nn.Module | None = field(default=None, repr=False)

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(LOSS_COLUMNS))

    def probe_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.probes, columns=list(PROBE_COLUMNS))

    def head_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.heads, columns=list(HEAD_COLUMNS))

    def dyt_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.dyt, columns=list(DYT_COLUMNS))

    @property
    def final_loss(self) -> float:
        """The training loss of the last report (the mean over its window of steps)."""
        return float(self.rows[-1]["loss"]) if self.rows else math.nan


def lm_run_cache(max_entries: int = 64) -> FinishedCache:
    """Finished runs by their config's key (stopped or diverged runs are never stored)."""
    return FinishedCache(lambda run: run.config.key, lambda config: config.key, max_entries)


@torch.no_grad()
def validation_loss(model, corpus: Corpus, config: LMRunConfig, dev: torch.device) -> float:
    was_training = model.training
    model.eval()
    try:
        losses = [next_token_loss(model(x.to(dev)), y.to(dev)) for x, y in
                  corpus.batches("validation", VALIDATION_BATCHES, config.batch_size, config.context, VALIDATION_SEED)]
    finally:
        model.train(was_training)
    return float(torch.stack(losses).mean())


def train_lm(config: LMRunConfig, *, corpus: Corpus | None = None, on_progress: Callable[[LMRun], None] | None = None,
             stop: Callable[[], bool] | None = None, max_seconds: float = math.inf, threads: int | None = None,
             keep_model: bool = False) -> LMRun:
    """Train one run of ``config`` and return its :class:`LMRun` (see the module docstring;
    ``keep_model``: the run keeps its trained model, in eval mode).
    An exception from ``on_progress`` (Streamlit interrupting a script) propagates; the
    caller keeps the run it was given."""
    config.check()
    corpus = corpus or load_corpus()
    run = LMRun(config)
    with devices.thread_count(threads):
        model = _train_into(run, corpus, on_progress, stop, max_seconds)
    if keep_model:
        run.model = model.eval()
    return run


def _train_into(run: LMRun, corpus: Corpus, on_progress, stop, max_seconds: float) -> torch.nn.Module:
    config, dev = run.config, torch.device(run.config.device)
    model = config.build_model(corpus.vocab_size).to(dev).train()
    optimizer = make_adamw(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    clock, losses, window_start, step, started = _TrainClock(dev), [], 0, 0, time.perf_counter()
    clock.resume()
    while step < config.steps and run.status == "running":
        if stop is not None and stop():
            run.status, run.message = "stopped", f"Stopped by the user at step {step} of {config.steps}."
        elif time.perf_counter() - started > max_seconds:
            run.status, run.message = "stopped", (f"Stopped at step {step} of {config.steps}: the run passed this "
                                                  f"demo's cap of {max_seconds:g} s. Use fewer steps or a smaller model.")
        else:
            losses.append(_step(model, optimizer, corpus, config, generator, step, dev, run))
            step += 1
        if losses and (step % config.log_every == 0 or step == config.steps or run.status != "running"):
            clock.pause()
            _report(run, losses, window_start, step, clock.total)  # marks a diverged run
            losses, window_start = [], step
            if on_progress is not None and run.status == "running":
                on_progress(run)
            clock.resume()
    clock.pause()
    run.steps = run.steps or step
    run.train_time_s = clock.total
    if run.status == "running":
        run.status = "finished"
        run.validation_loss = validation_loss(model, corpus, config, dev)
    if on_progress is not None:
        on_progress(run)
    return model


def _step(model, optimizer, corpus, config: LMRunConfig, generator, step: int, dev, run: LMRun) -> torch.Tensor:
    """One optimizer step (with the probes' forward and reading on a probe step); its loss."""
    x, y = (t.to(dev) for t in corpus.batch("train", config.batch_size, config.context, generator))
    for group in optimizer.param_groups:
        group["lr"] = config.lr_at(step)
    probing = config.probe_every > 0 and step % config.probe_every == 0
    if probing:
        with model.recording():
            loss = next_token_loss(model(x), y, config.z_loss)
    else:
        loss = next_token_loss(model(x), y, config.z_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if probing:  # the gradients of this step, before clipping and the update
        run.probes.extend(probe_rows(model, step))
        run.heads.extend(head_rows(model, step))
        run.dyt.extend(dyt_rows(model, step))
    if config.clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    optimizer.step()
    return loss.detach()


def _report(run: LMRun, losses: list, start: int, step: int, wall_s: float) -> None:
    """Add the window's report, up to the first loss that was not finite (the run is then marked diverged)."""
    stacked, loss_sum, bad = _check_losses(losses)
    config = run.config
    if bad is not None:
        bad_step = start + bad
        run.rows.append(dict(step=bad_step + 1, loss=float(stacked[bad]), lr=config.lr_at(bad_step), wall_s=wall_s))
        run.status, run.steps = "diverged", bad_step + 1
        run.message = (f"Diverged at step {bad_step + 1}: the training loss became {float(stacked[bad])}, so training "
                       f"was stopped. The learning rate {config.lr:g} is too large for this model without "
                       "more warm-up or clipping; lower it.")
        return
    run.rows.append(dict(step=step, loss=loss_sum / len(losses), lr=config.lr_at(step - 1), wall_s=wall_s))


__all__ = ["LMRun", "LOSS_COLUMNS", "VALIDATION_BATCHES", "lm_run_cache", "next_token_loss", "train_lm", "validation_loss"]
