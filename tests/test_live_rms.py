"""RMSNorm on the Live statistics page, against independent oracles: torch.nn.RMSNorm fed
the same batch, float64 formulas written out here, and the input distribution's closed forms."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from normcore.axes import reduction_axes
from normcore.lab import norms
from normcore.lab import settings as S
from normcore.lab.experiments import live
from normcore.lab.populations import draw_batch, drift_offset, make_generator
from normcore.lab.settings import DEFAULTS, EPS_CHOICES

RMS = replace(DEFAULTS, norm="rms", batch_size=6, channels=4, spatial=3)


def torch_rms(s, x: torch.Tensor) -> torch.Tensor:
    """torch.nn.RMSNorm over (C, H, W) with the lab's eps, float64 output."""
    with torch.no_grad():
        return torch.nn.RMSNorm(x.shape[1:], eps=s.eps)(x).double()


def first_batch(s) -> torch.Tensor:
    return draw_batch(s, make_generator(s.seed))


def population(s, offset=0.0, quiet=False):
    """μ̄ and V of the pooled channels, from populations' definition (channel c: mean
    offset + spread·u_c, std scale·exp(0.3·spread·u_c), u_c evenly in [−1, 1]; a quiet
    channel 0 has std 0.01)."""
    u = np.linspace(-1, 1, s.channels) if s.channels > 1 else np.zeros(1)
    mu = s.mean_offset + offset + s.channel_spread * u
    std = s.scale * np.exp(0.3 * s.channel_spread * u)
    std[0] = 0.01 if quiet else std[0]
    var = std**2 * (1 + 99 * s.outlier_fraction)
    return mu.mean(), var.mean() + ((mu - mu.mean()) ** 2).mean()


# -- one batch: the per-sample table -------------------------------------------------------


def test_per_sample_table_against_torch_nn_rmsnorm_and_float64():
    s = replace(RMS, mean_offset=3.0, scale=2.0, channel_spread=1.0, eps=1e-3)
    view = live.one_batch(s)
    x = first_batch(s)
    xd, y = x.double().flatten(1), torch_rms(s, x).flatten(1)
    mu, var = xd.mean(1).numpy(), xd.var(1, correction=0).numpy()
    ms = (xd**2).mean(1).numpy()
    t = view.rms.per_sample
    assert list(t["sample"]) == list(range(6))
    np.testing.assert_allclose(t["mean_before"], mu, rtol=1e-12)
    np.testing.assert_allclose(t["var_before"], var, rtol=1e-10)
    np.testing.assert_allclose(t["mean_square"], ms, rtol=1e-6)  # the layer's float32 statistic
    np.testing.assert_allclose(t["divisor"], np.sqrt(ms + 1e-3), rtol=1e-6)
    np.testing.assert_allclose(t["mean_after"], y.mean(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(t["rms_after"], y.square().mean(1).sqrt().numpy(), atol=1e-6)
    np.testing.assert_allclose(t["predicted_mean_after"], y.mean(1).numpy(), atol=1e-6)  # the formula vs torch
    assert (t["mean_after"] > 0.5).all()  # offset 3, std 2: far from zero-mean
    title, rows, columns = view.table
    assert rows is t and "mean square" in title and set(columns) == set(t.columns) - {"sample"}
    assert "mean square" in columns["mean_square"] and "predicted" in columns["predicted_mean_after"]


@hsettings(max_examples=25, deadline=None)
@given(
    offset=st.sampled_from([-100.0, -3.0, 0.0, 0.5, 5.0, 100.0]) | st.floats(-100, 100),
    scale=st.sampled_from([0.01, 1.0, 100.0]) | st.floats(0.01, 100),
    eps=st.sampled_from(EPS_CHOICES),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)),
    seed=st.integers(0, 2**31 - 1),
)
def test_predicted_output_mean_is_torch_nn_rmsnorms_output_mean(offset, scale, eps, shape, seed):
    n, c, hw = shape
    s = replace(DEFAULTS, norm="rms", batch_size=n, channels=c, spatial=hw, mean_offset=offset, scale=scale, eps=eps, seed=seed)
    view = live.one_batch(s)
    x = first_batch(s)
    y = torch_rms(s, x).flatten(1)
    xd = x.double().flatten(1)
    ms = (xd**2).mean(1)
    t = view.rms.per_sample
    np.testing.assert_allclose(t["predicted_mean_after"], y.mean(1).numpy(), atol=2e-6)
    np.testing.assert_allclose(t["mean_after"], y.mean(1).numpy(), atol=2e-6)
    np.testing.assert_allclose(t["rms_after"], (ms / (ms + eps)).sqrt().numpy(), atol=2e-6)  # RMS 1 up to eps
    measured, predicted, rms = (float(v) for _, v, _ in view.rms.readouts)
    assert measured == pytest.approx(float(y.mean()), abs=1e-3) and predicted == pytest.approx(measured, abs=1e-3)
    assert rms == pytest.approx(float((ms / (ms + eps)).sqrt().mean()), abs=1e-3)


def test_layernorm_beside_rmsnorm_nearly_agrees_at_offset_zero_and_not_at_a_large_offset():
    def rows(offset):
        s = replace(DEFAULTS, norm="rms", batch_size=8, mean_offset=offset)
        frame = live.one_batch(s).rms.comparison.set_index("normalization")
        y = torch_rms(s, first_batch(s)).flatten(1)
        rms_row = frame.loc["RMSNorm"]
        assert rms_row["output mean"] == pytest.approx(float(y.mean()), abs=1e-6)
        assert rms_row["output std"] == pytest.approx(float(y.std(1, correction=0).mean()), rel=1e-5)
        assert rms_row["output RMS"] == pytest.approx(1.0, abs=1e-4)
        ln = torch.nn.LayerNorm(first_batch(s).shape[1:], elementwise_affine=False)(first_batch(s)).detach().double().flatten(1)
        assert frame.loc["LayerNorm", "output mean"] == pytest.approx(float(ln.mean()), abs=1e-6)
        assert frame.loc["LayerNorm", "output std"] == pytest.approx(float(ln.std(1, correction=0).mean()), rel=1e-5)
        return frame

    near = rows(0.0)
    assert abs(near.loc["RMSNorm", "output mean"]) < 0.05
    assert near.loc["RMSNorm", "output std"] == pytest.approx(near.loc["LayerNorm", "output std"], rel=0.01)
    far = rows(100.0)
    assert far.loc["RMSNorm", "output mean"] > 0.9999 and far.loc["RMSNorm", "output std"] < 0.011
    assert abs(far.loc["LayerNorm", "output mean"]) < 1e-5 and far.loc["LayerNorm", "output std"] > 0.99


def test_the_note_says_to_move_the_mean_offset_and_which_eps_is_used():
    view = live.one_batch(replace(RMS, mean_offset=5.0))
    assert "not zero-mean" in view.rms.note and "**Mean offset**" in view.rms.note and "now 5" in view.rms.note
    assert "1e-05" in view.rms.note and "eps=None" in view.rms.note
    assert "RMSNorm has no β" in view.caption and "mean square" in view.eps_caption
    for norm in ("batch", "layer"):  # the other norms keep their table and text
        other = live.one_batch(replace(RMS, norm=norm))
        assert other.rms is None and other.table[0] == live.MOMENTS_TITLE and "β = 0" in other.caption


@pytest.mark.parametrize("quiet", [True, False])
def test_eps_curve_of_rmsnorm_against_torch_and_its_theory(quiet):
    s = replace(DEFAULTS, norm="rms", batch_size=128, spatial=8, channel_spread=1.0, mean_offset=2.0)
    curve = live.one_batch(s, quiet).eps_curve.set_index("eps")
    x = draw_batch(s, make_generator(s.seed), quiet_channel=quiet)
    mu, var = population(s, quiet=quiet)
    sigma0_sq = 1e-4 if quiet else (np.exp(0.3 * -1.0)) ** 2  # channel 0: u = −1
    for eps in (1e-8, 1e-4, 1.0):
        y0 = torch_rms(replace(s, eps=eps), x)[:, 0]
        measured = float(y0.var(dim=(1, 2), correction=0).mean().sqrt())
        assert curve.loc[eps, "measured"] == pytest.approx(measured, rel=1e-4)
        theory = math.sqrt(sigma0_sq * (1 - 1 / 64) / (mu**2 + var + eps))
        assert curve.loc[eps, "theory"] == pytest.approx(theory, rel=1e-9)
    np.testing.assert_allclose(curve["measured"], curve["theory"], rtol=0.05)


# -- the diagram, the stream and the readouts ----------------------------------------------


def test_the_diagram_shares_one_mean_square_per_sample():
    d = live.diagram_frame(replace(RMS, batch_size=3, channels=4, spatial=2))
    ids = d.frame.sort_values(["sample", "channel", "position"])["statistic"].to_numpy().reshape(3, 4, 4)
    np.testing.assert_array_equal(ids, np.broadcast_to(np.arange(3)[:, None, None], (3, 4, 4)))  # one per sample
    assert d.symbol == "ms" and "share one mean square" in d.caption
    assert "taken over 16 values" in d.caption  # C·H·W
    assert live.diagram_frame(replace(RMS, norm="layer")).symbol == "μ"


def test_stream_records_the_output_mean_and_the_mean_square_against_torch():
    s = replace(RMS, mean_offset=2.0, channel_spread=0.5, eps=1e-2)
    options = live.LiveOptions(drift="wave", drift_size=1.0, drift_period=20)
    stream = live.LiveStream(s, options)
    stream.step(5)
    h = stream.history()
    g = make_generator(s.seed)
    for t in range(5):
        offset = drift_offset("wave", t, 1.0 * s.scale, 20)
        x = draw_batch(s, g, offset=offset)
        row = h[h.step == t + 1].iloc[0]
        assert row["unit"] == "all channels"
        assert row["batch_mean"] == pytest.approx(float(torch_rms(s, x).mean()), abs=1e-6)
        assert row["batch_var"] == pytest.approx(float(x.double().square().mean()), rel=1e-6)
        mu, var = population(s, offset)
        assert row["true_mean"] == pytest.approx(mu / math.sqrt(mu**2 + var + 1e-2), rel=1e-12)
        assert row["true_var"] == pytest.approx(mu**2 + var, rel=1e-12)
        assert math.isnan(row["running_mean"]) and math.isnan(row["running_var"])
    assert stream.parity.ok and stream.parity.running_mean is None
    assert not stream.keeps_running_stats
    assert [title for _, title, _ in live.stream_statistics("rms")] == ["Output mean", "Mean square E[x²]"]


def test_readouts_and_texts_of_rmsnorm():
    s = replace(RMS, mean_offset=1.0)
    stream = live.LiveStream(s)
    stream.step(1)
    (tracked, _, _), _, (label, value, why) = live.readouts(stream)
    assert tracked == "num_batches_tracked" and live.readouts(stream)[0][1] == "—"
    mu, var = population(s)
    assert label == "Output mean (population)" and float(value) == pytest.approx(mu / math.sqrt(mu**2 + var + s.eps), abs=1e-3)
    assert "μ/√(μ² + σ² + eps)" in why
    assert "RMSNorm keeps no running statistics" in live.RUNNING_STATS["rms"]
    assert "training and evaluation do exactly the same" in live.RUNNING_STATS["rms"]
    assert "mean square" in live.stream_caption("rms") and live.stream_caption("rms") != live.stream_caption("layer")
    assert live.SHARING["rms"].startswith("RMSNorm: one **mean square**") and live.UNIT_WORD["rms"] == "sample (all channels)"


def test_a_new_spatial_size_restarts_an_rmsnorm_stream():
    opts = live.LiveOptions()
    reason = live.restart_reason(RMS, opts, replace(RMS, spatial=4), opts)
    assert reason == "The stream restarted: RMSNorm's shape includes H and W, which changed."
    assert live.restart_reason(RMS, opts, replace(RMS, mean_offset=9.0, eps=1e-2), opts) is None
    assert "now RMSNorm" in live.restart_reason(replace(RMS, norm="layer"), opts, RMS, opts)


# -- settings and prose ------------------------------------------------------------------


def test_one_value_per_sample_is_a_warning_for_rmsnorm_only():
    found = S.problems(replace(RMS, channels=1, spatial=1))
    assert [p.level for p in found] == ["warning"] and "±1 whatever x is" in found[0].message
    assert S.problems(replace(RMS, channels=2, spatial=1)) == []
    assert S.problems(replace(RMS, norm="layer", channels=1, spatial=1)) == []
    assert S.problems(replace(RMS, batch_size=512, channels=64, spatial=32))[0].level == "error"  # the cap still holds


def test_describe_axes_names_rmsnorms_mean_square():
    text = norms.describe_axes(reduction_axes("rms", (8, 3, 4, 5)))
    assert text == "RMSNorm computes 8 mean square(s) E[x²], each over C × H × W = 60 values."
    assert "mean/variance pair(s)" in norms.describe_axes(reduction_axes("layer", (8, 3, 4, 5)))
