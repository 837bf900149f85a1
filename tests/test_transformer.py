"""The lab's TinyGPT (normcore/lab/transformer.py).

Oracles: torch.nn's own layers (impl="torch") in float64 for normcore's; causality checked
by perturbing a later token; the init's statistics against the docstring's stated
distributions; Xiong et al. 2020's trend (post-LN's gradient near the output larger than
pre-LN's by a factor that grows with depth, under Xavier init).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from normcore.lab import devices
from normcore.lab.transformer import TinyGPT
from normcore.lab.transformer_norms import NORMS

VOCAB, CONTEXT = 11, 12


def _model(seed=0, **kwargs) -> TinyGPT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyGPT(VOCAB, CONTEXT, **kwargs)


def _tokens(seed=0, batch=3, time=CONTEXT) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, time), generator=torch.Generator().manual_seed(seed))


def _loss_and_grads(model: TinyGPT, tokens: torch.Tensor):
    logits = model(tokens)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
    loss.backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("norm,placement,qk_norm", [
    ("layer", "post", None), ("layer", "pre", "layer"), ("rms", "peri", "rms"), ("batch", "pre", None),
    ("batch", "post", None), ("dyt", "peri", None), ("none", "pre", "layer"), ("rms", "post", None),
])
def test_normcore_and_torch_build_the_same_model_and_gradients_in_float64(norm, placement, qk_norm):
    kwargs = dict(d_model=16, n_heads=2, n_layers=2, norm=norm, placement=placement, qk_norm=qk_norm)
    ours, theirs = _model(impl="normcore", **kwargs).double(), _model(impl="torch", **kwargs).double()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    tokens = _tokens()
    logits, grads = _loss_and_grads(ours, tokens)
    expected_logits, expected = _loss_and_grads(theirs, tokens)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
    for name, grad in expected.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("placement", ["post", "pre", "peri"])
def test_a_later_token_never_changes_an_earlier_logit(norm, placement):
    model = _model(d_model=16, n_heads=2, n_layers=2, norm=norm, placement=placement, qk_norm="rms").double()
    tokens, t = _tokens(1), 7
    changed = tokens.clone()
    changed[:, t:] = (changed[:, t:] + 1) % VOCAB
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.no_grad():
            before, after = model(tokens)[:, :t], model(changed)[:, :t]
        if norm == "batch" and mode == "train":  # its statistics pool every position: the future leaks in
            assert not torch.allclose(before, after)
        else:
            torch.testing.assert_close(before, after, rtol=0, atol=1e-12, msg=f"{norm} {placement} {mode}")


def _last_ffn_grad(placement: str, depth: int, seed: int) -> float:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyGPT(VOCAB, 16, d_model=32, n_heads=4, n_layers=depth, placement=placement, init="xavier")
    tokens = torch.randint(VOCAB, (8, 17), generator=torch.Generator().manual_seed(100 + seed))
    F.cross_entropy(model(tokens[:, :-1]).reshape(-1, VOCAB), tokens[:, 1:].reshape(-1)).backward()
    return float(model.blocks[-1].mlp.c_proj.weight.grad.norm())


def test_xavier_post_ln_gradient_near_the_output_outgrows_pre_ln_with_depth():
    ratio = {}
    with devices.thread_count(1):  # small matrices: one thread, and no fight over a busy machine's cores
        for depth in (4, 24):
            post = sum(_last_ffn_grad("post", depth, s) for s in range(2))
            pre = sum(_last_ffn_grad("pre", depth, s) for s in range(2))
            ratio[depth] = post / pre
    assert ratio[4] > 1 and ratio[24] > 1.5 * ratio[4], ratio  # Xiong's Theorem 1: the gap grows ~√L (√6 ≈ 2.4 here)


def test_xavier_init_touches_what_its_docstring_says():
    model = _model(0, d_model=64, n_heads=4, n_layers=3, init="xavier")
    d = 64
    for block in model.blocks:
        for part in block.attn.c_attn.weight.detach().chunk(3):  # W_Q, W_K, W_V each d×d
            assert part.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.08)
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(math.sqrt(2 / (5 * d)), rel=0.08)
        assert not block.attn.c_attn.bias.any() and not block.mlp.c_proj.bias.any()
        assert torch.equal(block.ln_1.weight.detach(), torch.ones(d))
    assert model.wte.weight.std().item() == pytest.approx(1.0, rel=0.15)
    assert model.wpe.weight.std().item() == pytest.approx(1.0, rel=0.15)


def test_gpt2_init_touches_what_its_docstring_says():
    model = _model(0, d_model=64, n_heads=4, n_layers=8, init="gpt2")
    for block in model.blocks:
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            assert proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.08)
            assert not proj.bias.any()
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_final_norm_and_peri_norms_exist_where_the_placement_says():
    assert _model(placement="post").ln_f is None and _model(placement="pre").ln_f is not None
    peri = _model(placement="peri", qk_norm="layer", d_model=16, n_heads=2)
    assert peri.blocks[0].ln_1_out is not None and peri.blocks[0].attn.q_norm.weight.shape == (8,)
    assert _model(placement="pre").blocks[0].ln_1_out is None


def test_bad_arguments_say_what_to_change():
    with pytest.raises(ValueError, match="time ≤ context 12"):
        _model()(_tokens(time=CONTEXT + 1))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        TinyGPT(VOCAB, CONTEXT, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="Unknown placement"):
        TinyGPT(VOCAB, CONTEXT, placement="sandwich")
