"""A tiny GPT: a causal decoder whose normalization, and where it sits, can be chosen.

In the style of nanoGPT's ``model.py``: token and learned position embeddings, a stack of
blocks (causal self-attention, then a GELU MLP, each on a residual branch), and a linear head
to next-token logits. What varies, and what it means:

* ``norm``: ``"layer" | "rms" | "dyt" | "none" | "batch"`` (see ``transformer_norms.py``);
* ``placement``, where the norm sits around each branch F (attention or MLP):

  - ``"post"``: ``x ← Norm(x + F(x))``, the original transformer (Vaswani et al. 2017);
  - ``"pre"``:  ``x ← x + F(Norm(x))``, GPT-2 and most models since;
  - ``"peri"``: ``x ← x + Norm_out(F(Norm_in(x)))``, the output normalized before the add, as
    Gemma 2 and 3 do;

  pre and peri end with a final norm ``ln_f`` before the head (post's last block already ends
  in one);
* ``qk_norm``: ``None | "layer" | "rms"``, per head, on queries and keys (Wortsman et al. 2023);
* ``init``: ``"xavier"`` (Xiong et al. 2020's analysis) or ``"gpt2"``; :meth:`TinyGPT.reset_parameters`
  says which tensors each touches;
* ``dyt_alpha``: DynamicTanh's initial α (norm ``"dyt"`` only; Zhu et al. 2025 use 0.5);
* ``impl``: ``"normcore"`` (default) or ``"torch"``: the same parameters, in the same order and
  with the same names, so one seed gives the same numbers in both.

The attention writes QKᵀ out (no fused kernel): at these sizes it costs little, and the probes
(:meth:`TinyGPT.recording`) read the largest attention logit and the attention entropy from it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from normcore.dynamic_tanh import DynamicTanh
from normcore.lab.transformer_norms import NORMS, QK_NORMS, make_norm

DYT_SATURATED = 2.0  # |αx| above this: tanh is within 4 % of ±1, its slope under 0.07

PLACEMENTS = ("post", "pre", "peri")
PLACEMENT_LABELS = {"post": "post-LN", "pre": "pre-LN", "peri": "peri-LN"}
INITS = ("xavier", "gpt2")
INIT_LABELS = {"xavier": "Xavier-normal, N(0, 1) embeddings", "gpt2": "GPT-2: N(0, 0.02), scaled residual projections"}


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees itself and the positions before it."""

    def __init__(self, d_model: int, n_heads: int, context: int, qk_norm, impl: str, eps):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V side by side
        self.c_proj = nn.Linear(d_model, d_model)  # back onto the residual stream
        self.q_norm = make_norm(qk_norm, self.head_dim, impl, eps) if qk_norm else None
        self.k_norm = make_norm(qk_norm, self.head_dim, impl, eps) if qk_norm else None
        self.register_buffer("causal", torch.ones(context, context, dtype=torch.bool).tril(), persistent=False)
        self.record = False  # set by TinyGPT.recording(): keep the statistics below
        self.max_logit: torch.Tensor | None = None  # the largest pre-softmax logit of the last call
        self.entropy: torch.Tensor | None = None  # mean entropy (nats) of a query's attention weights
        self.head_max_logit: torch.Tensor | None = None  # (n_heads,): the same two, head by head
        self.head_entropy: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if self.q_norm is not None:  # QK-norm: each head's query and key vectors normalized
            q, k = self.q_norm(q), self.k_norm(k)
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T)
        logits = logits.masked_fill(~self.causal[:T, :T], float("-inf"))  # no looking ahead
        weights = F.softmax(logits, dim=-1)
        if self.record:
            self.head_max_logit = logits.detach().amax(dim=(0, 2, 3))  # the masked entries are -inf, never the max
            self.head_entropy = torch.special.entr(weights.detach()).sum(-1).mean(dim=(0, 2))  # −Σ p log p, 0·log 0 = 0
            self.max_logit, self.entropy = self.head_max_logit.max(), self.head_entropy.mean()
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.c_proj(y)


class MLP(nn.Module):
    """The feed-forward branch: d → 4d → GELU → d."""

    def __init__(self, d_model: int):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)  # the "FFN output weight" of Xiong's Fig. 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """One attention branch and one MLP branch, each with its norm(s) where ``placement`` puts
    them: ``ln_1``/``ln_2`` (post: after the add; pre and peri: on the branch's input) and, for
    peri only, ``ln_1_out``/``ln_2_out`` on the branch's output."""

    def __init__(self, d_model, n_heads, context, norm, placement, qk_norm, impl, eps, dyt_alpha=0.5):
        super().__init__()
        self.placement = placement
        self.ln_1 = make_norm(norm, d_model, impl, eps, dyt_alpha)
        self.attn = CausalSelfAttention(d_model, n_heads, context, qk_norm, impl, eps)
        self.ln_1_out = make_norm(norm, d_model, impl, eps, dyt_alpha) if placement == "peri" else None
        self.ln_2 = make_norm(norm, d_model, impl, eps, dyt_alpha)
        self.mlp = MLP(d_model)
        self.ln_2_out = make_norm(norm, d_model, impl, eps, dyt_alpha) if placement == "peri" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._residual(x, self.attn, self.ln_1, self.ln_1_out)
        return self._residual(x, self.mlp, self.ln_2, self.ln_2_out)

    def _residual(self, x, branch, norm, norm_out):
        if self.placement == "post":
            return norm(x + branch(x))  # Norm(x + F(x))
        if self.placement == "pre":
            return x + branch(norm(x))  # x + F(Norm(x))
        return x + norm_out(branch(norm(x)))  # peri: x + Norm_out(F(Norm_in(x)))


def check_choice(name: str, value, choices) -> None:
    """A ``ValueError`` naming the choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}.")


class TinyGPT(nn.Module):
    """A causal decoder: ``model(tokens)`` maps (B, T) token ids, T ≤ ``context``, to (B, T,
    ``vocab_size``) next-token logits. ``model.blocks`` is the ``nn.ModuleList`` of blocks.
    Any size is accepted: the caps apply where pages and the command line take input."""

    def __init__(self, vocab_size: int, context: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 4,
                 norm: str = "layer", placement: str = "pre", qk_norm: str | None = None, init: str = "xavier",
                 impl: str = "normcore", eps: float | None = None, dyt_alpha: float = 0.5):
        super().__init__()
        for name, value, choices in (("norm", norm, NORMS), ("placement", placement, PLACEMENTS),
                                     ("qk_norm", qk_norm, QK_NORMS), ("init", init, INITS)):
            check_choice(name, value, choices)
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be a multiple of n_heads {n_heads} (each head gets d_model / n_heads).")
        if min(vocab_size, context, n_heads, n_layers) < 1:
            raise ValueError("vocab_size, context, n_heads and n_layers must each be at least 1.")
        self.context, self.norm, self.placement, self.init = context, norm, placement, init
        self.wte = nn.Embedding(vocab_size, d_model)  # token embedding
        self.wpe = nn.Embedding(context, d_model)  # learned position embedding
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, context, norm, placement, qk_norm, impl, eps, dyt_alpha) for _ in range(n_layers))
        self.ln_f = make_norm(norm, d_model, impl, eps, dyt_alpha) if placement != "post" else None
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)  # not tied to wte: the inits differ
        self.record = False
        self.residual_norms: list[torch.Tensor] = []  # per block, while recording
        self.dyt_saturation: dict[str, torch.Tensor] = {}  # per DynamicTanh, while recording
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every Linear and Embedding by ``self.init``; norm parameters keep their own
        defaults (γ = 1, β = 0, DynamicTanh's α = 0.5, BatchNorm's running statistics 0 and 1).

        * ``"xavier"``: every Linear weight Xavier-normal, std √(2 / (fan_in + fan_out)), with
          ``c_attn`` taken as its three d×d matrices W_Q, W_K, W_V (Xiong et al. analyse them
          separately); that includes ``lm_head``; every Linear bias zero; ``wte`` and ``wpe``
          N(0, 1) (torch's Embedding default).
        * ``"gpt2"``: every Linear weight N(0, 0.02), ``lm_head`` included, except the residual
          output projections (each block's ``attn.c_proj`` and ``mlp.c_proj``), which get
          N(0, 0.02/√(2L)) for L blocks; every Linear bias zero; ``wte`` and ``wpe`` N(0, 0.02).
        """
        out_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for name, module in self.named_modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 1.0 if self.init == "xavier" else 0.02)
            elif isinstance(module, nn.Linear):
                self._init_linear(name, module, out_std)

    def _init_linear(self, name: str, linear: nn.Linear, out_std: float) -> None:
        if self.init == "xavier":
            parts = linear.weight.chunk(3) if name.endswith("attn.c_attn") else (linear.weight,)
            for part in parts:  # views: each initialised in place with its own fans
                nn.init.xavier_normal_(part)
        else:
            nn.init.normal_(linear.weight, 0.0, out_std if name.endswith("c_proj") else 0.02)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[-1]
        if tokens.dim() != 2 or T > self.context:
            raise ValueError(f"TinyGPT takes (batch, time) token ids with time ≤ context {self.context}; "
                             f"got shape {tuple(tokens.shape)}. Cut the sequences to at most {self.context} tokens.")
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        self.residual_norms = []
        for block in self.blocks:
            x = block(x)
            if self.record:  # the mean over tokens of ‖x_t‖₂, the residual stream after this block
                self.residual_norms.append(x.detach().norm(dim=-1).mean())
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.lm_head(x)

    @contextmanager
    def recording(self):
        """Within this block, forward passes keep per block the residual stream's norm
        (``residual_norms``) and the attention's largest logit and entropy
        (``blocks[i].attn.max_logit`` / ``.entropy``, and per head ``head_max_logit`` /
        ``head_entropy``), and per DynamicTanh (by module name) the share of its inputs in tanh's
        saturated range, |αx| > 2 (``dyt_saturation``), as detached tensors."""
        attentions = [block.attn for block in self.blocks]
        self.record, self.dyt_saturation = True, {}
        for attn in attentions:
            attn.record = True
        hooks = [module.register_forward_hook(self._saturation_hook(name))
                 for name, module in self.named_modules() if isinstance(module, DynamicTanh)]
        try:
            yield self
        finally:
            self.record = False
            for attn in attentions:
                attn.record = False
            for hook in hooks:
                hook.remove()

    def _saturation_hook(self, name: str):
        """A forward hook keeping the share of a DynamicTanh's inputs with |αx| > 2 (tanh ≥ 0.96)."""
        def keep(module, inputs, output):
            self.dyt_saturation[name] = ((module.alpha.detach() * inputs[0].detach()).abs() > DYT_SATURATED).float().mean()
        return keep


__all__ = ["Block", "CausalSelfAttention", "INITS", "INIT_LABELS", "MLP", "PLACEMENTS", "PLACEMENT_LABELS", "TinyGPT",
           "check_choice"]
