"""Training comparisons behind the training page: normalizations × devices, and two sweeps.

An experiment is a :class:`RunConfig` (everything a user chose, JSON round-trippable) in one
of three modes:

* ``compare``: every chosen normalization on every chosen device, with live curves;
* ``batch_sweep``: BN, GN, LN and no norm at batch sizes 2…256, final test accuracy vs
  batch size: Wu & He 2018 Figure 1 at small scale. Below batch 32 the learning rate is
  scaled linearly with the batch (lr · N/32, as the GroupNorm paper does); from 32 up it
  stays as chosen (a linearly scaled 8× step diverges without warm-up), and every point
  trains at least ``MIN_SWEEP_STEPS`` steps so large batches are not simply under-trained;
* ``lr_sweep``: with and without BN over learning rates 0.001…10, and the largest one that
  still trains.

Each mode expands into a list of :class:`Variant` runs (:func:`plan`). :func:`run` trains them
in order and records everything into a :class:`LiveRun` *as it happens*, so a caller that is
interrupted mid-run (the dashboard's Stop button reruns the script) still holds the partial
history. Frames are tidy pandas; nothing here knows about streamlit.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable

import pandas as pd

from .. import datasets, devices, limits, models
from ..settings import EPS_CHOICES, Problem
from ..loop import OPTIMIZERS, PROGRESS_COLUMNS, Progress, TrainConfig, TrainResult, train

MODES = ("compare", "batch_sweep", "lr_sweep")
MODE_LABELS = {
    "compare": "Compare normalizations × devices",
    "batch_sweep": "Batch-size sweep (GroupNorm paper, Fig. 1)",
    "lr_sweep": "Learning-rate sweep (with vs without BN)",
}
BATCH_SWEEP_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
BATCH_SWEEP_NORMS = ("batch", "group", "layer", "none")
BATCH_SWEEP_REFERENCE = 32  # the batch size at which the sweep uses the chosen learning rate
# With the epochs fixed, a batch of 256 gets 5 steps an epoch and ends under-trained whatever
# its normalization; each sweep point trains at least this many steps (more epochs) instead.
MIN_SWEEP_STEPS = 100
# Finer where the limits lie: on digits the MLP without BN stops training near 0.3, with BN near 0.7.
LR_SWEEP_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0)
LR_SWEEP_NORMS = ("batch", "none")
MODE_NOTES = {
    "compare": ("The input of one nonlinearity over the training batches. With BN its distribution stays put (BN "
                "re-centres and re-scales it every step); without, it is free to drift as the weights change. "
                "Ioffe & Szegedy saw clear drift with sigmoids over 50k steps: try Activation = sigmoid and more epochs."),
    "batch_sweep": (f"Left: this lab, learning rate lr·min(1, N/{BATCH_SWEEP_REFERENCE}) and at least {MIN_SWEEP_STEPS} steps per point. Right: the "
                    "paper's numbers (error, lower is better): BN degrades at small batches, GN does not."),
    "lr_sweep": "“Still trains”: no NaN/inf loss and test accuracy at least halfway from chance to 100 %.",
}
CONFIG_KIND = "normcore-training-run"
CONFIG_VERSION = 1
REPORTS_PER_VARIANT = 20  # progress reports (curve points) per variant, about; each costs ~0.15 ms (benchmarks.training)
LIVE_DRAW_EVERY_S = 0.5  # redraw live charts at most this often...
LIVE_DRAW_SHARE = 0.05  # ...and spend at most this share of the run's time drawing them
PROGRESS_EVERY_S = 0.1  # a progress bar between redraws: at most this often


# ---------------------------------------------------------------------------------------
# The configuration: fields, ranges (the caps), JSON in and out
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    mode: str = "compare"
    dataset: str = "digits"
    separation: float = 3.0  # clusters only: distance between class means, in noise stds
    model: str = "mlp"
    width: int = 64
    depth: int = 2
    activation: str = "relu"
    probe_layer: int = 2  # 1-based hidden block whose pre-activation percentiles are tracked
    norms: tuple[str, ...] = ("none", "batch", "layer", "group")
    impl: str = "normcore"
    batch_size: int = 32
    momentum: float | None = 0.1  # BatchNorm's, PyTorch convention; None = cumulative average
    eps: float = 1e-5
    num_groups: int = 2
    lr: float = 0.1
    epochs: int = 3
    optimizer: str = "sgd"
    seed: int = 0
    devices: tuple[str, ...] = ("cpu",)

    def values(self) -> dict:
        """Every field, with lists for the tuples: what JSON and widgets hold."""
        return asdict(self) | {"norms": list(self.norms), "devices": list(self.devices)}

    def to_json(self) -> str:
        return json.dumps({"kind": CONFIG_KIND, "version": CONFIG_VERSION} | self.values(), indent=2)

    @property
    def key(self) -> str:
        """A canonical string naming this experiment (the result cache's key)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Spec:
    """How one field is checked: a type, an inclusive range (the caps) or a set of choices."""

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    nullable: bool = False


SPECS: dict[str, Spec] = {
    "mode": Spec(str, choices=MODES),
    "dataset": Spec(str, choices=datasets.DATASETS),
    "separation": Spec(float, 0.0, 20.0),
    "model": Spec(str, choices=models.MODEL_KINDS),
    "width": Spec(int, 1, limits.MAX_WIDTH),
    "depth": Spec(int, 1, limits.MAX_DEPTH),
    "activation": Spec(str, choices=tuple(models.ACTIVATIONS)),
    "probe_layer": Spec(int, 1, limits.MAX_DEPTH),
    "norms": Spec(tuple, choices=models.NORMS),
    "impl": Spec(str, choices=models.IMPLS),
    "batch_size": Spec(int, 2, limits.MAX_TRAIN_BATCH_SIZE),
    "momentum": Spec(float, 0.0, 1.0, nullable=True),
    "eps": Spec(float, choices=EPS_CHOICES),  # the shared control's log-scale values
    "num_groups": Spec(int, 1, limits.MAX_CHANNELS),  # the shared control's range
    "lr": Spec(float, 1e-6, 100.0),
    "epochs": Spec(int, 1, limits.MAX_EPOCHS),
    "optimizer": Spec(str, choices=OPTIMIZERS),
    "seed": Spec(int, 0, 2**31 - 1),
    "devices": Spec(tuple),
}


class ConfigError(ValueError):
    """A configuration that cannot be used; ``messages`` says what is wrong, field by field."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


def _check_value(name: str, value, spec: Spec):
    """The value converted to the field's type, or a ValueError saying what was expected."""
    if value is None:
        if spec.nullable:
            return None
        raise ValueError("must not be null")
    if spec.kind is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of names")
        if not value:
            raise ValueError("must name at least one")
        if len(set(value)) != len(value):
            raise ValueError("lists a name twice")
        if len(value) > limits.MAX_VARIANTS:
            raise ValueError(f"lists {len(value)} names; at most {limits.MAX_VARIANTS}")
        if name == "devices":
            offered = [t.key for t in devices.all_targets()]
            keys = [devices.parse_target(v).key for v in value]  # says why a device is unusable here
            bad = [k for k in keys if k not in offered]
            if bad:
                raise ValueError(f"{', '.join(map(repr, bad))} is not offered on this machine; choose from {', '.join(offered)}")
            return tuple(keys)
        bad = [v for v in value if v not in spec.choices]
        if bad:
            raise ValueError(f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(spec.choices)}")
        return tuple(value)
    if spec.kind is str:
        if not isinstance(value, str) or value not in spec.choices:
            raise ValueError(f"expected one of {', '.join(spec.choices)}, got {value!r}")
        return value
    # Numbers. JSON true/false are ints in Python: refuse them explicitly.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}"[:120])
    if spec.kind is int and not (isinstance(value, int) or float(value).is_integer()):
        raise ValueError(f"expected a whole number, got {value!r}")
    number = spec.kind(value)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("expected a finite number")
    if spec.choices is not None:  # eps: one of the control's values (up to float rounding)
        match = [c for c in spec.choices if math.isclose(c, number, rel_tol=1e-9)]
        if not match:
            raise ValueError(f"expected one of {', '.join(f'{c:g}' for c in spec.choices)}, got {number:g}")
        return match[0]
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{number:g} is outside the allowed range {spec.low:g} to {spec.high:g} (this demo's cap)")
    return number


def from_dict(body) -> RunConfig:
    """A :class:`RunConfig` from a parsed JSON object. Missing fields take their defaults;
    every wrong field is reported at once (:class:`ConfigError`)."""
    if not isinstance(body, dict):
        raise ConfigError([f"The file must hold a JSON object ({{...}}), not a {type(body).__name__}."])
    errors = []
    if body.get("kind", CONFIG_KIND) != CONFIG_KIND:
        errors.append(f"kind: this is not a training-run configuration (kind {body.get('kind')!r}, expected {CONFIG_KIND!r}).")
    if body.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        errors.append(f"version: expected {CONFIG_VERSION}, got {body.get('version')!r}.")
    unknown = sorted(set(body) - set(SPECS) - {"kind", "version"})
    if unknown:
        errors.append(f"Unknown field(s): {', '.join(map(repr, unknown))[:300]}. Known fields: {', '.join(SPECS)}.")
    values = {}
    for name, spec in SPECS.items():
        if name in body:
            try:
                values[name] = _check_value(name, body[name], spec)
            except ValueError as exc:
                errors.append(f"{name}: {str(exc).rstrip('.')}.")
    if errors:
        raise ConfigError(errors)
    return RunConfig(**values)


# The dashboard's shared controls (normcore.lab.settings, in the sidebar and the URL under their
# own names) set these fields; the training page's own controls set the rest.
SHARED_FIELDS = ("batch_size", "momentum", "eps", "num_groups", "seed")
PAGE_FIELDS = tuple(name for name in SPECS if name not in SHARED_FIELDS)


def page_defaults() -> dict:
    """The page's own fields at their defaults (lists, as widgets hold them); the devices are
    this machine's default comparison."""
    values = RunConfig().values()
    return {name: values[name] for name in PAGE_FIELDS} | {"devices": [t.key for t in devices.default_targets()]}


# Sharing a comparison by link: the page's own fields as URL parameters, by their field names
# except these two (shorter, and clear of the shared controls' names).
URL_NAMES = {name: {"dataset": "data", "probe_layer": "probe"}.get(name, name) for name in PAGE_FIELDS}


def to_query(values: dict, defaults: dict) -> dict[str, str]:
    """The fields of ``values`` that differ from ``defaults``, as URL parameters (lists
    comma-separated): a short link that reproduces the page."""
    out = {}
    for name, url in URL_NAMES.items():
        value, default = values[name], defaults[name]
        if isinstance(value, (list, tuple)):
            value, default = list(value), list(default)
        if value != default:
            out[url] = ",".join(value) if isinstance(value, list) else str(value)
    return out


def from_query(params: dict) -> tuple[dict, list[str]]:
    """Fields from URL parameters, each checked as a loaded file's would be (types, choices,
    this demo's caps), in widget form (lists, as :func:`page_defaults`). A bad value is left
    out, with a message saying which and why."""
    values, messages = {}, []
    for name, url in URL_NAMES.items():
        if url not in params:
            continue
        raw = params[url]
        raw = str(raw[-1] if isinstance(raw, (list, tuple)) else raw).strip()
        spec = SPECS[name]
        try:
            if spec.kind is tuple:
                value = [v.strip() for v in raw.split(",") if v.strip()]
            elif spec.kind is str:
                value = raw
            else:
                try:
                    value = float(raw)
                except ValueError:
                    raise ValueError(f"expected a number, got {raw!r}"[:120]) from None
            checked = _check_value(name, value, spec)
            values[name] = list(checked) if isinstance(checked, tuple) else checked
        except ValueError as exc:
            messages.append(f"Ignored URL parameter {url}={raw[:60]!r}: {str(exc).rstrip('.')}. Using the default.")
    return values, messages


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def from_json(data: bytes | str) -> RunConfig:
    """A :class:`RunConfig` from an uploaded file's bytes: size-checked, parsed as JSON (never
    pickle or eval), then validated field by field."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.MAX_CONFIG_BYTES:
        raise ConfigError([f"The file is {size:,} bytes; a run configuration is at most {limits.MAX_CONFIG_BYTES:,} bytes."])
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        body = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError([f"The file is not valid JSON: {exc}."[:300]]) from None
    return from_dict(body)


# ---------------------------------------------------------------------------------------
# What to train: the variants of a mode, and every problem with the configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One training run of an experiment."""

    norm: str
    device: str  # a devices.Target key
    batch_size: int
    lr: float
    epochs: int
    label: str

    def steps(self, train_size: int) -> int:
        return train_size // self.batch_size * self.epochs

    @property
    def target(self) -> devices.Target:
        return devices.parse_target(self.device)


def _train_size(c: RunConfig) -> int:
    return 2000 if c.dataset == "clusters" else 1347


def _variants(c: RunConfig) -> list[Variant]:
    device, n_train = c.devices[0], _train_size(c)
    if c.mode == "batch_sweep":
        epochs = {b: max(c.epochs, math.ceil(MIN_SWEEP_STEPS / max(1, n_train // b))) for b in BATCH_SWEEP_SIZES}
        return [Variant(n, device, b, c.lr * min(1.0, b / BATCH_SWEEP_REFERENCE), epochs[b], f"{models.NORM_LABELS[n]} · N={b}")
                for n in BATCH_SWEEP_NORMS for b in BATCH_SWEEP_SIZES]
    if c.mode == "lr_sweep":
        return [Variant(n, device, c.batch_size, lr, c.epochs, f"{models.NORM_LABELS[n]} · lr={lr:g}")
                for n in LR_SWEEP_NORMS for lr in LR_SWEEP_RATES]
    many = len(c.devices) > 1
    return [Variant(n, d, c.batch_size, c.lr, c.epochs, models.NORM_LABELS[n] + (f" · {devices.parse_target(d).label}" if many else ""))
            for n in c.norms for d in c.devices]


def plan(c: RunConfig) -> tuple[list[Variant], list[Problem]]:
    """The variants that will run, and every problem in words (errors block the run;
    warnings say which variants were skipped and why)."""
    out: list[Problem] = []
    try:
        for d in c.devices:
            devices.parse_target(d)
    except ValueError as exc:
        return [], [Problem("error", str(exc))]
    variants = []
    for v in _variants(c):
        why = models.norm_problem(c.model, v.norm, c.width, c.num_groups)
        if why:
            if not any(why in p.message for p in out):
                out.append(Problem("warning", f"Skipped {models.NORM_LABELS[v.norm]}: {why}"))
            continue
        if v.batch_size > _train_size(c):
            continue
        variants.append(v)
    if c.mode == "compare" and len(variants) > limits.MAX_VARIANTS:
        out.append(Problem("error", (
            f"{len(variants)} normalization × device combinations is over this demo's cap of {limits.MAX_VARIANTS} "
            "per run. Pick fewer normalizations or devices.")))
    if c.mode == "compare" and c.batch_size > _train_size(c):
        out.append(Problem("error", f"The batch size {c.batch_size} is larger than the training set ({_train_size(c)} samples)."))
    if c.probe_layer > c.depth:
        out.append(Problem("warning", f"The model has {c.depth} hidden block(s); tracking the last one instead of block {c.probe_layer}."))
    steps = sum(v.steps(_train_size(c)) for v in variants)
    samples = sum(v.steps(_train_size(c)) * v.batch_size for v in variants)
    macs = 3 * models.forward_macs(c.model, c.width, c.depth) * samples
    for amount, cap, what, fix in (
        (steps, limits.MAX_TRAIN_STEPS, "optimizer steps", "Use fewer epochs, fewer variants or a larger batch size."),
        (macs, limits.MAX_TRAIN_MACS, "multiply-accumulates", "Use a narrower or shallower model, fewer epochs or fewer variants."),
        (samples, limits.MAX_SAMPLE_STEPS, "training samples", "Use fewer epochs or fewer variants."),
    ):
        if amount > cap:
            out.append(Problem("error", f"This run needs about {amount:,.0f} {what}, over this demo's cap of {cap:,.0f}. {fix}"))
    if not variants and not any(p.level == "error" for p in out):
        out.append(Problem("error", "Nothing to train: every chosen normalization was skipped (see above)."))
    return variants, out


def errors(c: RunConfig) -> list[str]:
    return [p.message for p in plan(c)[1] if p.level == "error"]


# ---------------------------------------------------------------------------------------
# Running: a LiveRun records everything as it happens
# ---------------------------------------------------------------------------------------


@dataclass
class LiveRun:
    """An experiment's record, filled while it runs. ``status``: running, finished, stopped
    (by the stop flag or by the caller being interrupted: :meth:`mark_interrupted`)."""

    config: RunConfig
    variants: list[Variant]
    rows: list[dict] = field(default_factory=list)  # one per Progress, tagged with its variant
    results: dict[int, dict] = field(default_factory=dict)  # variant index -> summary row
    status: str = "running"
    message: str = ""
    current: int = 0  # index of the variant being trained
    steps_done: int = 0  # completed optimizer steps over all variants
    total_steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0
    phase: str = ""  # what it does before training, e.g. warming up a device

    @property
    def fraction(self) -> float:
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    @property
    def running(self) -> bool:
        return self.status == "running"

    def mark_interrupted(self, why: str) -> None:
        """The run was cut short from outside (e.g. a Stop click reran the page)."""
        if self.running:
            self.status, self.message = "stopped", why
            self.elapsed_s = time.perf_counter() - self.started

    def progress_text(self) -> str:
        """One line for a progress bar: what is training now, or how the run ended."""
        if self.running and self.phase:
            text = self.phase
        elif self.running and not self.rows:  # loading data, building models (one-time imports on a fresh server)
            text = "Starting"
        elif self.running and self.variants:
            current = self.variants[min(self.current, len(self.variants) - 1)]
            text = f"Training {self.current + 1}/{len(self.variants)}: {current.label}"
        else:
            text = self.status.capitalize()
        return f"{text} · {self.elapsed_s:.1f} s"

    def history(self) -> pd.DataFrame:
        columns = ["variant", "label", "norm", "device", "batch_size", "lr", *PROGRESS_COLUMNS]
        return pd.DataFrame(self.rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        return summary_frame(self)

    def chart_frames(self) -> dict:
        """What ``viz.training.live_charts`` draws for this run, as of now (a comparison draws
        only its history, so only a sweep pays for the summary)."""
        frames = dict(mode=self.config.mode, history=self.history(), epochs=max((v.epochs for v in self.variants), default=None),
                      norms=tuple(dict.fromkeys(v.norm for v in self.variants)),
                      devices=tuple(dict.fromkeys(v.target.label for v in self.variants)))
        if self.config.mode != "compare":
            summary = self.summary()
            frames |= dict(summary=summary, largest=largest_trainable_lr(summary, chance_accuracy(self.config)),
                           paper=paper_group_norm_errors())
        return frames


def _summary_row(i: int, v: Variant, result: TrainResult | None, partial: pd.DataFrame | None = None) -> dict:
    target = v.target
    row = dict(variant=i, label=v.label, norm=v.norm, normalization=models.NORM_LABELS[v.norm], device=v.device,
               device_label=target.label, batch_size=v.batch_size, lr=v.lr, epochs=v.epochs)
    if result is None:  # interrupted before it finished: what its history says so far
        last = partial.iloc[-1] if partial is not None and len(partial) else None
        return row | dict(status="stopped", steps=int(last["step"]) if last is not None else 0,
                          train_accuracy=math.nan, test_accuracy=math.nan, time_per_epoch_s=math.nan,
                          samples_per_s=float(last["samples_per_s"]) if last is not None else math.nan,
                          diverged=False, note="Stopped before this variant finished.")
    return row | dict(status=result.status, steps=result.steps, train_accuracy=result.final_train_accuracy,
                      test_accuracy=result.final_test_accuracy, time_per_epoch_s=result.time_per_epoch_s,
                      samples_per_s=result.samples_per_s, diverged=result.diverged, note=result.message)


def summary_frame(live: LiveRun) -> pd.DataFrame:
    """One row per variant that started: accuracies, timing, the speed-up against the CPU
    baseline (the CPU run with the fewest threads, same normalization) and the divergence flag."""
    rows = [live.results.get(i) for i in range(len(live.variants))]
    history = live.history()
    for i, row in enumerate(rows):
        if row is None and i <= live.current and not live.running and (history["variant"] == i).any():
            rows[i] = _summary_row(i, live.variants[i], None, history[history["variant"] == i])
    frame = pd.DataFrame([r for r in rows if r is not None])
    if frame.empty:  # stopped before any variant reported: an empty table with every column
        return pd.DataFrame(columns=["variant", "norm", "device", "epochs", "steps", *RESULT_COLUMNS])
    cpu = frame[frame["device"].str.startswith("cpu")].copy()
    cpu["threads"] = cpu["device"].map(lambda k: devices.parse_target(k).threads or devices.DEFAULT_THREADS)
    baseline = cpu.sort_values("threads").drop_duplicates(["norm", "batch_size", "lr"]).set_index(["norm", "batch_size", "lr"])["samples_per_s"]
    keys = list(zip(frame["norm"], frame["batch_size"], frame["lr"]))
    frame["speedup_vs_cpu"] = [row / baseline.get(k, math.nan) for row, k in zip(frame["samples_per_s"], keys)]
    return frame


RESULT_COLUMNS = {
    "label": "Variant", "normalization": "Normalization", "device_label": "Device", "batch_size": "Batch size",
    "lr": "Learning rate", "status": "Status", "train_accuracy": "Train accuracy", "test_accuracy": "Test accuracy",
    "time_per_epoch_s": "Time per epoch (s)", "samples_per_s": "Samples/s", "speedup_vs_cpu": "Speed-up vs CPU",
    "diverged": "Diverged", "note": "Why it stopped",
}


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the page shows it and the CSV download holds it: readable headers."""
    if summary.empty:
        return pd.DataFrame(columns=list(RESULT_COLUMNS.values()))
    return summary[list(RESULT_COLUMNS)].rename(columns=RESULT_COLUMNS)


_WARMED: set[tuple[str, str]] = set()  # (device, model kind) pairs this process has warmed up


def _warm_up(model, data: datasets.Split, target: devices.Target, batch_size: int, steps: int = 3) -> None:
    """A few throwaway steps on ``target`` so one-time costs (thread pools, a CUDA context,
    kernel selection) are not billed to the first variant's samples/s. They are one-time
    per process, so each (device, model kind) is warmed up once."""
    config = TrainConfig(epochs=1, batch_size=batch_size, log_every=steps)
    small = datasets.Split(data.name, data.x_train[: steps * batch_size], data.y_train[: steps * batch_size],
                           data.x_test[:batch_size], data.y_test[:batch_size], data.num_classes)
    train(model, small, config, device=target.device, threads=target.threads)


def run(
    config: RunConfig,
    live: LiveRun | None = None,
    *,
    on_progress: Callable[[LiveRun], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> LiveRun:
    """Train every variant of ``config`` in turn, recording into ``live`` (a new one if None).

    ``on_progress(live)`` is called after every progress report. If it raises (a page being
    rerun), the exception propagates and ``live`` keeps everything recorded so far.
    Raises :class:`ConfigError` when the configuration has errors (see :func:`plan`).
    """
    variants, problems = plan(config)
    blocking = [p.message for p in problems if p.level == "error"]
    if blocking:
        raise ConfigError(blocking)
    live = live or LiveRun(config, variants)
    live.variants = variants
    live.total_steps = sum(v.steps(_train_size(config)) for v in variants)
    data = datasets.load(config.dataset, config.seed, **({"separation": config.separation} if config.dataset == "clusters" else {}))
    probe = min(config.probe_layer, config.depth) - 1
    build = lambda norm: models.make_model(  # noqa: E731
        config.model, norm, config.impl, input_shape=data.input_shape, num_classes=data.num_classes,
        width=config.width, depth=config.depth, num_groups=config.num_groups, momentum=config.momentum,
        eps=config.eps, activation=config.activation, seed=config.seed,
    )
    for device in dict.fromkeys(v.device for v in variants):  # once per device, before any clock starts
        if (device, config.model) in _WARMED:
            continue
        first = next(v for v in variants if v.device == device)
        live.phase = f"Warming up on {devices.parse_target(device).label} (once per server process)"
        live.elapsed_s = time.perf_counter() - live.started
        if on_progress is not None:
            on_progress(live)
        _warm_up(build(first.norm), data, devices.parse_target(device), first.batch_size)
        _WARMED.add((device, config.model))
    live.phase = ""
    for i, v in enumerate(variants):
        live.current = i
        done_before = live.steps_done
        model = build(v.norm)
        steps = v.steps(_train_size(config))
        train_config = TrainConfig(epochs=v.epochs, batch_size=v.batch_size, lr=v.lr, optimizer=config.optimizer,
                                   seed=config.seed, log_every=max(1, steps // REPORTS_PER_VARIANT), probe_layer=probe)

        def report(p: Progress, i=i, v=v, done_before=done_before) -> None:
            live.rows.append(dict(variant=i, label=v.label, norm=v.norm, device=v.device, batch_size=v.batch_size, lr=v.lr) | p.as_row())
            live.steps_done = done_before + p.step
            live.elapsed_s = time.perf_counter() - live.started
            if on_progress is not None:
                on_progress(live)

        target = v.target
        result = train(model, data, train_config, device=target.device, threads=target.threads, callback=report, stop=stop)
        live.steps_done = done_before + steps  # a diverged variant's remaining steps count as done
        live.results[i] = _summary_row(i, v, result)
        if result.status == "stopped":
            live.status, live.message = "stopped", result.message
            break
    else:
        live.status = "finished"
    live.elapsed_s = time.perf_counter() - live.started
    if on_progress is not None:
        on_progress(live)
    return live


class DrawBudget:
    """When to redraw live charts: at most every ``LIVE_DRAW_EVERY_S``, and only while the
    time spent drawing stays under ``LIVE_DRAW_SHARE`` of the time elapsed, so a page's
    live view costs a bounded share of the training however fast the steps are. The final
    state is always drawn. Something cheap that should look live (a progress bar, which
    also lets a page notice a Stop click) runs at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, every_s: float = LIVE_DRAW_EVERY_S, share: float = LIVE_DRAW_SHARE,
                 progress_every_s: float = PROGRESS_EVERY_S):
        self.every_s, self.share, self.progress_every_s = every_s, share, progress_every_s
        self.started = self.last = self.last_progress = time.perf_counter()
        self.spent = 0.0

    def draw(self, live: LiveRun, draw: Callable[[LiveRun], None], every_report: Callable[[LiveRun], None] | None = None) -> bool:
        """Call ``draw`` if it is due (True if it was called); else ``every_report``, if that is due."""
        now = time.perf_counter()
        due = now - self.last >= self.every_s and self.spent <= self.share * (now - self.started)
        if due or not live.running:
            draw(live)
            self.last = self.last_progress = time.perf_counter()
            self.spent += self.last - now
            return True
        if every_report is not None and now - self.last_progress >= self.progress_every_s:
            every_report(live)
            self.last_progress = time.perf_counter()
            self.spent += self.last_progress - now
        return False


# ---------------------------------------------------------------------------------------
# Reading the sweeps
# ---------------------------------------------------------------------------------------


def chance_accuracy(config: RunConfig) -> float:
    return 1 / 4 if config.dataset == "clusters" else 1 / 10


def trains(test_accuracy: float, diverged: bool, chance: float) -> bool:
    """"Still trains": no divergence and test accuracy at least halfway from chance to 100 %."""
    return (not diverged) and test_accuracy >= chance + 0.5 * (1 - chance)


def largest_trainable_lr(summary: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Per normalization: the largest learning rate that still trains (NaN if none did)."""
    rows = []
    if summary.empty:  # nothing has finished yet
        return pd.DataFrame(columns=["norm", "normalization", "largest_lr", "best_test_accuracy"])
    for norm, group in summary.groupby("norm", sort=False):
        ok = group[[trains(a, d, chance) for a, d in zip(group["test_accuracy"], group["diverged"])]]
        rows.append(dict(norm=norm, normalization=models.NORM_LABELS[norm],
                         largest_lr=float(ok["lr"].max()) if len(ok) else math.nan,
                         best_test_accuracy=float(group["test_accuracy"].max())))
    return pd.DataFrame(rows)


def largest_lr_table(summary: pd.DataFrame, chance: float) -> pd.DataFrame:
    """:func:`largest_trainable_lr` with the page's headers."""
    return largest_trainable_lr(summary, chance).drop(columns="norm").rename(columns={
        "normalization": "Normalization", "largest_lr": "Largest learning rate that trains",
        "best_test_accuracy": "Best test accuracy"})


def paper_table() -> pd.DataFrame:
    """The paper's top-1 errors as a normalization × images-per-GPU table of text ("—" where
    the paper has no number)."""
    table = paper_group_norm_errors().pivot(index="normalization", columns="batch_size", values="top1_error")
    return table.map(lambda v: "—" if pd.isna(v) else f"{v:.1f}").rename(columns=lambda b: f"{b} images/GPU")


def paper_group_norm_errors() -> pd.DataFrame:
    """Wu & He 2018, ImageNet ResNet-50 top-1 error (%) by images per GPU."""
    table = {"batch": (23.6, 23.7, 24.8, 27.3, 34.7), "group": (24.1, 24.2, 24.0, 24.2, 24.1)}
    rows = [dict(norm=n, normalization=models.NORM_LABELS[n], batch_size=b, top1_error=e)
            for n, errs in table.items() for b, e in zip((32, 16, 8, 4, 2), errs)]
    rows += [dict(norm=n, normalization=models.NORM_LABELS[n], batch_size=32, top1_error=e)
             for n, e in (("layer", 25.3), ("instance", 28.4))]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Finished results, shared between reruns and sessions
# ---------------------------------------------------------------------------------------


class ResultCache:
    """Finished runs by configuration key, least recently used dropped first. Thread-safe:
    a dashboard shares one across sessions. Stopped runs are never stored."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._items: OrderedDict[str, LiveRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: RunConfig) -> LiveRun | None:
        with self._lock:
            item = self._items.get(config.key)
            if item is not None:
                self._items.move_to_end(config.key)
            return item

    def put(self, live: LiveRun) -> None:
        if live.status != "finished":
            return
        with self._lock:
            self._items[live.config.key] = live
            self._items.move_to_end(live.config.key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def with_settings(config: RunConfig, **changes) -> RunConfig:
    """``config`` with ``changes`` applied (values validated as a loaded file's would be)."""
    return from_dict(config.values() | changes)


__all__ = [
    "BATCH_SWEEP_NORMS", "BATCH_SWEEP_SIZES", "ConfigError", "DrawBudget", "LR_SWEEP_NORMS", "LR_SWEEP_RATES", "LiveRun",
    "MODES", "MODE_LABELS", "MODE_NOTES", "largest_lr_table", "paper_table", "ResultCache", "RunConfig", "SPECS", "Variant", "chance_accuracy", "errors",
    "from_dict", "from_json", "from_query", "largest_trainable_lr", "paper_group_norm_errors", "plan", "results_table", "run", "summary_frame",
    "PAGE_FIELDS", "SHARED_FIELDS", "page_defaults", "to_query", "trains", "with_settings", "URL_NAMES",
]
