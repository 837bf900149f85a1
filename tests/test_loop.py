"""The training loop: it learns, it is reproducible, it matches torch.nn, it stops and it
notices divergence, on every device this machine has."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from normcore.lab import datasets, devices, models, loop

DEVICES = devices.available()
TIMING = ["wall_s", "samples_per_s"]


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits_split(seed=0)


def run(data, kind="mlp", norm="batch", impl="normcore", device="cpu", width=16, **config):
    model = models.make_model(kind, norm, impl, width=width, depth=2, num_groups=4, seed=0)
    cfg = loop.TrainConfig(**({"epochs": 1, "batch_size": 64, "lr": 0.1, "log_every": 5} | config))
    # One CPU thread: identical results, and no thread-pool contention on a busy shared machine
    # (test_devices covers the all-threads path).
    return loop.train(model, data, cfg, device=device, threads=1 if device == "cpu" else None)


LEARNS = [("mlp", n) for n in ("none", "batch", "layer", "group", "rms")] + [("cnn", n) for n in ("batch", "instance", "rms")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,norm", LEARNS)
def test_loss_decreases_on_digits_for_every_normalization(digits, kind, norm, device):
    result = run(digits, kind, norm, device=device, epochs=3, width=8 if kind == "cnn" else 16)
    assert result.status == "finished" and result.steps == 3 * (1347 // 64)
    losses = result.history["loss"]
    assert losses.iloc[-1] < 0.6 * losses.iloc[0]
    assert result.final_test_accuracy > 0.5  # chance is 0.1
    assert 0 <= result.final_train_accuracy <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_runs_are_identical(digits, device):
    a, b = (run(digits, "cnn", "group", device=device, width=8) for _ in range(2))
    assert a.history.drop(columns=TIMING).equals(b.history.drop(columns=TIMING))
    c = run(digits, "cnn", "group", device=device, width=8, seed=1)
    assert not a.history["loss"].equals(c.history["loss"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,norm", [("mlp", "batch"), ("mlp", "layer"), ("mlp", "group"), ("mlp", "rms"), ("cnn", "batch"),
                                       ("cnn", "layer"), ("cnn", "group"), ("cnn", "instance"), ("cnn", "rms")])
def test_normcore_and_torch_give_the_same_loss_curve(digits, kind, norm, device):
    small = datasets.Split("digits", digits.x_train[:320], digits.y_train[:320], digits.x_test[:64],
                           digits.y_test[:64], 10)
    ours, theirs = (run(small, kind, norm, impl, device=device, batch_size=32, log_every=1, width=8)
                    for impl in ("normcore", "torch"))
    assert len(ours.history) == 10
    diff = (ours.history["loss"] - theirs.history["loss"]).abs().max()
    assert diff <= 1e-4, f"loss curves differ by {diff}"


@pytest.mark.parametrize("device", DEVICES)
def test_divergence_is_detected_at_the_exact_step(digits, device):
    # A ReLU net with a merely large step size goes dead (finite loss) rather than NaN; 1e15
    # overflows float32 within a few steps.
    result = run(digits, "mlp", "batch", device=device, lr=1e15, epochs=2, log_every=7)
    assert result.status == "diverged" and result.diverged
    # Oracle: the same batches and weights in a bare torch.nn loop, checking every step's loss.
    model = models.make_model("mlp", "batch", "torch", width=16, depth=2, num_groups=4, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e15, momentum=0.9)
    first_bad = None
    for step, idx in enumerate(loop.batch_order(1347, 64, 2, seed=0)):
        loss = nn.functional.cross_entropy(model(digits.x_train[idx]), digits.y_train[idx])
        if not math.isfinite(loss.item()):
            first_bad = step
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first_bad is not None and result.diverged_at_step == first_bad
    assert result.steps == first_bad + 1 < 2 * (1347 // 64)
    assert f"step {first_bad + 1}" in result.message and "learning rate" in result.message
    assert not math.isfinite(result.history["loss"].iloc[-1])


def test_stop_flag_ends_the_run_and_keeps_what_was_done(digits):
    seen = []
    result = loop.train(
        models.make_model("mlp", "batch", width=16, seed=0), digits,
        loop.TrainConfig(epochs=3, batch_size=32, log_every=4),
        callback=seen.append, stop=lambda: len(seen) >= 3,
    )
    assert result.status == "stopped" and result.steps == 12 and "Stopped" in result.message
    assert list(result.history["step"]) == [4, 8, 12] == [p.step for p in seen]


def test_callback_reports_every_n_steps_and_each_epoch_end(digits):
    seen = []
    cfg = loop.TrainConfig(epochs=2, batch_size=128, log_every=4)  # 10 steps per epoch
    result = loop.train(models.make_model("mlp", "layer", width=16), digits, cfg, callback=seen.append)
    assert [p.step for p in seen] == [4, 8, 10, 12, 16, 20]
    assert [p.step for p in seen if p.test_accuracy is not None] == [10, 20]
    assert list(result.epochs["epoch"]) == [1.0, 2.0]
    assert seen[-1].fraction == 1.0 and all(p.samples_per_s > 0 for p in seen)
    assert result.time_per_epoch_s == pytest.approx(result.train_time_s / 2)


def test_percentiles_are_the_tracked_units_pre_activation(digits):
    # With log_every=1 the first report covers exactly the first batch: its percentiles must be
    # those of unit 0 of the last block's BatchNorm output on that batch, with the initial weights.
    model = models.make_model("mlp", "batch", width=16, seed=0)
    first = digits.x_train[loop.batch_order(1347, 32, 1, seed=0)[0]]
    with torch.no_grad():
        hidden = model.body[0](first.flatten(1))
        z = model.body[1][0](hidden)[:, 0].double()
    expected = torch.quantile((z - z.mean()) / torch.sqrt(z.var(unbiased=False) + 1e-5), torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64))
    seen = []
    loop.train(model, digits, loop.TrainConfig(epochs=1, batch_size=32, log_every=1), callback=seen.append,
                   stop=lambda: len(seen) >= 1)
    torch.testing.assert_close(torch.tensor([seen[0].p15, seen[0].p50, seen[0].p85], dtype=torch.float64), expected, atol=1e-5, rtol=0)


def test_evaluate_matches_a_manual_count(digits):
    model = models.make_model("mlp", "batch", width=16, seed=0).train()
    loss, acc = loop.evaluate(model, digits.x_test, digits.y_test)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(digits.x_test)
    assert acc == pytest.approx((logits.argmax(1) == digits.y_test).double().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, digits.y_test).item(), rel=1e-5)


def test_bad_configs_are_explained(digits):
    model = models.make_model("mlp", "none", width=8)
    for cfg, words in ((loop.TrainConfig(optimizer="rmsprop"), "Unknown optimizer"),
                       (loop.TrainConfig(lr=0.0), "learning rate"),
                       (loop.TrainConfig(batch_size=1), "batch size"),
                       (loop.TrainConfig(batch_size=5000), "batch size")):
        with pytest.raises(ValueError, match=words):
            loop.train(model, digits, cfg)


def test_adam_trains_too(digits):
    result = run(digits, "mlp", "batch", optimizer="adam", lr=0.01)
    assert result.status == "finished" and result.final_test_accuracy > 0.7


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_quantiles_match_torch_quantile(values, qs):
    expected = torch.quantile(torch.tensor(values, dtype=torch.float64), torch.tensor(qs, dtype=torch.float64))
    got = loop.quantiles(np.array(values, dtype=np.float64), qs)
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected, rtol=1e-12, atol=1e-9)


def test_probe_records_training_forwards_only():
    # The oracle is models.pre_activation, which reads the same values through a forward hook.
    model = models.make_model("cnn", "group", width=8, depth=2, num_groups=2, seed=0)
    x = torch.randn(5, 1, 8, 8)
    values = model.probe(0)
    model.eval()
    model(x)
    assert values == []  # a test-set evaluation is not a training batch
    model.train()
    out = model(x)
    assert len(values) == 1
    model.probe(None)
    torch.testing.assert_close(values[0], models.pre_activation(model, x, 0)[:, 0].reshape(-1))
    torch.testing.assert_close(model(x), out)  # probing changes nothing about the forward pass
    assert len(values) == 1  # and after probe(None) nothing more is recorded


def test_each_report_covers_exactly_its_training_batches(digits, monkeypatch):
    sizes = []
    real = loop.quantiles
    monkeypatch.setattr(loop, "quantiles", lambda v, qs: sizes.append(v.size) or real(v, qs))
    cfg = loop.TrainConfig(epochs=2, batch_size=128, log_every=4)  # reports at steps 4, 8, 10, 12, 16, 20
    loop.train(models.make_model("mlp", "batch", width=16), digits, cfg)
    assert sizes == [n * 128 for n in (4, 4, 2, 2, 4, 4)]  # no test-set values after an epoch's evaluation
