"""Part 4: does a normalization smooth the loss landscape? Santurkar et al. 2018's three
measures ("How Does Batch Normalization Help Optimization?", Fig. 4), and two slices.

A small MLP is trained on digits with BatchNorm and without, from the same initial weights
(the norm layers start at γ = 1, β = 0) and with the same learning rate η, by the training
page's loop. Every k-th step, on that step's batch, in train mode, the loop's
``after_backward`` hook takes the gradient g = ∇L(w) and, for each s in :data:`SCALES`, looks
at w − η·s·g (:func:`smoothness`):

* the **loss landscape**: min and max of L(w − η·s·g) over s;
* the **gradient predictiveness**: min and max of ‖g − ∇L(w − η·s·g)‖ over s;
* the **effective β-smoothness**: max over s of ‖g − ∇L(w − η·s·g)‖ / ‖η·s·g‖.

After training, the loss on one fixed batch along the line from the initial weights to the
trained ones, and on a plane through the trained weights (:mod:`.slices`). Along the slices
BatchNorm is evaluated in train mode on that batch: its running statistics belong to the end
point, not to the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from normcore.lab import datasets, devices, limits, loop, models
from normcore.lab.fields import Field, Schema

from normcore.lab.experiments.gradients import slices
from normcore.lab.experiments.gradients.flow import LR_CHOICES, ONE_THREAD, no_denormals
from normcore.lab.experiments.gradients.slices import Params

SCALES = (0.5, 1.0, 2.0, 3.0, 4.0)  # step sizes along the gradient, in units of η
DEPTH, WIDTH, ACTIVATION = 4, 64, "relu"  # the small network
RUNS = ("batch", "none")
SLICE_BATCH = 256
LINE_MARGIN = 0.25  # the 1-D slice runs from α = −0.25 to 1.25: a little before the start and past the end
BAND_COLUMNS = ("loss_min", "loss_max", "grad_change_min", "grad_change_max", "beta")


LANDSCAPE_FIELDS = Schema((  # the Gradients page's part-4 controls (normcore.lab.experiments.gradients.options)
    Field("land_steps", "Training steps", 150, "int", "SGD steps (momentum 0.9, batch 32) of each run.", 10,
          limits.MAX_LANDSCAPE_STEPS, 10, url="g_lsteps", caps=("probe_points",)),
    Field("land_every", "Probe every k steps", 10, "int", f"Each probe evaluates {len(SCALES)} points along the gradient.",
          1, 100, 1, url="g_every", caps=("probe_points",)),
    Field("land_lr", "Learning rate η", 0.1, "float", "The same for both runs, and the unit of the probe steps.",
          choices=LR_CHOICES, snap=True, url="g_llr"),
    Field("resolution", "Slice resolution", 21, "int", "Points per side of the 2-D slice; the 1-D slice has as many from start to end, and a quarter more past each.",
          5, limits.MAX_SLICE_RESOLUTION, 2, url="g_res"),
))


@dataclass(frozen=True)
class LandscapeSettings:
    """What one part-4 comparison depends on (the cache key); defaults from :data:`LANDSCAPE_FIELDS`."""

    steps: int = LANDSCAPE_FIELDS["land_steps"].default
    every: int = LANDSCAPE_FIELDS["land_every"].default
    lr: float = LANDSCAPE_FIELDS["land_lr"].default
    resolution: int = LANDSCAPE_FIELDS["resolution"].default
    seed: int = 0  # not a control: both runs start from the same seeded weights


@dataclass
class LandscapeResult:
    bands: pd.DataFrame  # step, run and the BAND_COLUMNS
    line: pd.DataFrame  # alpha, loss, run
    plane: pd.DataFrame  # a, b, loss, run
    status: dict[str, str]
    settings: LandscapeSettings

    def widths(self) -> pd.DataFrame:
        return band_widths(self.bands)


def smoothness(loss_and_grad: Callable[[Params], tuple[float, Params]], w: Params, g: Params, lr: float,
               scales=SCALES) -> dict[str, float]:
    """Santurkar et al.'s three measures at ``w`` with gradient ``g``, stepping η·s along −g."""
    losses, changes, betas = [], [], []
    for s in scales:
        step = {n: lr * s * t for n, t in g.items()}
        loss, g_moved = loss_and_grad(slices.combine((1.0, w), (-1.0, step)))
        change = slices.norm(slices.combine((1.0, g), (-1.0, g_moved)))
        losses.append(loss)
        changes.append(change)
        betas.append(change / slices.norm(step) if slices.norm(step) > 0 else math.nan)
    return dict(loss_min=min(losses), loss_max=max(losses), grad_change_min=min(changes),
                grad_change_max=max(changes), beta=max(betas))


def band_widths(bands: pd.DataFrame) -> pd.DataFrame:
    """Per run: the mean width (max − min) of the loss band and of the gradient-change band,
    and the mean and largest effective β-smoothness over the probes."""
    b = bands.assign(loss_width=bands.loss_max - bands.loss_min,
                     grad_width=bands.grad_change_max - bands.grad_change_min)
    return b.groupby("run", sort=False).agg(loss_band=("loss_width", "mean"), gradient_band=("grad_width", "mean"),
                                            beta_mean=("beta", "mean"), beta_max=("beta", "max")).reset_index()


def _probe(model: models.Classifier, s: LandscapeSettings, rows: list, run: str):
    """The loop's after_backward hook: every k-th step, the measures on that step's batch."""
    def after_backward(step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        if step % s.every:
            return
        w = slices.params_of(model)
        g = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        rows.append(dict(step=step, run=run, **smoothness(slices.model_loss_and_grad(model, x, y), w, g, s.lr)))
        model.train()
    return after_backward


def compare(s: LandscapeSettings, on_progress: Callable[[float], None] | None = None,
            stop: Callable[[], bool] | None = None) -> LandscapeResult:
    """Train with and without BatchNorm from the same start; probe, then slice each."""
    data = datasets.load_digits_split(seed=s.seed)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(s.seed))[:SLICE_BATCH]
    x, y = data.x_train[pick], data.y_train[pick]
    per_epoch = len(data.x_train) // loop.TrainConfig().batch_size
    config = loop.TrainConfig(epochs=math.ceil(s.steps / per_epoch), lr=s.lr, seed=s.seed, log_every=10)
    bands, lines, planes, status = [], [], [], {}
    with devices.placed(ONE_THREAD), no_denormals():
        for k, run in enumerate(RUNS):
            model = models.make_model("mlp", norm=run, impl="torch", width=WIDTH, depth=DEPTH,
                                      activation=ACTIVATION, seed=s.seed)
            start = slices.params_of(model)
            done = lambda p, k=k: on_progress and on_progress((k + 0.9 * p.step / s.steps) / len(RUNS))  # noqa: E731
            result = loop.train(model, data, config, callback=done, stop=stop, max_steps=s.steps,
                                after_backward=_probe(model, s, bands, run))
            status[run] = result.status if result.status != "finished" else ""
            if result.status == "stopped":
                break
            line, plane = slice_views(model, start, x, y, s)
            lines.append(line.assign(run=run))
            planes.append(plane.assign(run=run))
            if on_progress:
                on_progress((k + 1) / len(RUNS))
    joined = lambda parts, columns: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)  # noqa: E731
    return LandscapeResult(pd.DataFrame(bands, columns=["step", "run", *BAND_COLUMNS]),
                           joined(lines, ["alpha", "loss", "run"]), joined(planes, ["a", "b", "loss", "run"]), status, s)


def slice_views(model: models.Classifier, start: Params, x: torch.Tensor, y: torch.Tensor,
                s: LandscapeSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 1-D slice from ``start`` to the model's weights, and the 2-D slice around them."""
    loss, end = slices.model_loss(model, x, y), slices.params_of(model)
    line = slices.line_slice(loss, start, end, line_alphas(s.resolution))
    d1, d2 = slices.random_direction(end, s.seed + 1), slices.random_direction(end, s.seed + 2)
    plane = slices.plane_slice(loss, end, d1, d2, slices.grid(s.resolution))
    return line, plane


def line_alphas(resolution: int) -> list[float]:
    """``resolution`` points from α = 0 to 1 (both included), continued by LINE_MARGIN each side."""
    intervals = resolution - 1
    extra = math.ceil(LINE_MARGIN * intervals)
    return [k / intervals for k in range(-extra, intervals + extra + 1)]


def band_sentence(widths: pd.DataFrame) -> str:
    """Our measured band widths, with BatchNorm against without, in words."""
    w = widths.set_index("run")
    if not {"batch", "none"} <= set(w.index):
        return "Both runs are needed to compare the bands."
    parts = []
    for column, what, less, more in (("loss_band", "loss band", "narrower", "wider"),
                                     ("gradient_band", "gradient-change band", "narrower", "wider"),
                                     ("beta_mean", "mean effective β-smoothness", "smaller", "larger")):
        bn, plain = float(w.at["batch", column]), float(w.at["none", column])
        ratio = plain / bn if bn > 0 else math.inf
        relation = f"{ratio:.2g}× {less} with BatchNorm" if ratio >= 1 else f"{1 / ratio:.2g}× {more} with BatchNorm"
        parts.append(f"the {what} is {relation} ({bn:.3g} vs {plain:.3g})")
    return "Measured here: " + "; ".join(parts) + "."
