"""Scenarios 7-8 on a small network trained on scikit-learn's digits: a forgotten
model.eval(), and BatchNorm frozen vs re-estimated while fine-tuning on shifted inputs."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from normcore.lab.datasets import Split, load_digits_split
from normcore.lab.models import Classifier, make_model, norm_problem
from normcore.lab.settings import LabSettings, Problem
from normcore.lab.norms import NORM_LABELS
from normcore.lab.loop import TrainConfig, TrainResult, evaluate, train
from normcore.lab.experiments.train_eval.batches import torch_single_sample_error
from normcore.lab.experiments.train_eval.modes import has_running_stats
from normcore.lab.experiments.train_eval.scenario import Headline, ScenarioResult, blocked


# ---------------------------------------------------------------------------------------
# 7 and 8. A small network on sklearn's digits: a forgotten model.eval(), frozen BN
# ---------------------------------------------------------------------------------------

DIGITS_WIDTH, DIGITS_DEPTH, DIGITS_LR = 64, 2, 0.05
CNN_WIDTH = 16  # channels: a 64-channel CNN would take seconds to train; 16 learns the digits as well
DIGITS_STEPS = 200  # about this many training steps, whatever the batch size (3 to 15 epochs)
TEST_BATCH_SIZES = tuple(2**k for k in range(9))  # 1 … 256
EVAL_MODES = ("eval mode", "train mode (forgot model.eval())")


@dataclass
class DigitsModel:
    """A network trained on sklearn's digits with the chosen norm, or why it could not be."""

    model: Classifier | None
    data: Split
    history: TrainResult | None
    problems: list[Problem]


def digits_config(s: LabSettings) -> dict:
    """Only the settings the trained network depends on (others do not retrain it)."""
    return {"norm": s.norm, "batch_size": s.batch_size, "momentum": s.momentum, "eps": s.eps,
            "num_groups": s.num_groups, "seed": s.seed}


def network(norm: str) -> str:
    """'A LayerNorm network', 'An RMSNorm network': the article as the name is read aloud."""
    label = NORM_LABELS[norm]
    return f"{'An' if label.startswith(('RMS', 'Instance')) else 'A'} {label} network"


def digits_kind(norm: str) -> str:
    return "cnn" if norm == "instance" else "mlp"  # InstanceNorm needs spatial maps


def digits_epochs(batch_size: int, train_size: int) -> int:
    return min(15, max(3, math.ceil(DIGITS_STEPS / max(train_size // batch_size, 1))))


def train_digits_model(config: dict, on_progress: Callable[[float], None] | None = None) -> DigitsModel:
    """Train the small network once; the scenarios only copy it."""
    data = load_digits_split(config["seed"])
    norm, kind, batch_size = config["norm"], digits_kind(config["norm"]), config["batch_size"]
    width = CNN_WIDTH if kind == "cnn" else DIGITS_WIDTH
    problem = norm_problem(kind, norm, width, config["num_groups"])
    if problem:
        return DigitsModel(None, data, None, [Problem("error", f"The digits network cannot use this norm: {problem}")])
    if batch_size < 2:
        why = (f"torch raises “{torch_single_sample_error(DIGITS_WIDTH)}” in the first BatchNorm layer: one value "
               "per feature is its own mean with variance 0" if norm == "batch" else
               "this lab's training loop needs at least 2 samples per step (BatchNorm cannot train on one)")
        return DigitsModel(None, data, None, [Problem("error", (
            f"Training batch size 1: {why}. Set the batch size to 2 or more to train the digits network."
        ))])
    model = make_model(kind, norm=norm, impl="normcore", width=width, depth=DIGITS_DEPTH,
                       num_groups=config["num_groups"], momentum=config["momentum"], eps=config["eps"], seed=config["seed"])
    batch_size = min(batch_size, len(data.x_train))
    cfg = TrainConfig(epochs=digits_epochs(batch_size, len(data.x_train)), batch_size=batch_size, lr=DIGITS_LR,
                      seed=config["seed"], log_every=5)
    # One thread: for a network this small it is as fast, and it does not fight other users of the CPU.
    history = train(model, data, cfg, threads=1, callback=(lambda p: on_progress(p.fraction)) if on_progress else None)
    found = [] if history.status == "finished" else [Problem("warning", history.message)]
    return DigitsModel(model, data, history, found)


@torch.no_grad()
def accuracy_in_batches(model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy over the full batches of ``batch_size`` (the remainder is left out), in the
    model's current mode: in train mode each batch is normalized with its own statistics."""
    used = (len(x) // batch_size) * batch_size
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, used, batch_size))
    return correct / used


def forgot_eval(s: LabSettings, digits: DigitsModel) -> ScenarioResult:
    """Test accuracy in eval mode and in train mode, for test batch sizes 1 … 256."""
    if digits.model is None:
        return blocked(digits.problems)
    messages, rows = list(digits.problems), []
    x, y = digits.data.x_test, digits.data.y_test
    for b in TEST_BATCH_SIZES:
        for mode in EVAL_MODES:
            model = copy.deepcopy(digits.model)  # train mode moves the running statistics: never the cached copy
            model.train(mode != EVAL_MODES[0])
            try:
                acc, error = accuracy_in_batches(model, x, y, b), ""
            except ValueError as exc:
                acc, error = None, str(exc)
                messages.append(Problem("warning", (
                    f"Test batch size {b} in train mode raises, as it would in torch: {error} A forgotten "
                    "model.eval() in a service that answers one request at a time fails exactly like this."
                )))
            rows.append({"test_batch_size": b, "mode": mode, "accuracy": acc, "samples": (len(x) // b) * b, "error": error})
    frame = pd.DataFrame(rows)
    if not any(has_running_stats(m) for m in digits.model.modules()):
        messages.append(Problem("info", f"{network(s.norm)} keeps no running statistics, so train and eval "
                                        "mode give the same accuracy at every test batch size."))
    at2 = frame[frame.test_batch_size == 2].set_index("mode").accuracy
    return ScenarioResult(
        {"accuracy": frame},
        Headline("Test accuracy at test batch size 2: train mode vs eval mode",
                 f"{at2[EVAL_MODES[1]]:.1%} vs {at2[EVAL_MODES[0]]:.1%}",
                 f"{NORM_LABELS[s.norm]} network trained with batch size {s.batch_size}, "
                 f"{len(x)} test digits."),
        messages,
    )


# -- 8. Frozen BN for fine-tuning -------------------------------------------------------

FINETUNE_MODES = ("frozen statistics (BN in eval mode)", "re-estimated statistics (BN in train mode)")
FINETUNE_SETS = ("shifted test set", "original test set")
FINETUNE_LR = 0.01  # 0.02 lets frozen statistics diverge on strongly shifted inputs


def freeze_norm_statistics(model):
    """Keep every layer with running statistics in eval mode whatever ``model.train()`` says,
    so its statistics stay frozen while γ, β and the weights keep learning. A forward
    pre-hook, so the training loop needs no change; returns the hook's handle."""
    layers = [m for m in model.modules() if has_running_stats(m)]

    def keep_frozen(_module, _inputs):
        for m in layers:
            m.eval()

    return model.register_forward_pre_hook(keep_frozen)


def shifted_digits(data: Split, size: int, brightness: float, contrast: float) -> Split:
    """A small fine-tuning set from a new domain: pixels → contrast · x + brightness."""
    shift = lambda x: x * contrast + brightness  # noqa: E731
    return Split("digits, shifted", shift(data.x_train[:size]), data.y_train[:size], shift(data.x_test), data.y_test, data.num_classes)


def frozen_bn_finetune(s: LabSettings, digits: DigitsModel, finetune_size: int = 100, brightness: float = 0.5,
                       contrast: float = 1.0, epochs: int = 10) -> ScenarioResult:
    """Fine-tune the trained network on a small shifted set, BN frozen vs in train mode."""
    if digits.model is None:
        return blocked(digits.problems)
    messages, stats, acc = list(digits.problems), [], []
    target = shifted_digits(digits.data, int(finetune_size), brightness, contrast)
    batch_size = max(2, min(s.batch_size, len(target.x_train)))
    if batch_size != s.batch_size:
        messages.append(Problem("info", f"Fine-tuning batches hold {batch_size} samples (the set has {len(target.x_train)})."))
    for mode in FINETUNE_MODES:
        model = copy.deepcopy(digits.model)
        if mode == FINETUNE_MODES[0]:
            freeze_norm_statistics(model)
        first_norm = next((m for m in model.modules() if has_running_stats(m)), None)
        # How far the statistics move from where fine-tuning began, averaged over units: a plain
        # average would hide the moves, which go both ways.
        start = None if first_norm is None else (first_norm.running_mean.clone(), first_norm.running_var.clone())

        def record(step: int, epoch: float, test_accuracy: float | None) -> None:
            if first_norm is not None:
                stats.append({"step": step, "mode": mode,
                              "running_mean_change": float((first_norm.running_mean - start[0]).abs().mean()),
                              "running_var_change": float((first_norm.running_var - start[1]).abs().mean())})
            if test_accuracy is not None:
                original = evaluate(model, digits.data.x_test, digits.data.y_test)[1]
                acc.extend([{"epoch": epoch, "mode": mode, "test_set": FINETUNE_SETS[0], "accuracy": test_accuracy},
                            {"epoch": epoch, "mode": mode, "test_set": FINETUNE_SETS[1], "accuracy": original}])

        record(0, 0.0, evaluate(model, target.x_test, target.y_test)[1])
        cfg = TrainConfig(epochs=int(epochs), batch_size=batch_size, lr=FINETUNE_LR, seed=s.seed, log_every=1)
        run = train(model, target, cfg, threads=1, callback=lambda p: record(p.step, p.epoch, p.test_accuracy))
        if run.status != "finished":
            messages.append(Problem("warning", f"{mode}: {run.message}"))
    if not stats:
        messages.append(Problem("info", f"{network(s.norm)} keeps no running statistics: there is nothing "
                                        "to freeze, and both fine-tuning runs are the same."))
    accuracy = pd.DataFrame(acc)
    final = accuracy[accuracy.test_set == FINETUNE_SETS[0]].groupby("mode").accuracy.last()
    original = accuracy[accuracy.test_set == FINETUNE_SETS[1]].groupby("mode").accuracy.last()
    return ScenarioResult(
        {"stats": pd.DataFrame(stats, columns=["step", "mode", "running_mean_change", "running_var_change"]), "accuracy": accuracy},
        Headline("Shifted-test accuracy after fine-tuning: frozen vs re-estimated",
                 f"{final[FINETUNE_MODES[0]]:.1%} vs {final[FINETUNE_MODES[1]]:.1%}",
                 f"Before fine-tuning: {acc[0]['accuracy']:.1%}. On the original digits afterwards: "
                 f"{original[FINETUNE_MODES[0]]:.1%} vs {original[FINETUNE_MODES[1]]:.1%}. "
                 f"{len(target.x_train)} shifted training digits, {int(epochs)} epochs, batch size {batch_size}."),
        messages,
    )
