"""normcore.SyncBatchNorm in float16 and bfloat16 across 2 real gloo workers (issue 26).

The layer, its γ/β and its running statistics are all in the half dtype, as ``.to(dtype)``
leaves them. Together the workers must be within the half-precision rule (``half_rule.py``)
of ONE ``torch.nn.BatchNorm1d`` in that dtype on the whole batch, arbitrated by the same
BatchNorm in float64 on the same values: outputs, input gradients, γ/β gradients (summed over
the workers) and the running statistics after every step, at momenta 0.1, −1.2 and None.
One pool of 2 workers serves the module (one spawn).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import normcore
from normcore.lab.distributed.pool import WorkerPool
from tests.half_rule import HALF, assert_within_rule

SIZES, CHANNELS, LENGTH, STEPS = (3, 5), 48, 4, 3


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, timeout_s=10.0) as workers:
        yield workers


def _steps(bn, case: dict, xs, dys, dtype) -> dict:
    """Train steps of ``bn`` (given the case's γ, β and running statistics, then moved to ``dtype``):
    {"<tensor> <step>": tensor} for the output, the gradients and the running statistics."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(torch.as_tensor(case[name]))
    bn.to(dtype)
    out = {}
    for step, (x_np, dy_np) in enumerate(zip(xs, dys)):
        x = torch.tensor(x_np).to(dtype).requires_grad_()
        y = bn(x)
        y.backward(torch.tensor(dy_np).to(dtype))
        tensors = {"output": y.detach(), "input grad": x.grad, "weight grad": bn.weight.grad,
                   "bias grad": bn.bias.grad, "running_mean": bn.running_mean, "running_var": bn.running_var}
        out |= {f"{key} {step}": t.clone() for key, t in tensors.items()}
        bn.zero_grad(set_to_none=True)
    return out


def _worker_half(worker, case: dict) -> dict:
    """A half SyncBatchNorm on this worker's slices; float32 numpy (exact) back, and the dtypes seen."""
    dtype = getattr(torch, case["dtype"])
    out = _steps(normcore.SyncBatchNorm(CHANNELS, momentum=case["momentum"]), case, case["x"], case["dy"], dtype)
    return {"dtypes": {str(t.dtype) for t in out.values()}} | {k: t.float().numpy() for k, t in out.items()}


def _whole_batch(case: dict, dtype) -> dict:
    """torch.nn.BatchNorm1d on each whole batch in ``dtype`` (the half one, or float64: the arbiter)."""
    return _steps(nn.BatchNorm1d(CHANNELS, momentum=case["momentum"]), case, case["whole_x"], case["whole_dy"], dtype)


def _case(dtype, momentum, seed=0) -> dict:
    """Half-representable batches (offset 2, so the mean matters), cut at SIZES[0]."""
    g = torch.Generator().manual_seed(seed)
    shape = (sum(SIZES), CHANNELS, LENGTH)
    whole_x = [(torch.randn(shape, generator=g) * 3 + 2).to(dtype).float().numpy() for _ in range(STEPS)]
    whole_dy = [torch.randn(shape, generator=g).to(dtype).float().numpy() for _ in range(STEPS)]
    start = (torch.randn(CHANNELS, generator=g) * 3).to(dtype).float(), (torch.rand(CHANNELS, generator=g) * 4 + 0.5).to(dtype).float()
    cut = SIZES[0]
    slices = [{"x": [x[:cut] for x in whole_x], "dy": [d[:cut] for d in whole_dy]},
              {"x": [x[cut:] for x in whole_x], "dy": [d[cut:] for d in whole_dy]}]
    common = {"dtype": str(dtype)[6:], "momentum": momentum, "weight": np.linspace(0.5, 2.0, CHANNELS),
              "bias": np.linspace(-1, 1, CHANNELS), "running_mean": start[0].numpy(), "running_var": start[1].numpy()}
    return {"whole_x": whole_x, "whole_dy": whole_dy, "slices": [common | s for s in slices], **common}


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("momentum", [0.1, -1.2, None], ids=["ema", "negative", "cumulative"])
def test_half_sync_batchnorm_on_two_workers_within_the_rule(pool, dtype, momentum):
    case = _case(dtype, momentum)
    results = pool.map(_worker_half, case["slices"], timeout_s=60)
    assert all(r["dtypes"] == {str(dtype)} for r in results), [r["dtypes"] for r in results]
    ours = {}
    for key in results[0]:
        if key == "dtypes":
            continue
        parts = [torch.as_tensor(r[key]).double() for r in results]
        if key.startswith(("output", "input grad")):  # each worker's slice, in rank order
            ours[key] = torch.cat(parts).to(dtype)
        elif key.startswith(("weight grad", "bias grad")):  # each worker's own sum: add them
            ours[key] = (parts[0] + parts[1]).to(dtype)
        else:  # running statistics: every worker holds the same
            torch.testing.assert_close(parts[0], parts[1], rtol=0, atol=0)
            ours[key] = parts[0].to(dtype)
    assert_within_rule(ours, _whole_batch(case, dtype), _whole_batch(case, torch.float64), dtype)
