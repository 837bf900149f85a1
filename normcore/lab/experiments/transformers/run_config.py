"""One language-model training run, described: :class:`LMRunConfig` (the model, the optimizer,
the schedule, the probes) and the model it builds. Its :attr:`~LMRunConfig.key`, with the
corpus's hash, keys the finished-results cache: the text differs between Python versions.

Part 1 of the Transformers page trains post- and pre-LN with and without warm-up; part 2
sweeps the learning rate with QK-norm and z-loss and compares norms, all through this one config.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import torch

from normcore.lab.transformer import INITS, PLACEMENTS, TinyGPT, check_choice
from normcore.lab.transformer_norms import IMPLS, NORMS, QK_NORMS

ADAMW_BETAS = (0.9, 0.95)  # nanoGPT's and Wortsman et al.'s


@dataclass(frozen=True)
class LMRunConfig:
    """Next-token training of a :class:`~normcore.lab.transformer.TinyGPT` on the corpus.

    The learning rate rises linearly over ``warmup_steps`` (``lr·(t+1)/warmup_steps`` at step t)
    and then stays at ``lr``; ``warmup_steps=0`` starts at ``lr``. ``clip``: the gradients'
    global norm is clipped to it (None: no clipping). ``z_loss``: the coefficient of
    mean(log²Z) added to the loss (Z: the softmax's normaliser; 0: none). ``dyt_alpha``:
    DynamicTanh's initial α (norm "dyt"). Weight decay applies
    to the Linear and Embedding weights only (nanoGPT's rule). Probes every ``probe_every``
    steps (0: never), progress reports every ``log_every`` steps."""

    norm: str = "layer"
    placement: str = "pre"
    qk_norm: str | None = None
    init: str = "xavier"
    impl: str = "normcore"
    eps: float | None = None
    dyt_alpha: float = 0.5
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 4
    context: int = 64
    batch_size: int = 32
    steps: int = 100
    lr: float = 5e-3
    warmup_steps: int = 0
    clip: float | None = None
    weight_decay: float = 0.0
    z_loss: float = 0.0
    seed: int = 0
    log_every: int = 5
    probe_every: int = 10
    device: str = "cpu"

    def check(self) -> None:
        """Raise ``ValueError`` in words for a configuration no run can take."""
        for name, value, choices in (("norm", self.norm, NORMS), ("placement", self.placement, PLACEMENTS),
                                     ("qk_norm", self.qk_norm, QK_NORMS), ("init", self.init, INITS),
                                     ("impl", self.impl, IMPLS)):
            check_choice(name, value, choices)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"The learning rate must be a positive number, got {self.lr}.")
        if self.steps < 1 or self.log_every < 1 or self.probe_every < 0 or self.warmup_steps < 0:
            raise ValueError("steps and log_every must be ≥ 1, probe_every and warmup_steps ≥ 0.")
        if self.d_model % self.n_heads:
            raise ValueError(f"The width {self.d_model} must be a multiple of the {self.n_heads} heads.")
        if self.norm == "batch" and self.batch_size * self.context < 2:
            raise ValueError("BatchNorm needs more than one value per channel: use a larger batch or context.")
        if not (math.isfinite(self.dyt_alpha) and self.dyt_alpha > 0):
            raise ValueError(f"DynamicTanh's initial alpha must be a positive number, got {self.dyt_alpha}.")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"The clipping norm must be positive, got {self.clip}.")

    @property
    def key(self) -> tuple:
        """Everything the run's numbers depend on, with the corpus's hash."""
        from normcore.lab.text_corpus import load_corpus

        return (load_corpus().digest, *astuple(self))

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        return self.lr

    def build_model(self, vocab_size: int) -> TinyGPT:
        """The model, its initial weights drawn from ``seed`` without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return TinyGPT(vocab_size, self.context, self.d_model, self.n_heads, self.n_layers, self.norm,
                           self.placement, self.qk_norm, self.init, self.impl, self.eps, self.dyt_alpha)


def make_adamw(model: torch.nn.Module, config: LMRunConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the Linear and Embedding weights (rank ≥ 2) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr_at(0), betas=ADAMW_BETAS)


__all__ = ["ADAMW_BETAS", "LMRunConfig", "make_adamw"]
