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
"""

from __future__ import annotations

import torch

PROBE_COLUMNS = ("step", "block", "grad_norm", "ffn_grad_norm", "residual_norm", "max_logit", "entropy")


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


__all__ = ["PROBE_COLUMNS", "probe_rows"]
