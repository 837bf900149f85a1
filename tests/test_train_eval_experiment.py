"""The train-vs-eval experiments against independent oracles: torch.nn layers fed the same
batches, and closed forms (EMA decay, ±1 at batch size 2, zero gaps, EMA lag)."""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import pytest
import torch

from normcore.lab import limits
from normcore.lab.populations import draw_batch, make_generator, population_stats
from normcore.lab.experiments import train_eval as te
from normcore.lab.settings import DEFAULTS

SMALL = replace(DEFAULTS, batch_size=16, channels=3, spatial=4, channel_spread=1.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The oracles' own torch loops on one thread, as the experiments run: on a shared 2-core
    machine two threads waiting for each other make small tensors many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_bn(s, momentum=te.SAME):
    m = s.momentum if momentum is te.SAME else momentum
    return torch.nn.BatchNorm2d(s.channels, eps=s.eps, momentum=m, affine=s.affine)


@torch.no_grad()
def torch_gap(layer, probe) -> float:
    """mean |y_train − y_eval| with torch's own layer, running statistics left alone."""
    saved = {k: v.clone() for k, v in layer.state_dict().items()}
    y_train = layer.train()(probe)
    layer.load_state_dict(saved)
    return float((y_train.double() - layer.eval()(probe).double()).abs().mean())


def warmup(momentum: float) -> int:
    """The warm-up the experiments use, from its definition: the first k with (1 − m)^k < 1%,
    at most 300 steps (limits.MAX_WARMUP)."""
    return min(math.ceil(math.log(0.01) / math.log(1 - momentum)), 300)


def messages(r, level=None):
    return [m.message for m in r.messages if level is None or m.level == level]


# -- 1. warm-up ------------------------------------------------------------------------


def test_closed_form_warmup_is_the_first_k_with_decay_below_one_percent():
    for m in (0.5, 0.1, 0.03, 0.01):
        k = te.closed_form_warmup(m)
        assert (1 - m) ** k < 0.01 <= (1 - m) ** (k - 1)
    assert te.closed_form_warmup(0.1) == 44 and te.closed_form_warmup(0.01) == 459
    assert te.closed_form_warmup(0.99) == 1 and te.closed_form_warmup(None) == 1
    assert te.closed_form_warmup(0.0) is None


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_constant_stream_running_stats_follow_the_ema_closed_form(momentum):
    # A constant input per channel: batch mean μ_c and variance 0, so after k steps
    # running_mean = μ_c (1 − (1 − m)^k) and running_var = (1 − m)^k (None: μ_c and 0 from step 1).
    s = replace(SMALL, scale=0.0, momentum=momentum)
    shift = 2.0
    r = te.warmup_gap(s, steps=30, stream_shift=shift)
    mu, _ = population_stats(s, shift)
    ch = r.frames["channels"]
    for k in (0, 1, 5, 30):
        decay = 1.0 if k == 0 else (0.0 if momentum is None else (1 - momentum) ** k)
        rows = ch[ch.step == k].sort_values("channel")
        torch.testing.assert_close(torch.tensor(rows.running_mean.values), mu * (1 - decay), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.tensor(rows.running_var.values), torch.full((s.channels,), decay, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_warmup_gap_matches_torch_batchnorm_on_the_same_stream():
    s = replace(SMALL, momentum=0.2)
    steps, shift, factor = 25, 2.0, 3.0
    r = te.warmup_gap(s, steps=steps, stream_shift=shift, stream_scale=factor)
    probe = te.probe_batch(s, shift, factor)
    layers = {label: torch_bn(s, m) for label, m in te.momentum_variants(s)}
    gap = r.frames["gap"]
    for step, x in enumerate(te.stream(s, steps, shift, factor), start=1):
        for layer in layers.values():
            layer.train()(x)
        if step in (1, 10, steps):
            for label, layer in layers.items():
                got = gap[(gap.step == step) & (gap.variant == label)].train_eval_gap.item()
                assert got == pytest.approx(torch_gap(layer, probe), rel=1e-5, abs=1e-6), (step, label)


def test_momentum_variants_show_the_other_convention_and_keras_default():
    torch_view = te.momentum_variants(replace(DEFAULTS, momentum=0.1))
    assert [m for _, m in torch_view] == [0.1, 0.9, None, 0.99, 0.01]
    keras_view = te.momentum_variants(replace(DEFAULTS, momentum=0.1, momentum_convention="keras"))
    assert keras_view[0][0].startswith("your setting: Keras 0.9") and keras_view[1] == ("Keras 0.9 typed into PyTorch as-is", 0.9)
    # Keras's 0.99 converted is 0.01 in PyTorch: no duplicate line when that is the setting.
    assert [m for _, m in te.momentum_variants(replace(DEFAULTS, momentum=0.01))] == [0.01, 0.99, None]


def test_warmup_markers_slow_momentum_never_gets_there_fast_one_does():
    r = te.run_scenario("warmup", DEFAULTS)
    markers = r.frames["markers"].set_index("momentum")
    assert markers.loc["PyTorch 0.01", "step"] is None or math.isnan(markers.loc["PyTorch 0.01", "step"])
    assert 1 <= markers.loc["PyTorch 0.1", "step"] <= 150
    floor = r.frames["floor"].threshold.item()
    assert markers.loc["PyTorch 0.1", "train_eval_gap"] <= floor
    assert r.headline.value == f"step {int(markers.loc['PyTorch 0.1', 'step'])}"


@pytest.mark.parametrize("norm,label", [("layer", "LayerNorm"), ("rms", "RMSNorm")])
def test_per_sample_norm_warmup_reports_exact_zero_and_shows_batchnorm(norm, label):
    r = te.warmup_gap(replace(SMALL, norm=norm), steps=10)
    assert any(f"{label} keeps no running statistics" in m and "is 0 (exactly)" in m for m in messages(r, "info"))
    assert r.frames["gap"].train_eval_gap.max() > 0.1  # BatchNorm's gap: the per-sample norm's is 0


def test_invalid_groups_in_warmup_say_why_and_still_chart_batchnorm():
    r = te.warmup_gap(replace(SMALL, norm="group", channels=4, num_groups=3), steps=10)
    assert any("must be divisible by num_groups (3)" in m for m in messages(r, "error"))
    assert r.frames["gap"].train_eval_gap.max() > 0.1  # BatchNorm's gap


# -- 2. batch size ---------------------------------------------------------------------


def test_batch_of_two_gives_plus_minus_one_and_matches_torch():
    s = replace(SMALL, eps=1e-8, affine=False)
    table = te.two_sample_table(s)
    assert (table["y₁"] == -table["y₂"]).all()
    assert table["y₁"].abs().tolist() == pytest.approx([1.0] * s.channels, abs=1e-3)
    closed = table["closed form |y| = (d/2)/√(d²/4+ε)"]
    assert table["y₂"].abs().tolist() == pytest.approx(closed.tolist(), rel=1e-5)
    x = torch.tensor([table["x₁"].tolist(), table["x₂"].tolist()])
    y = torch.nn.BatchNorm1d(s.channels, eps=s.eps, affine=False).train()(x)
    assert table["y₁"].tolist() == pytest.approx(y[0].tolist(), abs=1e-5)


def test_batch_size_one_shows_torchs_error_only_where_it_applies():
    one_value = te.batch_size_gap(replace(SMALL, batch_size=1, spatial=1), probes=4)
    errors = messages(one_value, "error")
    assert any("Expected more than 1 value per channel when training" in m for m in errors)
    assert 1 not in one_value.frames["sizes"].batch_size.tolist()  # the sweep still runs from 2
    assert one_value.headline.value == "cannot train"
    on_a_map = te.batch_size_gap(replace(SMALL, batch_size=1), probes=4)
    assert not messages(on_a_map, "error") and 1 in on_a_map.frames["sizes"].batch_size.tolist()


def test_train_noise_follows_closed_form_and_layernorm_has_none():
    s = replace(DEFAULTS, channels=2, spatial=4, norm="layer")
    frame = te.batch_size_gap(s, probes=48).frames["sizes"]
    ln, bn = frame[frame.norm == "LayerNorm"], frame[frame.norm == "BatchNorm"].set_index("batch_size")
    assert (ln.train_eval_gap == 0).all() and (ln.train_noise == 0).all()
    assert ln.batch_size.tolist() == [1] + [2**k for k in range(1, 10)]
    for n in (64, 256):
        assert bn.train_noise[n] == pytest.approx(bn.noise_closed_form[n], rel=0.3)
    assert bn.train_noise[512] < bn.train_noise[4] / 5


def test_rmsnorm_has_no_gap_and_no_noise_at_any_batch_size():
    r = te.batch_size_gap(replace(SMALL, norm="rms", batch_size=1, spatial=1), probes=4)
    rms = r.frames["sizes"][r.frames["sizes"].norm == "RMSNorm"]
    assert rms.batch_size.tolist() == [1] + [2**k for k in range(1, 10)]  # one value per sample is fine
    assert (rms.train_eval_gap == 0).all() and (rms.train_noise == 0).all() and rms.noise_closed_form.isna().all()
    assert r.headline.label == "RMSNorm train/eval gap at batch size 1" and r.headline.value == "0"


def test_batch_size_gap_matches_torch_for_one_size():
    s = replace(SMALL, momentum=0.3)
    n, probes = 8, 4
    frame = te.batch_size_gap(s, probes=probes).frames["sizes"].set_index("batch_size")
    ks = replace(s, batch_size=n)
    layer = torch_bn(ks)
    for x in te.stream(ks, warmup(s.momentum)):
        layer.train()(x)
    gen = make_generator(s.seed + te.PROBE_SEED)
    x0 = draw_batch(ks, gen, batch_size=1)
    gaps = [torch_gap(layer, torch.cat([x0, draw_batch(ks, gen, batch_size=n - 1)])) for _ in range(probes)]
    assert frame.train_eval_gap[n] == pytest.approx(sum(gaps) / probes, rel=1e-5)


# -- 3. which norms ----------------------------------------------------------------------


def test_only_layers_with_running_stats_have_a_gap_and_batchnorm_matches_torch():
    s = replace(SMALL, channels=4)
    f = te.norms_side_by_side(s).frames["norms"].set_index("norm")
    assert list(f.index) == ["BatchNorm", "LayerNorm", "GroupNorm (G=2)", "RMSNorm", "InstanceNorm",
                             "InstanceNorm, track_running_stats=True"]
    for name in ("LayerNorm", "GroupNorm (G=2)", "RMSNorm", "InstanceNorm"):
        assert f.train_eval_gap[name] == 0.0 and f.exactly_equal[name] and not f.running_stats[name], name
    assert f.train_eval_gap["InstanceNorm, track_running_stats=True"] > 0
    layer = torch_bn(s)
    for x in te.stream(s, warmup(s.momentum)):
        layer.train()(x)
    assert f.train_eval_gap["BatchNorm"] == pytest.approx(torch_gap(layer, te.probe_batch(s)), rel=1e-5)
    assert f.train_eval_gap["BatchNorm"] > 0


def test_invalid_groups_only_affect_the_groupnorm_row():
    r = te.norms_side_by_side(replace(SMALL, channels=4, num_groups=3))
    f = r.frames["norms"].set_index("norm")
    assert math.isnan(f.train_eval_gap["GroupNorm (G=3)"])
    assert any("num_channels (4) must be divisible by num_groups (3)" in m for m in messages(r, "error"))
    assert f.train_eval_gap["BatchNorm"] > 0 and f.train_eval_gap["LayerNorm"] == 0.0


# -- 4. non-i.i.d. batches ---------------------------------------------------------------


def test_non_iid_running_stats_match_torch_and_sorted_batches_hurt_eval():
    s = replace(SMALL, momentum=0.1)
    args = dict(clusters=3, cluster_spread=2.0, run_length=5, steps=60)
    r = te.non_iid_batches(s, **args)
    frame = r.frames["steps"]
    for order in te.ORDERS:
        layer = torch_bn(s)
        for x in te.cluster_batches(s, args["steps"], args["clusters"], args["cluster_spread"], args["run_length"], order):
            layer.train()(x)
        last = frame[(frame.order == order) & (frame.step == args["steps"])]
        assert last.running_mean.item() == pytest.approx(float(layer.running_mean[0]), rel=1e-5, abs=1e-6)
        assert last.running_var.item() == pytest.approx(float(layer.running_var[0]), rel=1e-5)
    tail = frame[frame.step > 30].groupby("order").eval_error.mean()
    assert tail["one cluster per batch"] > 5 * tail["shuffled"]


def test_mixture_stats_closed_form_matches_many_shuffled_samples():
    s = replace(SMALL, batch_size=256)
    x = torch.cat(list(te.cluster_batches(s, 40, 4, 2.0, 1, "shuffled"))).double()
    mean, var = te.mixture_stats(s, 4, 2.0)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(x.var(dim=(0, 2, 3)), var, rtol=0.03, atol=0)


# -- 5. test-time shift --------------------------------------------------------------------


def test_shift_eval_carries_the_shift_and_tta_removes_it():
    s = SMALL
    r = te.shifted_test_inputs(s, shift=2.0, scale_factor=2.0)
    f = r.frames["shifts"]
    at = f[f["shift"] == 2.0].set_index("mode")
    ev, tta = at.loc[te.SHIFT_MODES[0]], at.loc[te.SHIFT_MODES[1]]
    # Closed form: eval output ≈ (x − μ_train)/σ_train, so mean ≈ shift and std ≈ the scale factor
    # (channel_spread changes each channel's σ, hence the loose tolerance).
    assert ev.output_mean == pytest.approx(2.0, abs=0.25) and ev.output_std == pytest.approx(2.0, rel=0.15)
    assert tta.output_mean == pytest.approx(0.0, abs=1e-5) and tta.output_std == pytest.approx(1.0, rel=0.02)
    assert ev.error_if_signal < 0.2 < ev.error_if_nuisance and tta.error_if_nuisance < 0.2 < tta.error_if_signal
    layer = torch_bn(s)
    for x in te.stream(s, warmup(s.momentum)):
        layer.train()(x)
    with torch.no_grad():
        y = layer.eval()(te.probe_batch(s, 2.0 * s.scale, 2.0))
    assert ev.output_mean == pytest.approx(float(y.double().mean()), rel=1e-5)


# -- 6. PreciseBN --------------------------------------------------------------------------


def test_precise_bn_ema_matches_torch_and_lag_closed_form():
    s = replace(SMALL, momentum=0.1, batch_size=64)
    drift, steps = 4.0, 200
    r = te.precise_bn(s, drift=drift, steps=steps, max_batches=64)
    layer = torch_bn(s)
    for x in te.drift_batches(s, steps, drift):
        layer.train()(x)
    ema = r.frames["ema"]
    torch.testing.assert_close(torch.tensor(ema.running_mean.values, dtype=torch.float32), layer.running_mean, rtol=1e-5, atol=1e-5)
    lag = float((torch.tensor(ema.true_mean.values) - torch.tensor(ema.running_mean.values)).mean())
    rate = drift * s.scale / steps
    assert lag == pytest.approx(rate * (1 - s.momentum) / s.momentum, rel=0.15)


def test_precise_bn_is_the_plain_average_of_k_batches_and_beats_the_ema():
    s = replace(SMALL, batch_size=32)
    r = te.precise_bn(s, drift=3.0, steps=100, max_batches=16)
    frame = r.frames["precise"].set_index("batches")
    # Oracle: average the K batches' means and unbiased variances directly.
    batches = list(te.frozen_batches(s, 16, 3.0))
    mean = torch.stack([b.double().mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.double().var(dim=(0, 2, 3)) for b in batches]).mean(0)
    true_mean, true_var = population_stats(s, 3.0 * s.scale)
    test = te.probe_batch(s, 3.0 * s.scale)

    def normalize(m, v):
        return (test.double() - m.view(1, -1, 1, 1)) / torch.sqrt(v.view(1, -1, 1, 1) + s.eps)

    expected = float((normalize(mean, var) - normalize(true_mean, true_var)).abs().mean())
    assert frame.precise_error[16] == pytest.approx(expected, rel=1e-3, abs=1e-5)
    assert frame.precise_error[16] < frame.ema_error[16] / 3


# -- registry ------------------------------------------------------------------------------


def test_every_scenario_runs_with_extreme_settings_without_raising():
    extreme = [
        replace(DEFAULTS, batch_size=1, spatial=1, channels=1),
        replace(DEFAULTS, norm="group", channels=6, num_groups=4),
        replace(DEFAULTS, norm="instance", spatial=1),
        replace(DEFAULTS, momentum=None, eps=1.0, affine=False, mean_offset=100.0, scale=0.01),
        replace(DEFAULTS, momentum=0.0),
        replace(DEFAULTS, batch_size=512, channels=64, spatial=32),  # over the element cap
        replace(DEFAULTS, norm="rms", batch_size=1, spatial=1, channels=1),
        replace(DEFAULTS, norm="rms", batch_size=512, eps=1.0, affine=False),
    ]
    quick = {"steps": 20, "max_batches": 8, "probes": 4, "epochs": 1}
    for i, s in enumerate(extreme):
        for sc in te.SCENARIOS:
            if sc.resource and i not in (0, 3, 6):  # each trains a network: three settings are enough here
                continue
            if "batch_size" not in sc.reads and i != 0:  # reads only the seed: these settings are all one to it
                continue
            params = {k: v for k, v in quick.items() if k in sc.defaults()}
            r = te.run_scenario(sc.key, s, params)
            assert r.frames or any(m.level == "error" for m in r.messages), (sc.key, s)
            if s.num_elements > limits.MAX_ELEMENTS and "batch_size" in sc.reads:  # every scenario that reads N, C, H, W says so
                assert any("over this demo's cap" in m for m in messages(r, "error")), sc.key


# -- the scenarios' own controls: schema fields --------------------------------------------


def test_each_control_is_a_keyword_of_its_experiment_with_the_same_default():
    for sc in te.SCENARIOS:
        signature = inspect.signature(sc.run).parameters
        keywords = {n: p.default for n, p in signature.items() if p.default is not inspect.Parameter.empty}
        assert sc.defaults() == keywords, sc.key
        for f in sc.params.fields:
            assert f.kind == ("int" if type(keywords[f.name]) is int else "float"), (sc.key, f.name)
            assert f.low <= f.default <= f.high, (sc.key, f.name)
            assert math.isclose(round((f.default - f.low) / f.step) * f.step + f.low, f.default), (sc.key, f.name)


@pytest.mark.parametrize("key, name, cap", [
    ("warmup", "steps", 1000), ("non_iid", "steps", 1000), ("precise_bn", "steps", 1000),
    ("batch_size", "probes", 64), ("precise_bn", "max_batches", 1024),
    ("frozen_bn", "finetune_size", 1000), ("frozen_bn", "epochs", 30),
])
def test_controls_that_cost_work_stop_at_their_cap(key, name, cap):
    f = te.scenario(key).params[name]
    assert f.high == cap
    with pytest.raises(ValueError, match=f"{name}: {cap + 1} is outside the allowed range"):
        te.run_scenario(key, DEFAULTS, {name: cap + 1})


def test_run_scenario_refuses_a_control_the_scenario_does_not_have():
    with pytest.raises(ValueError, match="probes: not a control of 'Warm-up'"):
        te.run_scenario("warmup", DEFAULTS, {"probes": 4})
    with pytest.raises(ValueError, match="steps: expected a whole number, got 20.5"):
        te.run_scenario("warmup", DEFAULTS, {"steps": 20.5})


def test_warmup_and_steps_follow_the_caps_in_limits(monkeypatch):
    assert te.warmup_steps(0.1) == 44 and te.warmup_steps(0.01) == 300  # 459 steps, capped
    monkeypatch.setattr(limits, "MAX_WARMUP", 5)
    assert te.warmup_steps(0.1) == 5
    # 16×3×4×4 = 768 values per batch, 6 passes per step in the warm-up: room for 7 steps.
    monkeypatch.setattr(limits, "MAX_TRAIN_EVAL_VALUES", 768 * 6 * 7)
    r = te.warmup_gap(SMALL, steps=100)
    assert r.frames["gap"].step.max() == 7
    assert "Warm-up steps: 7 instead of 100" in " ".join(messages(r, "warning"))


# -- 7 and 8. the digits network -----------------------------------------------------------

from normcore.lab import models  # noqa: E402
from normcore.lab.loop import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    spec = te.RESOURCES["digits_model"]
    return spec.build(spec.config(DEFAULTS))


def torch_twin(d):
    """The same trained weights and buffers in a network built from torch.nn layers."""
    twin = models.make_model("mlp", norm="batch", impl="torch", width=te.DIGITS_WIDTH, depth=te.DIGITS_DEPTH,
                             momentum=DEFAULTS.momentum, eps=DEFAULTS.eps)
    twin.load_state_dict(d.model.state_dict())
    return twin


def test_forgot_eval_matches_a_torch_network_with_the_same_weights(digits):
    before = {k: v.clone() for k, v in digits.model.state_dict().items()}
    r = te.forgot_eval(DEFAULTS, digits)
    frame = r.frames["accuracy"].set_index(["test_batch_size", "mode"])
    x, y = digits.data.x_test, digits.data.y_test
    twin = torch_twin(digits)
    with torch.no_grad():
        per_sample = (twin.eval()(x).argmax(1) == y).double()
    for b in (1, 2, 8, 128):
        used = (len(x) // b) * b
        # Eval mode does not depend on the batching: the per-sample predictions, averaged.
        assert frame.accuracy[(b, te.EVAL_MODES[0])] == pytest.approx(float(per_sample[:used].mean()), abs=1.5 / used)
        model = torch_twin(digits).train()
        if b == 1:
            with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
                model(x[:1])
            assert "Expected more than 1 value per channel when training" in frame.error[(1, te.EVAL_MODES[1])]
            continue
        with torch.no_grad():
            correct = sum(int((model(x[i:i + b]).argmax(1) == y[i:i + b]).sum()) for i in range(0, used, b))
        assert frame.accuracy[(b, te.EVAL_MODES[1])] == pytest.approx(correct / used, abs=1.5 / used)
    at2 = frame.accuracy[(2, te.EVAL_MODES[1])]
    assert at2 < frame.accuracy[(2, te.EVAL_MODES[0])] - 0.2  # the bug is visible at batch 2
    for k, v in digits.model.state_dict().items():  # the shared (cached) network is never touched
        assert torch.equal(v, before[k]), k


def test_forgot_eval_layernorm_network_is_the_same_in_both_modes():
    s = replace(DEFAULTS, norm="layer")
    r = te.run_scenario("forgot_eval", s)
    acc = r.frames["accuracy"].pivot(index="test_batch_size", columns="mode", values="accuracy")
    assert (acc[te.EVAL_MODES[0]] == acc[te.EVAL_MODES[1]]).all()
    assert not [m for m in r.messages if m.level == "warning"]


@pytest.fixture(scope="module")
def rms_digits():
    spec = te.RESOURCES["digits_model"]
    return spec.build(spec.config(replace(DEFAULTS, norm="rms")))


def test_an_rmsnorm_network_is_the_same_in_both_modes_and_matches_torch_nn(rms_digits):
    s = replace(DEFAULTS, norm="rms")
    r = te.forgot_eval(s, rms_digits)
    acc = r.frames["accuracy"].pivot(index="test_batch_size", columns="mode", values="accuracy")
    assert (acc[te.EVAL_MODES[0]] == acc[te.EVAL_MODES[1]]).all()
    assert any("An RMSNorm network keeps no running statistics" in m for m in messages(r, "info"))
    # Oracle: the same weights in a network of torch.nn.RMSNorm layers, one digit at a time.
    twin = models.make_model("mlp", norm="rms", impl="torch", width=te.DIGITS_WIDTH, depth=te.DIGITS_DEPTH, eps=s.eps)
    twin.load_state_dict(rms_digits.model.state_dict())
    assert isinstance(twin.body[0][1], torch.nn.RMSNorm) and twin.body[0][1].eps == s.eps
    x, y = rms_digits.data.x_test, rms_digits.data.y_test
    with torch.no_grad():
        per_sample = (twin.train()(x).argmax(1) == y).double()
    for b in (1, 2, 256):
        used = (len(x) // b) * b
        assert acc[te.EVAL_MODES[1]][b] == pytest.approx(float(per_sample[:used].mean()), abs=1.5 / used)
    tuned = te.frozen_bn_finetune(s, rms_digits, finetune_size=40, epochs=1)
    assert tuned.frames["stats"].empty and any("nothing to freeze" in m for m in messages(tuned, "info"))
    final = tuned.frames["accuracy"].groupby(["mode", "test_set"]).accuracy.last().unstack("mode")
    assert (final[te.FINETUNE_MODES[0]] == final[te.FINETUNE_MODES[1]]).all()  # freezing changes nothing


@pytest.mark.parametrize("changes, expected", [
    ({"batch_size": 1}, "Expected more than 1 value per channel when training"),
    ({"norm": "group", "num_groups": 3}, "must be divisible by num_groups (3)"),
])
def test_digits_scenarios_explain_settings_they_cannot_train(changes, expected):
    s = replace(DEFAULTS, **changes)
    for key in ("forgot_eval", "frozen_bn"):
        r = te.run_scenario(key, s)
        assert not r.frames and any(expected in m.message for m in r.messages if m.level == "error")


def test_frozen_statistics_stay_put_and_train_mode_matches_torch(digits):
    params = dict(finetune_size=60, brightness=0.5, contrast=1.0, epochs=3)
    r = te.frozen_bn_finetune(DEFAULTS, digits, **params)
    stats = r.frames["stats"]
    frozen, moving = (stats[stats["mode"] == m] for m in te.FINETUNE_MODES)
    assert (frozen.running_mean_change == 0).all() and (frozen.running_var_change == 0).all()
    assert moving.running_mean_change.iloc[-1] > 0.01
    # Oracle: a torch.nn twin fine-tuned in train mode by the same loop.
    twin = torch_twin(digits)
    start = twin.body[0][1].running_mean.clone()
    target = te.shifted_digits(digits.data, params["finetune_size"], params["brightness"], params["contrast"])
    train(twin, target, TrainConfig(epochs=params["epochs"], batch_size=32, lr=te.FINETUNE_LR, seed=DEFAULTS.seed), threads=1)
    expected = float((twin.body[0][1].running_mean - start).abs().mean())
    assert moving.running_mean_change.iloc[-1] == pytest.approx(expected, rel=1e-3)
    accuracy = r.frames["accuracy"]
    assert set(accuracy.test_set) == set(te.FINETUNE_SETS) and accuracy.epoch.max() == params["epochs"]
