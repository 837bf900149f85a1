"""The Live statistics experiments against independent oracles: torch.nn layers fed the same
batches, float64 hand computations and closed forms of the input distribution."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from normcore.lab import limits
from normcore.lab.populations import QUIET_STD, draw_batch, drift_offset, make_generator, population_stats
from normcore.lab.experiments import live
from normcore.lab.settings import DEFAULTS, EPS_CHOICES

SMALL = replace(DEFAULTS, batch_size=6, channels=4, spatial=3)


def settings(**changes):
    return replace(SMALL, **changes)


def same_batches(s, steps, quiet=False, drift="none", size=0.0, period=200):
    """The batches a stream draws, re-drawn here from the seed (same generator order)."""
    g = make_generator(s.seed)
    return [draw_batch(s, g, offset=drift_offset(drift, t, size * s.scale, period), quiet_channel=quiet) for t in range(steps)]


# -- 1. the diagram ------------------------------------------------------------------------


def hand_ids(norm, n, c, p, groups=1):
    """Expected statistic per cell, written out from the definitions (not from statistic_ids)."""
    out = np.zeros((n, c, p), dtype=int)
    for i in range(n):
        for j in range(c):
            out[i, j, :] = {"batch": j, "layer": i, "rms": i, "instance": i * c + j, "group": i * groups + j // (c // groups)}[norm]
    return out


@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "group", "rms"])
def test_diagram_ids_match_the_definitions(norm):
    s = settings(batch_size=3, channels=4, spatial=2, norm=norm, num_groups=2)
    d = live.diagram_frame(s)
    assert d.shown == (3, 4, 4) and d.full == (3, 4, 4)
    ids = d.frame.sort_values(["sample", "channel", "position"])["statistic"].to_numpy().reshape(3, 4, 4)
    np.testing.assert_array_equal(ids, hand_ids(norm, 3, 4, 4, 2))  # already numbered in order of appearance
    assert set(d.frame.columns) >= {"sample", "channel", "position", "statistic", "shares"}
    assert "whole batch" in d.caption


def test_diagram_is_cut_to_a_readable_block_with_the_full_blocks_ids():
    s = settings(batch_size=100, channels=16, spatial=10, norm="group", num_groups=4)
    d = live.diagram_frame(s)
    n, c, p = live.DIAGRAM_SAMPLES, live.DIAGRAM_CHANNELS, live.DIAGRAM_POSITIONS
    assert d.shown == (n, c, p) and d.full == (100, 16, 100)
    assert len(d.frame) == n * c * p
    ids = d.frame.sort_values(["sample", "channel", "position"])["statistic"].to_numpy().reshape(n, c, p)
    # Groups of 16 / 4 = 4 channels: the first 8 channels are groups 0 and 1 of each sample.
    expected = hand_ids("group", n, 16, p, 4)[:, :c, :]
    _, renumbered = np.unique(expected.ravel(), return_inverse=True)
    np.testing.assert_array_equal(ids.ravel(), renumbered)
    assert f"{n} of 100 samples" in d.caption and f"{c} of 16 channels" in d.caption
    assert (d.frame["shares"] == 4 * 100).all()  # C/G · H·W values per statistic
    assert "taken over 400 values of the batch" in d.caption


def test_no_diagram_while_the_groups_do_not_divide_the_channels():
    assert live.diagram_frame(settings(norm="group", channels=4, num_groups=3)) is None
    assert live.diagram_frame(settings(norm="batch", channels=4, num_groups=3)) is not None  # groups only matter for GN


def test_diagrams_of_the_four_norms_differ():
    s = settings(batch_size=4, channels=4, spatial=2, num_groups=2)
    frames = {k: live.diagram_frame(replace(s, norm=k)).frame["statistic"].to_numpy() for k in ("batch", "layer", "instance", "group")}
    keys = list(frames)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not np.array_equal(frames[a], frames[b]), (a, b)


# -- true statistics -------------------------------------------------------------------


def test_unit_truth_is_the_closed_form_per_channel():
    s = settings(mean_offset=2.0, scale=1.5, channel_spread=1.0, outlier_fraction=0.1, spatial=4)
    u = np.linspace(-1, 1, 4)
    mean = 2.0 + 1.0 * u
    var = (1.5 * np.exp(0.3 * u)) ** 2 * (1 + 99 * 0.1)  # outliers at ±10σ
    truth = live.unit_truth(s, offset=0.5)
    np.testing.assert_allclose(truth.mean, mean + 0.5)
    np.testing.assert_allclose(truth.var, var)
    np.testing.assert_allclose(truth.standard_error, np.sqrt(var / (6 * 16)))


def test_unit_truth_of_groups_is_the_pooled_population_measured_on_a_large_batch():
    s = replace(DEFAULTS, norm="group", channels=4, num_groups=2, batch_size=512, spatial=16, channel_spread=2.0, mean_offset=1.0)
    truth = live.unit_truth(s, quiet_channel=True)
    x = draw_batch(s, make_generator(3), quiet_channel=True).double()
    for g, members in enumerate(([0, 1], [2, 3])):
        pooled = x[:, members].reshape(-1)
        assert float(pooled.mean()) == pytest.approx(truth.mean[g], abs=0.01)
        assert float(pooled.var()) == pytest.approx(truth.var[g], rel=0.01)
    # The mean of one (sample, group) over M values varies from sample to sample by the standard error.
    per_sample = x[:, :2].mean((1, 2, 3))
    assert float(per_sample.std()) == pytest.approx(truth.standard_error[0], rel=0.15)


def test_quiet_channel_has_variance_1e_minus_4():
    s = settings(scale=3.0, batch_size=256, spatial=8)
    _, var = population_stats(s, quiet_channel=True)
    assert float(var[0]) == pytest.approx(QUIET_STD**2) == pytest.approx(1e-4)
    assert torch.equal(var[1:], population_stats(s)[1][1:])
    x = draw_batch(s, make_generator(0), quiet_channel=True).double()
    assert float(x[:, 0].var()) == pytest.approx(1e-4, rel=0.05)


# -- 2. one batch --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "group", "rms"])
def test_one_batch_moments_against_torch_nn(norm):
    s = replace(DEFAULTS, norm=norm, channels=4, num_groups=2, batch_size=8, spatial=4, mean_offset=3.0, scale=2.0, channel_spread=1.0)
    view = live.one_batch(s, quiet_channel=True)
    x = draw_batch(s, make_generator(s.seed), quiet_channel=True)
    ref = {"batch": torch.nn.BatchNorm2d(4), "layer": torch.nn.LayerNorm((4, 4, 4)), "group": torch.nn.GroupNorm(2, 4),
           "instance": torch.nn.InstanceNorm2d(4), "rms": torch.nn.RMSNorm((4, 4, 4), eps=1e-5)}[norm].train()
    y = ref(x).detach().double()
    var_in, mean_in = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    var_out, mean_out = torch.var_mean(y, dim=(0, 2, 3), correction=0)
    m = view.moments
    assert list(m["channel"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(m["mean_before"], mean_in.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m["var_before"], var_in.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m["mean_after"], mean_out.numpy(), atol=1e-5)
    np.testing.assert_allclose(m["var_after"], var_out.numpy(), rtol=1e-4, atol=1e-6)


def test_one_batch_histograms_count_every_value_of_each_unit():
    s = replace(DEFAULTS, norm="group", channels=8, num_groups=4, batch_size=5, spatial=3)
    view = live.one_batch(s)
    assert view.units_shown == 4 and view.units_total == 4
    h = view.histogram
    assert set(h.columns) == {"unit", "stage", "bin_start", "bin_end", "count"}
    for (unit, stage), rows in h.groupby(["unit", "stage"]):
        assert rows["count"].sum() == 5 * 2 * 9  # N · C/G · H·W values per group
        assert len(rows) == live.HISTOGRAM_BINS
        assert (rows["bin_end"] > rows["bin_start"]).all()
    assert list(dict.fromkeys(h["unit"])) == ["group 0 (ch 0–1)", "group 1 (ch 2–3)", "group 2 (ch 4–5)", "group 3 (ch 6–7)"]
    # After GroupNorm each group's values are standardized: their range is within a few std of 0.
    after = h[h.stage == "after"]
    assert after["bin_start"].min() > -5 and after["bin_end"].max() < 5


def test_histograms_are_capped_and_layernorm_has_one_unit():
    view = live.one_batch(replace(DEFAULTS, channels=10, batch_size=2, spatial=3))
    assert view.units_shown == live.HISTOGRAM_UNITS and view.units_total == 10
    assert view.caption.startswith(f"The first {live.HISTOGRAM_UNITS} of 10 are shown. The first batch of the stream below, 2×10×3×3,")
    assert live.one_batch(SMALL).caption.startswith("The first batch of the stream below, 6×4×3×3,")
    assert view.histogram["unit"].nunique() == live.HISTOGRAM_UNITS
    assert live.one_batch(replace(DEFAULTS, norm="layer")).histogram["unit"].unique().tolist() == ["all channels"]


def test_eps_curve_batchnorm_quiet_channel_against_hand_computation_and_theory():
    s = replace(DEFAULTS, batch_size=128, spatial=8)
    curve = live.one_batch(s, quiet_channel=True).eps_curve
    assert curve["eps"].tolist() == list(EPS_CHOICES)
    x0 = draw_batch(s, make_generator(s.seed), quiet_channel=True)[:, 0].double()
    v = float(x0.var(correction=0))
    for eps, measured, theory in curve.itertuples(index=False):
        assert measured == pytest.approx(math.sqrt(v / (v + eps)), rel=1e-4)  # float32 layer vs float64 by hand
        m = 128 * 64
        assert theory == pytest.approx(1 / math.sqrt(1 + eps / (1e-4 * (1 - 1 / m))), rel=1e-12)
        assert measured == pytest.approx(theory, rel=0.03)
    at_var = curve.set_index("eps").loc[1e-4]
    assert at_var["measured"] == pytest.approx(1 / math.sqrt(2), rel=0.03)  # eps = variance halves the variance


@pytest.mark.parametrize("norm", ["instance", "layer", "group"])
@pytest.mark.parametrize("quiet", [True, False])
def test_eps_curve_measured_follows_theory(norm, quiet):
    s = replace(DEFAULTS, norm=norm, batch_size=256, spatial=8, channel_spread=1.0, mean_offset=2.0)
    curve = live.one_batch(s, quiet).eps_curve
    np.testing.assert_allclose(curve["measured"], curve["theory"], rtol=0.05)
    assert (np.diff(curve["measured"]) <= 1e-12).all()  # more eps, never more spread


def test_under_groupnorm_a_quiet_channel_is_squashed_whatever_eps():
    s = replace(DEFAULTS, norm="group", batch_size=64)
    curve = live.one_batch(s, quiet_channel=True).eps_curve.set_index("eps")
    assert curve.loc[1e-8, "measured"] < 0.05  # σ_0 / σ_group = 0.01 / ~0.7
    assert curve.loc[1e-4, "measured"] == pytest.approx(curve.loc[1e-8, "measured"], rel=1e-3)


# -- 3. the stream -------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_stream_batchnorm_running_stats_against_torch_fed_the_same_batches(momentum):
    s = settings(momentum=momentum, mean_offset=1.0, channel_spread=0.5)
    stream = live.LiveStream(s, live.LiveOptions(drift="wave", drift_size=1.0, drift_period=20))
    stream.step(12)
    ref = torch.nn.BatchNorm2d(4, momentum=momentum).train()
    h = stream.history()
    assert list(h.columns) == ["step", "unit", *live.HISTORY_COLUMNS]
    assert len(h) == 12 * 4
    for t, x in enumerate(same_batches(s, 12, drift="wave", size=1.0, period=20), start=1):
        ref(x)
        rows = h[h.step == t]
        np.testing.assert_allclose(rows["running_mean"], ref.running_mean.double(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["running_var"], ref.running_var.double(), rtol=1e-5)
        np.testing.assert_allclose(rows["batch_mean"], x.double().mean((0, 2, 3)), atol=1e-6)
        np.testing.assert_allclose(rows["batch_var"], x.double().var((0, 2, 3), correction=0), rtol=1e-5)
        offset = 1.0 * math.sin(2 * math.pi * (t - 1) / 20)
        np.testing.assert_allclose(rows["true_mean"], 1.0 + offset + 0.5 * np.linspace(-1, 1, 4))
    assert stream.num_batches_tracked == int(ref.num_batches_tracked) == 12
    assert stream.parity.ok and stream.parity.output < 1e-5
    if momentum is None:  # a cumulative average: the plain mean of the 12 batch means
        last = h[h.step == 12]["running_mean"].to_numpy()
        np.testing.assert_allclose(last, h.groupby("unit", sort=False)["batch_mean"].mean().to_numpy(), atol=1e-6)


def test_stream_instancenorm_with_running_stats_against_torch():
    s = settings(norm="instance")
    stream = live.LiveStream(s, live.LiveOptions(track_running_stats=True, quiet_channel=True))
    stream.step(5)
    ref = torch.nn.InstanceNorm2d(4, track_running_stats=True).train()
    for x in same_batches(s, 5, quiet=True):
        ref(x)
    last = stream.history().query("step == 5")
    np.testing.assert_allclose(last["running_mean"], ref.running_mean.double(), atol=1e-6)
    np.testing.assert_allclose(last["running_var"], ref.running_var.double(), rtol=1e-5, atol=1e-8)
    assert stream.num_batches_tracked == int(ref.num_batches_tracked) == 0  # torch's InstanceNorm never counts
    assert last["unit"].tolist()[0] == "channel 0 (quiet)"


@pytest.mark.parametrize("norm", ["layer", "group", "instance"])
def test_per_sample_norms_keep_no_running_stats_and_average_their_statistics(norm):
    s = settings(norm=norm, num_groups=2)
    stream = live.LiveStream(s)
    stream.step(3)
    assert not stream.keeps_running_stats and stream.num_batches_tracked is None
    h = stream.history()
    assert h["running_mean"].isna().all() and h["running_var"].isna().all()
    x = same_batches(s, 3)[-1].double()
    groups = {"layer": 1, "group": 2, "instance": 4}[norm]
    xg = x.reshape(6, groups, -1)  # (N, units, values): channels of a unit are adjacent
    last = h[h.step == 3]
    np.testing.assert_allclose(last["batch_mean"], xg.mean(2).mean(0), atol=1e-6)
    np.testing.assert_allclose(last["batch_var"], xg.var(2, correction=0).mean(0), rtol=1e-5)
    assert live.series_frame(h, "mean")["series"].unique().tolist() == ["batch", "true"]
    assert stream.parity.running_mean is None and stream.parity.ok


def test_history_is_bounded_and_windowed():
    assert live.LiveStream(SMALL).max_steps == limits.MAX_STREAM_STEPS
    stream = live.LiveStream(SMALL, max_steps=5)
    stream.step(8)
    assert stream.steps == 8
    assert sorted(stream.history()["step"].unique()) == [4, 5, 6, 7, 8]
    window = stream.history(last=2, max_units=3)
    assert sorted(window["step"].unique()) == [7, 8] and window["unit"].nunique() == 3
    stream.reset()
    assert stream.history().empty and stream.steps == 0 and stream.num_batches_tracked == 0


def test_series_frame_is_long_and_labelled():
    stream = live.LiveStream(SMALL)
    stream.step(2)
    h = stream.history()
    long = live.series_frame(h, "var")
    assert list(long.columns) == ["step", "unit", "series", "value"]
    assert len(long) == 3 * len(h)
    running = long[long.series == "running"].set_index(["step", "unit"])["value"]
    np.testing.assert_array_equal(running.to_numpy(), h.set_index(["step", "unit"])["running_var"].to_numpy())


def test_step_drift_jumps_every_half_period_and_the_running_mean_lags():
    s = settings(batch_size=64, spatial=4)
    stream = live.LiveStream(s, live.LiveOptions(drift="step", drift_size=3.0, drift_period=40))
    stream.step(40)
    h = stream.history().query("unit == 'channel 0'").set_index("step")
    assert (h.loc[1:20, "true_mean"] == 0).all() and (h.loc[21:40, "true_mean"] == 3.0).all()
    # EMA with m = 0.1 after k steps on the new level: 3 · (1 − 0.9^k) (plus noise).
    assert h.loc[21, "running_mean"] == pytest.approx(0.3, abs=0.05)
    assert h.loc[40, "running_mean"] == pytest.approx(3 * (1 - 0.9**20), abs=0.05)


def test_drift_offset_closed_forms_and_errors():
    assert drift_offset("none", 17, 5.0, 100) == 0.0
    assert [drift_offset("step", t, 2.0, 10) for t in (0, 4, 5, 9, 10, 15)] == [0, 0, 2, 2, 0, 2]
    assert drift_offset("wave", 25, 2.0, 100) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="Unknown drift"):
        drift_offset("sideways", 0, 1.0, 10)
    with pytest.raises(ValueError, match="at least 2"):
        drift_offset("wave", 0, 1.0, 1)


def test_update_continues_for_momentum_and_restarts_for_a_new_shape():
    s = settings()
    stream = live.LiveStream(s)
    stream.step(3)
    faster = replace(s, momentum=0.5, eps=1e-3, batch_size=9)
    assert stream.update(faster, stream.options) is None and stream.steps == 3
    stream.step(2)
    ref = torch.nn.BatchNorm2d(4).train()
    g = make_generator(s.seed)
    for t in range(5):
        if t == 3:
            ref.momentum, ref.eps = 0.5, 1e-3
        ref(draw_batch(s if t < 3 else faster, g))
    torch.testing.assert_close(stream.layer.running_mean, ref.running_mean)
    assert stream.twin.momentum == 0.5 and stream.layer.eps == 1e-3
    note = stream.update(replace(faster, channels=8), stream.options)
    assert "channel count changed from 4 to 8" in note and stream.steps == 0
    stream.step()
    assert stream.history()["unit"].nunique() == 8


@pytest.mark.parametrize("change, expected", [
    (dict(norm="layer"), "normalization is now LayerNorm"),
    (dict(affine=False), "no longer has an affine"),
    (dict(seed=5), "new seed"),
])
def test_restart_reasons(change, expected):
    o = live.LiveOptions()
    assert expected in live.restart_reason(SMALL, o, replace(SMALL, **change), o)


def test_restart_reasons_specific_to_one_norm():
    o, tracked = live.LiveOptions(), live.LiveOptions(track_running_stats=True)
    gn, ln, inorm = settings(norm="group", num_groups=2), settings(norm="layer"), settings(norm="instance")
    assert "group count" in live.restart_reason(gn, o, replace(gn, num_groups=4), o)
    assert "LayerNorm's shape" in live.restart_reason(ln, o, replace(ln, spatial=5), o)
    assert "track_running_stats" in live.restart_reason(inorm, o, inorm, tracked)
    assert live.restart_reason(SMALL, o, replace(SMALL, spatial=5, num_groups=4), tracked) is None  # BN: same layer


def test_steps_per_tick_shrinks_at_the_caps():
    o = live.LiveOptions(steps_per_tick=20)
    assert live.steps_per_tick(DEFAULTS, o) == 20
    caps = replace(DEFAULTS, batch_size=512, channels=64, spatial=8)
    assert caps.num_elements == limits.MAX_ELEMENTS and live.steps_per_tick(caps, o) == 1


def test_parity_flags_a_mismatch():
    stream = live.LiveStream(SMALL)
    x = draw_batch(SMALL, make_generator(1))
    with torch.no_grad():
        y = stream.layer(x)
        stream.twin.running_mean.add_(1.0)  # a broken twin
        y_twin = stream.twin(x)
    p = live.compare(stream.layer, stream.twin, y, y_twin)
    assert not p.ok and p.running_mean == pytest.approx(0.9, abs=1e-6) and p.output < 1e-5


# -- page options --------------------------------------------------------------------------


def test_the_example_input_is_offered_only_on_standard_normal_input():
    assert live.is_standard_normal(DEFAULTS)
    moved = replace(DEFAULTS, **live.EXAMPLE_INPUT)
    assert not live.is_standard_normal(moved) and (moved.mean_offset, moved.scale, moved.channel_spread) == (3.0, 2.0, 1.0)
    assert not live.is_standard_normal(replace(DEFAULTS, channel_spread=0.5))


def test_live_options_schema_defaults_are_the_dataclass_defaults():
    assert live.FIELDS.defaults() == {
        "quiet_channel": False, "drift": "none", "drift_size": 2.0, "drift_period": 200,
        "track_running_stats": False, "steps_per_tick": 1,
    } == asdict(live.LiveOptions())
    assert live.FIELDS.url_names == ("quiet", "drift", "drift_size", "drift_period", "in_running", "speed")


def test_live_options_ranges_stop_at_the_caps():
    f = live.FIELDS
    assert (f["steps_per_tick"].low, f["steps_per_tick"].high) == (1, limits.MAX_STEPS_PER_TICK) == (1, 50)
    assert (f["drift_period"].low, f["drift_period"].high, f["drift_period"].step) == (20, limits.MAX_DRIFT_PERIOD, 10)
    assert (f["drift_size"].low, f["drift_size"].high, f["drift_size"].step) == (0.0, 10.0, 0.5)
    assert f["drift"].options == ("none", "step", "wave") and f["drift"].label_of("wave") == "Slow wave (sine)"
    assert live.LiveOptions.from_query({"speed": "50", "drift_period": "1000"})[0] == live.LiveOptions(steps_per_tick=50, drift_period=1000)
    for params in ({"speed": "51"}, {"drift_period": "1001"}, {"speed": "0"}, {"drift_period": "19"}, {"drift_size": "-0.5"}):
        assert len(live.LiveOptions.from_query(params)[1]) == 1, params


def test_live_options_url_round_trip():
    o = live.LiveOptions(quiet_channel=True, drift="wave", drift_size=3.5, drift_period=50, track_running_stats=True, steps_per_tick=7)
    q = o.to_query()
    assert q == {"quiet": "true", "drift": "wave", "drift_size": "3.5", "drift_period": "50", "in_running": "true", "speed": "7"}
    assert live.LiveOptions.from_query(q) == (o, [])
    assert live.LiveOptions().to_query() == {}


@pytest.mark.parametrize("params, field", [
    ({"quiet": "maybe"}, "quiet"), ({"drift": "sideways"}, "drift"), ({"drift_size": "11"}, "drift_size"),
    ({"drift_period": "5"}, "drift_period"), ({"speed": "nan"}, "speed"), ({"drift_size": "inf"}, "drift_size"),
])
def test_live_options_bad_url_values_fall_back_with_a_message(params, field):
    options, messages = live.LiveOptions.from_query(params)
    assert options == live.LiveOptions()
    assert len(messages) == 1 and messages[0].startswith(f"Ignored URL parameter {field}=")
    assert "Using the default" in messages[0]


def test_readouts_explain_the_three_numbers():
    stream = live.LiveStream(SMALL)
    stream.step(3)
    (l1, v1, e1), (l2, v2, e2), (l3, v3, e3) = live.readouts(stream)
    assert (l1, v1) == ("num_batches_tracked", "3") and "so far" in e1
    assert (l2, v2) == ("EMA half-life", f"{math.log(0.5) / math.log(0.9):.1f} steps") == ("EMA half-life", "6.6 steps")
    assert l3 == "Std error of a batch mean" and v3 == f"{1 / math.sqrt(6 * 9):.3g}" and "M = 54" in e3
    cumulative = live.LiveStream(replace(SMALL, momentum=None, norm="layer"), live.LiveOptions(quiet_channel=True))
    (_, v1, e1), (_, v2, _), (_, v3, e3) = live.readouts(cumulative)
    (_, _, e1), (_, v2, e2), _ = live.readouts(cumulative)
    assert v1 == "—" and "No running statistics" in e1
    assert v2 == "—" and "momentum does not apply" in e2 and e2.startswith("LayerNorm")
    rms_stream = live.LiveStream(replace(SMALL, norm="rms"))
    assert live.readouts(rms_stream)[1][1] == "—"
    # BatchNorm's cumulative average (momentum None) never halves an old batch's weight.
    assert live.readouts(live.LiveStream(replace(SMALL, momentum=None)))[1][1] == "∞"
    # LayerNorm's one unit pools the quiet channel: SE² = avg σ_c² / M with σ_0² = 1e-4.
    assert v3 == f"{math.sqrt((1e-4 + 3) / 4 / (4 * 9)):.3g}" and "all channels" in e3


def test_parity_summary_names_each_gap():
    stream = live.LiveStream(SMALL)
    stream.step()
    assert stream.parity.summary.startswith("✅ normcore vs torch.nn")
    assert "running mean" in stream.parity.summary and "running var" in stream.parity.summary
    assert live.Parity(1.0, None, None, False).summary == "⚠️ normcore vs torch.nn, max |Δ| this step: output 1.0e+00"
