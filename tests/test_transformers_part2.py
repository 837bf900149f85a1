"""The Transformers page's part 2 lab: the learning-rate sweep with QK-norm (LR sensitivity,
per-head logit and entropy probes), the comparison of norms (DyT's α and saturation), the
BatchNorm leaks, the S-curves, their options, caps and command line.

Oracles: Wortsman et al.'s formula and the issue's published table worked by hand; attention
logits and entropies recomputed here from the weights with plain torch ops; LayerNorm's formula
(x − mean)/√(var + eps) and BatchNorm's batch statistics written out in float64; exact tanh data.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from normcore.lab.experiments.transformers import batchnorm_leak, norm_comparison, s_curves, stability
from normcore.lab.experiments.transformers.__main__ import main
from normcore.lab.experiments.transformers.part2_options import (
    NORM_FIELDS, STABILITY_FIELDS, NormOptions, StabilityOptions, norm_problems, stability_problems,
)
from normcore.lab.experiments.transformers.probes import dyt_rows, head_rows
from normcore.lab.experiments.transformers.training import lm_run_cache
from normcore.lab.transformer import TinyGPT
from normcore.lab.transformer_norms import TimeBatchNorm

TINY_SWEEP = StabilityOptions(rates=("0.01", "0.3"), steps=10, warmup_steps=2, depth=1, width=16, heads=2, context=8,
                              batch_size=4)
TINY_NORMS = NormOptions(steps=8, depth=2, width=16, context=8, batch_size=4, s_block=2)


def test_lr_sensitivity_by_hand():
    # The table, no QK-norm: ℓ* = 1.83; (0.58 + 0.38 + 0 + 0.05 + 0.93 + 1.30) / 6 = 0.54
    no_qk = [2.41, 2.21, 1.83, 1.88, 2.76, 3.13]
    assert stability.lr_sensitivity(no_qk, initial_loss=4.5) == pytest.approx(3.24 / 6)
    # with QK-LayerNorm: ℓ* = 1.85; (0.56 + 0.33 + 0 + 0.01 + 0.34 + 0.66) / 6 = 0.3167
    assert stability.lr_sensitivity([2.41, 2.18, 1.85, 1.86, 2.19, 2.51], 4.5) == pytest.approx(1.90 / 6)
    # capped at ℓ₀ = 4, a diverged run counts as ℓ₀: (2 + 4 + 4) / 3 − 2
    assert stability.lr_sensitivity([2.0, 5.0, math.nan], 4.0) == pytest.approx(10 / 3 - 2)


def test_head_probes_match_a_direct_computation_of_the_attention():
    torch.manual_seed(7)
    model = TinyGPT(10, 6, d_model=8, n_heads=2, n_layers=1, placement="pre", qk_norm="rms").double()
    tokens = torch.randint(10, (2, 6), generator=torch.Generator().manual_seed(1))
    with model.recording():
        model(tokens)
    rows = head_rows(model, step=4)
    attn = model.blocks[0].attn
    h = model.blocks[0].ln_1(model.wte(tokens) + model.wpe(torch.arange(6)))
    W, bias = attn.c_attn.weight, attn.c_attn.bias
    assert [(r["block"], r["head"]) for r in rows] == [(1, 1), (1, 2)]
    for head, row in enumerate(rows):
        q = h @ W[head * 4:(head + 1) * 4].T + bias[head * 4:(head + 1) * 4]
        k = h @ W[8 + head * 4:8 + (head + 1) * 4].T + bias[8 + head * 4:8 + (head + 1) * 4]
        q = q / (q.pow(2).mean(-1, keepdim=True) + torch.finfo(q.dtype).eps).sqrt() * attn.q_norm.weight  # RMSNorm
        k = k / (k.pow(2).mean(-1, keepdim=True) + torch.finfo(k.dtype).eps).sqrt() * attn.k_norm.weight
        s = q @ k.transpose(1, 2) / 2.0
        visible = [s[:, i, :i + 1] for i in range(6)]
        entropies = [float(-(p * p.log()).sum(-1).mean().detach()) for p in (v.softmax(-1) for v in visible)]
        assert row["step"] == 4
        assert row["max_logit"] == pytest.approx(max(float(v.max()) for v in visible), rel=1e-10)
        assert row["entropy"] == pytest.approx(sum(entropies) / 6, rel=1e-10)


def test_dyt_probe_reads_alpha_and_the_saturated_share():
    model = TinyGPT(10, 6, d_model=8, n_heads=2, n_layers=1, norm="dyt", dyt_alpha=0.8).double()
    tokens = torch.randint(10, (3, 6), generator=torch.Generator().manual_seed(2))
    with model.recording():
        model(tokens)
    first = next(r for r in dyt_rows(model, 0) if r["layer"] == "blocks.0.ln_1")
    x = model.wte(tokens) + model.wpe(torch.arange(6))  # the first norm's input (pre-LN)
    assert first["alpha"] == pytest.approx(0.8)
    assert first["saturated"] == pytest.approx(float(((0.8 * x).abs() > 2).double().mean()))
    assert {r["layer"] for r in dyt_rows(model, 0)} == {"blocks.0.ln_1", "blocks.0.ln_2", "ln_f"}


def test_s_curve_points_follow_layer_norms_formula_and_the_fit_finds_tanh():
    torch.manual_seed(3)
    model = TinyGPT(10, 6, d_model=8, n_heads=2, n_layers=1).double().eval()
    tokens = torch.randint(10, (2, 6), generator=torch.Generator().manual_seed(4))
    x, y = s_curves.layer_norm_points(model, model.blocks[0].ln_1, tokens)
    direct = (model.wte(tokens) + model.wpe(torch.arange(6))).reshape(-1, 8).detach()
    mean, var = direct.mean(-1, keepdim=True), direct.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(x, direct)
    torch.testing.assert_close(y, (direct - mean) / (var + 1e-5).sqrt())
    grid = torch.linspace(-6, 6, 201, dtype=torch.float64)
    fit = s_curves.fit_tanh(grid, 1.5 * torch.tanh(0.7 * grid))
    assert fit["alpha"] == pytest.approx(0.7, rel=0.02) and fit["scale"] == pytest.approx(1.5, rel=0.02)
    assert fit["tanh_rms"] < 0.01 < fit["line_rms"]


def test_batchnorm_leaks_match_a_direct_computation():
    emb = nn.Embedding(10, 4).double()
    model = nn.Sequential(emb, TimeBatchNorm(nn.BatchNorm1d(4).double())).train()
    g = torch.Generator().manual_seed(5)
    tokens, other = torch.randint(10, (3, 6), generator=g), torch.randint(10, (3, 6), generator=g)

    def by_hand(t):  # batch statistics over all 3 × 6 tokens, biased variance, eps 1e-5; γ = 1, β = 0
        e = emb(t).detach().reshape(-1, 4)
        return ((e - e.mean(0)) / (e.var(0, unbiased=False) + 1e-5).sqrt()).reshape(3, 6, 4)

    later = tokens.clone()
    later[:, 3:] = other[:, 3:]
    assert batchnorm_leak.future_leak(model, tokens, 2, other) == pytest.approx(
        float((by_hand(tokens)[:, :3] - by_hand(later)[:, :3]).abs().max()), rel=1e-9)
    rest = tokens.clone()
    rest[1:] = other[1:]
    assert batchnorm_leak.batch_leak(model, tokens, other) == pytest.approx(
        float((by_hand(tokens)[0] - by_hand(rest)[0]).abs().max()), rel=1e-9)
    assert batchnorm_leak.batch_leak(model, tokens, other) > 0
    table = batchnorm_leak.leak_table(TINY_NORMS).set_index(["norm", "mode"])
    assert (table.drop(index=("BatchNorm (over batch × time)", "train")).to_numpy() == 0).all()
    assert (table.loc[("BatchNorm (over batch × time)", "train")] > 0).all()


def test_sweep_fills_run_by_run_stops_keeping_finished_points_and_caches():
    cache, seen = lm_run_cache(), []
    stopped = stability.run_stability(TINY_SWEEP, cache=cache, on_run=lambda s: seen.append(len(s.runs)),
                                      stop=lambda: len(seen) >= 1)
    assert stopped.status == "stopped" and seen == [1]
    assert len(stopped.table()) == 1 and stopped.table()["variant"].tolist() == ["no QK-norm"]
    full = stability.run_stability(TINY_SWEEP, cache=cache)
    assert full.status == "finished" and full.runs[0][1] is stopped.runs[0][1]  # the finished run came from the cache
    table = full.table()
    assert sorted(table["lr"].unique()) == [0.01, 0.3] and set(table["variant"]) == {"no QK-norm", "QK-LayerNorm"}
    s = full.sensitivity()
    assert len(s) == 2 and (s["sensitivity"] >= 0).all() and "LR sensitivity" in full.sentence()
    entropy = full.entropy()
    assert set(entropy["head"]) == {1, 2} and (entropy["entropy"] <= math.log(8) + 1e-9).all()
    assert stability.run_stability(TINY_SWEEP, cache=cache).runs[-1][1] is full.runs[-1][1]


def test_norm_comparison_trains_five_norms_with_dyt_alpha_and_stop():
    cache = lm_run_cache()
    comparison = norm_comparison.run_norms(TINY_NORMS, cache=cache)
    summary = comparison.summary()
    assert comparison.status == "finished" and len(summary) == 5 and summary["validation_loss"].notna().all()
    dyt = comparison.dyt()
    assert set(dyt["layer"]) == {"blocks.0.ln_1", "blocks.0.ln_2", "blocks.1.ln_1", "blocks.1.ln_2", "ln_f"}
    assert dyt[dyt["step"] == 0]["alpha"].eq(0.5).all() and dyt["saturated"].between(0, 1).all()
    assert "Dynamic Tanh ends" in comparison.sentence() and "in eval mode" in comparison.sentence()
    calls = []
    stopped = norm_comparison.run_norms(replace(TINY_NORMS, seed=1), cache=cache, stop=lambda: calls.append(1) or len(calls) > 3)
    assert stopped.status == "stopped" and len(stopped.runs) == 1


def test_s_curves_come_from_the_comparisons_cached_layer_norm_run():
    cache = lm_run_cache()
    curves = s_curves.s_curves(TINY_NORMS, cache=cache)
    assert len(curves.points) == 32 * 16 and curves.points["token"].nunique() == 32
    assert set(curves.curve["fit"]) == {"tanh", "line"} and "per-token input std" in curves.sentence()
    trained = cache.get(norm_comparison.norm_config(TINY_NORMS, "layer"))
    s_curves.s_curves(replace(TINY_NORMS, s_norm="ln_2", s_block=1), cache=cache)  # another LayerNorm: no retraining
    assert cache.get(norm_comparison.norm_config(TINY_NORMS, "layer")) is trained
    comparison = norm_comparison.run_norms(replace(TINY_NORMS, norms=("layer",)), cache=cache)
    assert comparison.runs[0].model is not None  # the S-curves' run, reused


def test_problems_say_what_to_change_and_hosted_caps_are_tighter():
    assert stability_problems(StabilityOptions()) == [] and norm_problems(NormOptions()) == []
    many = StabilityOptions(rates=("0.001", "0.003", "0.01", "0.03", "0.1", "0.3"), z_loss=True, steps=1000)
    assert "Pick fewer learning rates" in stability_problems(many, environ={"NORMCORE_HOSTED": "1"})[0].message
    big = replace(many, width=128, depth=8)
    assert any("fewer steps" in p.message for p in stability_problems(big, environ={}))
    assert "at least two" in stability_problems(replace(TINY_SWEEP, rates=("0.1",)))[0].message
    assert "past the model" in norm_problems(replace(NormOptions(), s_block=6))[0].message


def test_schemas_give_the_dataclass_defaults_and_prefixed_url_names():
    for schema, cls, prefix in ((STABILITY_FIELDS, StabilityOptions, "ts_"), (NORM_FIELDS, NormOptions, "tn_")):
        assert all(f.url_name.startswith(prefix) for f in schema.fields)
        assert all(getattr(cls(), f.name) == f.default for f in schema.fields)
    changed = StabilityOptions(qk_norm="rms", steps=300)
    assert StabilityOptions.from_query(changed.to_query())[0] == changed


def test_command_line_sweep_prints_the_table_and_the_sensitivity(capsys):
    assert main(["sweep", "--rates", "0.01,0.3", "--steps", "50", "--warmup-steps", "0", "--depth", "1", "--width", "16", "--heads", "2",
                 "--context", "8", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "max_logit" in out and "QK-LayerNorm" in out and "sensitivity" in out and "LR sensitivity is" in out
    assert main(["sweep", "--rates", "0.01"]) == 2
    assert "at least two" in capsys.readouterr().err
