"""What a probe reads from a :class:`~normcore.lab.transformer.TinyGPT`, block by block, after a
forward pass under ``model.recording()`` and its backward pass (before the optimizer step).

One row per block (``PROBE_COLUMNS``):

* ``grad_norm``: the L2 norm of the gradient of all the block's parameters together;
* ``ffn_grad_norm``: the L2 norm of the gradient of the block's FFN output weight
  (``mlp.c_proj.weight``), the quantity of Xiong et al. 2020, Fig. 3;
* ``residual_norm``: the residual stream after the block, the mean over tokens of ‖x_t‖₂;
* ``max_logit``: the largest attention logit q·k/√d_head over the block's heads and the
  positions each query may see (Wortsman et al. 2023 watch it grow at high learning rates);
* ``entropy``: the attention weights' entropy in nats, averaged over queries and heads
  (log of the number of visible positions when attention is uniform, 0 when one-hot).

Two more tables from the same reading: :func:`head_rows`, one row per (block, head) with that
head's largest logit and mean entropy (``HEAD_COLUMNS``: a collapsing head shows as its entropy
falls to 0), and :func:`dyt_rows`, one row per DynamicTanh (``DYT_COLUMNS``: its α, and the
share of its inputs in tanh's saturated range, |αx| > 2).
"""

from __future__ import annotations

import torch

PROBE_COLUMNS = ("step", "block", "grad_norm", "ffn_grad_norm", "residual_norm", "max_logit", "entropy")
HEAD_COLUMNS = ("step", "block", "head", "max_logit", "entropy")
DYT_COLUMNS = ("step", "layer", "alpha", "saturated")


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(float("nan"))
    return torch.linalg.vector_norm(torch.cat(grads).double())


def probe_rows(model, step: int) -> list[dict]:
    """The rows for ``step`` (blocks numbered from 1), read in one device sync."""
    per_block = []
    for i, block in enumerate(model.blocks):
        ffn = block.mlp.c_proj.weight.grad
        values = [_grad_norm(block.parameters()),
                  torch.linalg.vector_norm(ffn.double()) if ffn is not None else torch.tensor(float("nan")),
                  model.residual_norms[i] if i < len(model.residual_norms) else torch.tensor(float("nan")),
                  block.attn.max_logit if block.attn.max_logit is not None else torch.tensor(float("nan")),
                  block.attn.entropy if block.attn.entropy is not None else torch.tensor(float("nan"))]
        per_block.append(torch.stack([v.detach().double().cpu() for v in values]))
    table = torch.stack(per_block).tolist() if per_block else []
    return [dict(zip(PROBE_COLUMNS, (step, i + 1, *row))) for i, row in enumerate(table)]


def head_rows(model, step: int) -> list[dict]:
    """Per (block, head) (both numbered from 1): the head's largest logit and mean entropy."""
    rows = []
    for i, block in enumerate(model.blocks):
        attn = block.attn
        if attn.head_max_logit is None:
            continue
        table = torch.stack([attn.head_max_logit, attn.head_entropy]).double().cpu().T.tolist()
        rows.extend(dict(zip(HEAD_COLUMNS, (step, i + 1, h + 1, *row))) for h, row in enumerate(table))
    return rows


def dyt_rows(model, step: int) -> list[dict]:
    """Per DynamicTanh the model ran under ``recording()`` (``layer``: its module name): α and
    the share of its inputs with |αx| > 2."""
    modules = dict(model.named_modules())
    names = list(model.dyt_saturation)
    if not names:
        return []
    table = torch.stack([torch.stack([modules[n].alpha.detach().reshape(()), model.dyt_saturation[n]]).double().cpu()
                         for n in names]).tolist()
    return [dict(zip(DYT_COLUMNS, (step, name, *row))) for name, row in zip(names, table)]


__all__ = ["DYT_COLUMNS", "HEAD_COLUMNS", "PROBE_COLUMNS", "dyt_rows", "head_rows", "probe_rows"]
