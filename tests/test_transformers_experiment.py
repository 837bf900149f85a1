"""The Transformers page's lab: the corpus, the LM training loop and its probes, the
at-initialization and warm-up experiments, their options, caps and charts.

Oracles: the corpus text read straight from pydoc_data and hashed with hashlib; the
attention's logits, softmax entropy and residual norm recomputed here from the model's
weights with plain torch ops; the learning-rate schedule's stated formula.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from normcore.lab.experiments.transformers import at_init, warmup
from normcore.lab.experiments.transformers.options import (
    INIT_FIELDS, WARMUP_FIELDS, InitOptions, WarmupOptions, init_problems, warmup_problems,
)
from normcore.lab.experiments.transformers.probes import probe_rows
from normcore.lab.experiments.transformers.run_config import LMRunConfig
from normcore.lab.experiments.transformers.training import lm_run_cache, train_lm
from normcore.lab.text_corpus import load_corpus
from normcore.lab.transformer import TinyGPT
from normcore.lab.viz import transformer_charts

TINY_RUN = LMRunConfig(d_model=16, n_heads=2, n_layers=1, context=8, batch_size=4, steps=12, log_every=4, probe_every=5)
TINY_INIT = InitOptions(depth=3, width=16, heads=2, context=8, batch_size=4)
TINY_WARMUP = WarmupOptions(depth=1, steps=10, warmup_steps=5, width=16, heads=2, context=8, batch_size=4)


def test_corpus_is_pydoc_topics_split_90_10_with_its_hash():
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    corpus = load_corpus()
    assert corpus.digest == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert corpus.vocab_size == len(set(text))
    assert len(corpus.train) == int(len(text) * 0.9) and len(corpus.train) + len(corpus.validation) == len(text)
    assert corpus.decode(corpus.train[:200]) == text[:200] and corpus.decode(corpus.validation[-50:]) == text[-50:]


def test_batches_are_deterministic_by_seed_and_targets_shift_by_one():
    corpus = load_corpus()
    a, b = corpus.batches("train", 3, 4, 16, seed=7), corpus.batches("train", 3, 4, 16, seed=7)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], corpus.batches("train", 1, 4, 16, seed=8)[0][0])
    x, y = a[0]
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_probes_match_a_direct_computation_of_the_attention():
    torch.manual_seed(7)  # a seed whose largest q·k lies ahead of its query (asserted below)
    model = TinyGPT(10, 6, d_model=8, n_heads=2, n_layers=1, placement="pre").double()
    tokens = torch.randint(10, (2, 6), generator=torch.Generator().manual_seed(1))
    with model.recording():
        logits = model(tokens)
    F.cross_entropy(logits.reshape(-1, 10), tokens.reshape(-1)).backward()
    (row,) = probe_rows(model, step=3)
    block = model.blocks[0]
    x = model.wte(tokens) + model.wpe(torch.arange(6))
    h = block.ln_1(x)
    W, bias = block.attn.c_attn.weight, block.attn.c_attn.bias
    scores, entropies, everywhere = [], [], []
    for head in range(2):
        q = h @ W[head * 4:(head + 1) * 4].T + bias[head * 4:(head + 1) * 4]
        k = h @ W[8 + head * 4:8 + (head + 1) * 4].T + bias[8 + head * 4:8 + (head + 1) * 4]
        s = q @ k.transpose(1, 2) / 2.0  # √4
        everywhere.append(s.max().detach())
        for i in range(6):
            visible = s[:, i, :i + 1]
            scores.append(visible.max().detach())
            p = visible.softmax(-1)
            entropies.extend((-(p * p.log()).sum(-1)).tolist())
    assert row["step"] == 3 and row["block"] == 1
    assert max(everywhere) > max(scores)  # this seed's largest logit is one a query may not see: the mask matters
    assert row["max_logit"] == pytest.approx(float(torch.stack(scores).max().detach()), rel=1e-10)
    assert row["entropy"] == pytest.approx(sum(entropies) / len(entropies), rel=1e-10)
    assert row["residual_norm"] == pytest.approx(float(block(x).detach().norm(dim=-1).mean()), rel=1e-10)
    assert row["ffn_grad_norm"] == pytest.approx(float(block.mlp.c_proj.weight.grad.norm()), rel=1e-10)
    grads = torch.cat([p.grad.reshape(-1) for p in block.parameters()])
    assert row["grad_norm"] == pytest.approx(float(grads.norm()), rel=1e-10)


def test_a_run_is_reproducible_and_reports_loss_and_probes():
    first, second = train_lm(TINY_RUN, threads=1), train_lm(TINY_RUN, threads=1)
    assert first.status == "finished" and first.history()["step"].tolist() == [4, 8, 12]
    pd.testing.assert_frame_equal(first.history().drop(columns="wall_s"), second.history().drop(columns="wall_s"))
    probes = first.probe_frame()
    assert probes["step"].unique().tolist() == [0, 5, 10] and probes["block"].unique().tolist() == [1]
    assert math.isfinite(first.validation_loss) and first.final_loss < math.log(load_corpus().vocab_size) + 0.5


def test_warmup_schedule_is_linear_then_flat():
    config = replace(TINY_RUN, lr=1e-2, warmup_steps=4)
    assert [config.lr_at(t) for t in range(6)] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])
    assert replace(TINY_RUN, lr=1e-2).lr_at(0) == 1e-2


def test_stop_keeps_the_steps_before_it_and_a_nan_loss_ends_as_diverged():
    calls = iter(range(100))
    stopped = train_lm(TINY_RUN, stop=lambda: next(calls) >= 6, threads=1)
    assert stopped.status == "stopped" and stopped.steps == 6 and stopped.history()["step"].tolist() == [4, 6]
    assert "step 6 of 12" in stopped.message
    capped = train_lm(TINY_RUN, max_seconds=0.0, threads=1)
    assert capped.status == "stopped" and capped.steps == 0 and "cap of 0 s" in capped.message
    broken = train_lm(replace(TINY_RUN, lr=1e30, norm="none"), threads=1)
    assert broken.status == "diverged" and "Diverged at step" in broken.message and "lower it" in broken.message


def test_block_gradients_frame_and_sentence():
    result = at_init.block_gradients(TINY_INIT)
    blocks = result.blocks
    assert set(blocks["placement_label"]) == {"post-LN", "pre-LN", "peri-LN"} and len(blocks) == 9
    assert blocks[["ffn_grad_norm", "grad_norm", "residual_norm"]].gt(0).all().all()
    post = blocks.query("placement == 'post' and block == 3")["ffn_grad_norm"].item()
    assert f"{post:.3g} with post-LN" in result.sentence


def test_depth_sweep_frames_cover_both_inits_with_sqrt_depth():
    sweep = at_init.depth_sweep(replace(TINY_INIT, depth=6))
    assert sorted(sweep.ratios["depth"].unique()) == [2, 3, 6] and set(sweep.ratios["init"]) == {"xavier", "gpt2"}
    assert sweep.ratios["sqrt_depth"].tolist() == pytest.approx([math.sqrt(d) for d in sweep.ratios["depth"]])
    assert set(sweep.residual["block"]) == set(range(1, 7)) and "post / pre" in sweep.sentence
    post = sweep.residual.query("init == 'xavier' and placement == 'post'").sort_values("block")["residual_norm"]
    assert f"post-LN {post.iloc[0]:.3g} → {post.iloc[-1]:.3g}" in sweep.residual_sentence
    for chart in (transformer_charts.block_gradient_chart(at_init.block_gradients(TINY_INIT).blocks),
                  transformer_charts.ratio_chart(sweep.ratios), transformer_charts.init_comparison_chart(sweep.last_block),
                  transformer_charts.residual_chart(sweep.residual)):
        assert chart.to_dict()


def test_warmup_comparison_is_live_cached_and_stoppable():
    cache, seen, live = lm_run_cache(), [], warmup.WarmupComparison(TINY_WARMUP)
    result = warmup.run_warmup(TINY_WARMUP, cache=cache, on_progress=lambda c: seen.append(len(c.curves())), live=live)
    assert result is live
    assert result.status == "finished" and len(cache) == 4 and seen == sorted(seen) and len(seen) > 4
    summary = result.summary()
    assert summary["label"].tolist()[:2] == ["post-LN, no warm-up", "post-LN, 5-step warm-up"]
    assert set(result.curves()["warmup"]) == {True, False} and "Xiong et al. 2020" in result.sentence()
    assert transformer_charts.loss_curves_spec(result.curves())["datasets"]["curves"].shape[0] == len(result.curves())
    again = warmup.run_warmup(TINY_WARMUP, cache=cache)
    assert [id(r) for r in again.runs] == [id(r) for r in result.runs]  # nothing retrained
    calls = iter(range(1000))
    stopped = warmup.run_warmup(replace(TINY_WARMUP, seed=1), cache=cache, stop=lambda: next(calls) >= 13)
    assert stopped.status == "stopped" and len(stopped.runs) == 2 and len(cache) == 5


def test_options_problems_and_hosted_caps():
    assert init_problems(InitOptions()) == [] and warmup_problems(WarmupOptions()) == []
    assert warmup_problems(WarmupOptions(), environ={"NORMCORE_HOSTED": "1"}) == []
    assert "multiple of the 8 heads" in init_problems(InitOptions(width=12, heads=8))[0].message
    assert "more than the 10 training steps" in warmup_problems(WarmupOptions(steps=10, warmup_steps=20))[0].message
    big = WarmupOptions(steps=1000, depth=8, width=128, context=128, batch_size=32)
    assert warmup_problems(big, environ={})[0].message.startswith("4 runs × 1000 steps")
    medium = WarmupOptions(steps=200, depth=8, width=128)
    assert warmup_problems(medium, environ={}) == [] and warmup_problems(medium, environ={"NORMCORE_HOSTED": "1"})
    assert "sidebar" in warmup_problems(WarmupOptions(batch_size=1000))[0].message


def test_schema_defaults_are_the_dataclasses_and_round_trip_the_url():
    assert {k: getattr(InitOptions(), k) for k in INIT_FIELDS} == INIT_FIELDS.defaults()
    assert {k: getattr(WarmupOptions(), k) for k in WARMUP_FIELDS} == WARMUP_FIELDS.defaults()
    changed = WarmupOptions(lr=1e-3, depth=6, clip=1.0)
    assert WarmupOptions.from_query(changed.to_query()) == (changed, [])
    assert InitOptions.from_query({"ti_depth": "99"})[1][0].startswith("Ignored URL parameter ti_depth")


def test_command_line_runs_the_init_view_and_refuses_a_capped_value(capsys):
    from normcore.lab.experiments.transformers.__main__ import main

    assert main(["init", "--depth", "2", "--width", "16", "--heads", "2", "--context", "8", "--batch-size", "4"]) == 0
    assert "with post-LN" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["warmup", "--steps", "5000"])
    assert "outside the allowed range 10 to 1000" in capsys.readouterr().err
    assert main(["warmup", "--steps", "10", "--warmup-steps", "20"]) == 2
    assert "more than the 10 training steps" in capsys.readouterr().err


def test_progress_counts_blocks_and_the_sweep_ignores_the_chosen_init():
    seen = []
    at_init.block_gradients(TINY_INIT, on_progress=seen.append)
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])  # three placements, one seed
    swept = []
    at_init.depth_sweep(replace(TINY_INIT, depth=3), on_progress=swept.append)
    assert swept == sorted(swept) and swept[-1] == pytest.approx(1.0)
    assert swept[0] == pytest.approx(2 / (2 * 3 * (2 + 3)))  # the first pass: 2 of the 30 blocks differentiated
    gpt2 = replace(TINY_INIT, init="gpt2")
    assert at_init.sweep_options(gpt2) == at_init.sweep_options(TINY_INIT) == TINY_INIT


def test_an_interrupted_comparison_keeps_its_finished_runs_and_stops_the_one_in_progress():
    class Interrupted(Exception):
        pass

    live, cache = warmup.WarmupComparison(TINY_WARMUP), lm_run_cache()

    def cut_short(comparison):
        if len(comparison.runs) == 2 and comparison.runs[1].rows:  # the second run has reported once
            raise Interrupted

    with pytest.raises(Interrupted):
        warmup.run_warmup(TINY_WARMUP, cache=cache, on_progress=cut_short, live=live)
    assert live.running and [r.status for r in live.runs] == ["finished", "running"]
    live.mark_interrupted("Stopped by you.")
    assert not live.running and live.status == "stopped"
    assert [r.status for r in live.runs] == ["finished", "stopped"] and live.runs[1].message == "Stopped by you."
    assert live.runs[1].steps == live.runs[1].rows[-1]["step"] < TINY_WARMUP.steps
    finished = warmup.finished_comparisons()
    finished.put(live)  # a stopped comparison is not stored
    assert finished.get(TINY_WARMUP) is None
    done = warmup.run_warmup(TINY_WARMUP, cache=cache)
    finished.put(done)
    assert finished.get(replace(TINY_WARMUP)) is done and done.runs[0] is live.runs[0]  # the finished run, reused
