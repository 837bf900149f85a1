"""normcore.SyncBatchNorm across real worker processes (gloo on 127.0.0.1's CPU).

W workers each hold a slice of one batch; together they must give what ONE
``torch.nn.BatchNorm`` gives on the whole batch in this process (float64, the oracle):
outputs, each slice's input gradient, γ/β gradients summed over workers, the running
statistics after every step, eval outputs. Slices are unequal, down to 1 and 0 samples.
Tolerances: ``assert_close``'s defaults in float32, 1e-12 in float64.

One pool of W = 2 and one of W = 3 workers serve the whole module (spawning costs seconds);
the workers run the ``_worker_*`` functions below and send back numpy arrays; every
assertion is made here, in the parent. The DDP trajectory test is here too, on the W = 2 pool.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import normcore
from normcore.lab.distributed.pool import WorkerError, WorkerPool
from normcore.sync_batchnorm import time_collectives

OFFSET, STD = 1e4, 1e-2  # the large-offset case (as tests/test_precision.py)
MOMENTA = {"ema": 0.1, "cumulative": None}


@pytest.fixture(scope="module")
def pools():
    """{2: pool, 3: pool}, started lazily, closed (and their processes gone) at module end."""
    started: dict[int, WorkerPool] = {}

    def get(world_size: int) -> WorkerPool:
        if world_size not in started:
            started[world_size] = WorkerPool(world_size, timeout_s=10.0)
        return started[world_size]

    try:
        yield get
    finally:
        for pool in started.values():
            pool.close()
        for pool in started.values():
            assert not any(p.is_alive() for p in pool._procs)


# -- what each worker runs -----------------------------------------------------------------


def _worker_slices(worker, case: dict) -> dict:
    """Train-mode steps on this worker's slices, then one eval pass: plain numpy results."""
    dtype = getattr(torch, case["dtype"])
    bn = normcore.SyncBatchNorm(case["channels"], momentum=case["momentum"], affine=case["affine"], dtype=dtype)
    if case["affine"]:
        with torch.no_grad():
            bn.weight.copy_(torch.as_tensor(case["weight"]))
            bn.bias.copy_(torch.as_tensor(case["bias"]))
    out = {k: [] for k in ("y", "dx", "dw", "db", "rm", "rv", "calls")}
    for x_np, dy_np in zip(case["x"], case["dy"]):
        x = torch.tensor(x_np, dtype=dtype, requires_grad=True)
        with time_collectives() as timer:
            y = bn(x)
            y.backward(torch.tensor(dy_np, dtype=dtype))
        out["y"].append(y.detach().numpy())
        out["dx"].append(x.grad.numpy())
        if case["affine"]:
            out["dw"].append(bn.weight.grad.numpy().copy())
            out["db"].append(bn.bias.grad.numpy().copy())
            bn.zero_grad(set_to_none=True)
        out["rm"].append(bn.running_mean.numpy().copy())
        out["rv"].append(bn.running_var.numpy().copy())
        out["calls"].append(timer.calls)
    stats = bn.last_stats
    out["last_stats"] = (stats.values_per_stat, stats.mean.requires_grad or stats.var.requires_grad)
    bn.eval()
    with time_collectives() as timer:
        out["eval_y"] = bn(torch.tensor(case["x"][-1], dtype=dtype)).detach().numpy()
    out["eval_calls"] = timer.calls
    return out


# -- the oracle: one torch.nn.BatchNorm on the whole batch, in float64 ----------------------


def _torch_layer(case: dict) -> nn.Module:
    layer = nn.BatchNorm2d if len(case["shape"]) == 4 else nn.BatchNorm1d
    bn = layer(case["channels"], momentum=case["momentum"], affine=case["affine"], dtype=torch.float64)
    if case["affine"]:
        with torch.no_grad():
            bn.weight.copy_(torch.as_tensor(case["weight"]))
            bn.bias.copy_(torch.as_tensor(case["bias"]))
    return bn


def _oracle(case: dict, shift: float) -> dict:
    """torch.nn.BatchNorm on each whole batch (minus ``shift``: exact, and BN's outputs and
    gradients do not depend on it; the running mean gets it back as m·shift per step)."""
    bn = _torch_layer(case)
    out = {k: [] for k in ("y", "dx", "dw", "db", "rm", "rv")}
    shift_in_mean = 0.0
    for step, (x_np, dy_np) in enumerate(zip(case["whole_x"], case["whole_dy"]), start=1):
        x = torch.tensor(x_np, dtype=torch.float64).sub_(shift).requires_grad_()
        y = bn(x)
        y.backward(torch.tensor(dy_np, dtype=torch.float64))
        out["y"].append(y.detach())
        out["dx"].append(x.grad)
        if case["affine"]:
            out["dw"].append(bn.weight.grad.clone())
            out["db"].append(bn.bias.grad.clone())
            bn.zero_grad(set_to_none=True)
        factor = 1.0 / step if case["momentum"] is None else case["momentum"]
        shift_in_mean = (1 - factor) * shift_in_mean + factor * shift
        out["rm"].append(bn.running_mean.clone() + shift_in_mean)
        out["rv"].append(bn.running_var.clone())
    return out


def make_case(sizes, *, shape=(4,), dtype="float64", offset=0.0, momentum=0.1, affine=True, steps=2, seed=0) -> dict:
    """Batches of sum(sizes) samples of shape (C, *spatial), cut into one slice per worker."""
    g = torch.Generator().manual_seed(seed)
    channels, n = shape[0], sum(sizes)
    std = STD if offset else 1.0
    whole_x = [(offset + std * torch.randn((n, *shape), generator=g, dtype=torch.float64)) for _ in range(steps)]
    whole_x = [x.to(getattr(torch, dtype)).double().numpy() for x in whole_x]  # the values the workers see
    whole_dy = [torch.randn((n, *shape), generator=g, dtype=torch.float64).to(getattr(torch, dtype)).double().numpy()
                for _ in range(steps)]
    cuts = np.cumsum([0, *sizes])
    np_dtype = np.float32 if dtype == "float32" else np.float64
    slices = [
        {"x": [x[a:b].astype(np_dtype) for x in whole_x], "dy": [d[a:b].astype(np_dtype) for d in whole_dy]}
        for a, b in zip(cuts[:-1], cuts[1:])
    ]
    return {
        "sizes": list(sizes), "shape": (n, *shape), "channels": channels, "dtype": dtype, "momentum": momentum,
        "affine": affine, "offset": offset, "weight": np.linspace(0.5, 2.0, channels), "bias": np.linspace(-1, 1, channels),
        "whole_x": whole_x, "whole_dy": whole_dy, "slices": slices,
    }


def run_case(pool: WorkerPool, case: dict) -> list[dict]:
    common = {k: case[k] for k in ("channels", "dtype", "momentum", "affine", "weight", "bias")}
    return pool.map(_worker_slices, [common | s for s in case["slices"]], timeout_s=60)


def _close(actual, expected, dtype: str, what: str) -> float:
    actual = torch.as_tensor(np.asarray(actual)).double()
    expected = torch.as_tensor(expected).double()
    if dtype == "float64":
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12, msg=lambda m: f"{what}: {m}")
    else:
        torch.testing.assert_close(actual.float(), expected.float(), msg=lambda m: f"{what}: {m}")
    return (actual - expected).abs().max().item() if actual.numel() else 0.0


def check_against_one_batchnorm(case: dict, results: list[dict]) -> dict[str, float]:
    """Every quantity against the oracle; returns max |Δ| per quantity."""
    shift = case["offset"] if case["dtype"] == "float64" else 0.0
    ref, dtype, worst = _oracle(case, shift), case["dtype"], {}
    for step in range(len(case["whole_x"])):
        cat = lambda key: np.concatenate([r[key][step] for r in results])  # noqa: E731 (slices, in rank order)
        checks = [("y", cat("y")), ("dx", cat("dx"))]
        if case["affine"]:
            checks += [("dw", sum(r["dw"][step] for r in results)), ("db", sum(r["db"][step] for r in results))]
        checks += [(k, r[k][step]) for r in results for k in ("rm", "rv")]  # every worker holds them
        for key, actual in checks:
            worst[key] = max(worst.get(key, 0.0), _close(actual, ref[key][step], dtype, f"step {step + 1} {key}"))
        assert [r["calls"][step] for r in results] == [3] * len(results)  # 2 all-reduces forward, 1 backward
    values_per_channel = int(np.prod(case["shape"])) // case["channels"]  # over every worker's slice
    assert [r["last_stats"] for r in results] == [(values_per_channel, False)] * len(results)
    # Eval normalizes with the running statistics checked above: (x − rm)/sqrt(rv + ε)·γ + β,
    # written out in float64. (Not torch's eval kernel: it computes x·a + b, which at an offset
    # of 1e4 cancels to ~1e-10; nor the oracle's running mean, which float64 holds to ~1e-12.)
    x = torch.as_tensor(case["whole_x"][-1])
    per_channel = lambda key: torch.as_tensor(np.asarray(key)).reshape((1, -1) + (1,) * (x.dim() - 2))  # noqa: E731
    want = (x - per_channel(results[0]["rm"][-1])) / torch.sqrt(per_channel(results[0]["rv"][-1]) + 1e-5)
    if case["affine"]:
        want = want * per_channel(case["weight"]) + per_channel(case["bias"])
    worst["eval_y"] = _close(np.concatenate([r["eval_y"] for r in results]), want, dtype, "eval y")
    assert [r["eval_calls"] for r in results] == [0] * len(results)  # eval: running statistics, no collective
    return worst


# -- the cases -------------------------------------------------------------------------------

CASES = {
    # id: (sizes per worker, per-sample shape, dtype, offset, momentum)
    "w2-1d-NC-f64": ([3, 4], (4,), "float64", 0.0, 0.1),
    "w2-1d-NC-f32": ([3, 4], (4,), "float32", 0.0, 0.1),
    "w2-1d-NCL-one-sample-f64": ([1, 5], (3, 5), "float64", 0.0, None),
    "w2-1d-NCL-one-sample-f32": ([1, 5], (3, 5), "float32", 0.0, None),
    "w2-2d-empty-rank-f64": ([0, 4], (3, 2, 3), "float64", 0.0, 0.1),
    "w2-2d-offset-f32": ([2, 5], (3, 3, 2), "float32", OFFSET, 0.1),
    "w2-2d-offset-f64": ([2, 5], (3, 3, 2), "float64", OFFSET, 0.1),
    "w3-1d-NC-one-and-empty-f64": ([5, 1, 0], (4,), "float64", 0.0, 0.1),
    "w3-1d-NC-one-and-empty-f32": ([5, 1, 0], (4,), "float32", 0.0, None),
    "w3-1d-NCL-f32": ([2, 3, 4], (2, 6), "float32", 0.0, 0.1),
    "w3-2d-one-and-empty-f64": ([0, 1, 3], (2, 3, 3), "float64", 0.0, None),
    "w3-2d-one-and-empty-f32": ([0, 1, 3], (2, 3, 3), "float32", 0.0, 0.1),
    "w3-1d-NCL-offset-f32": ([4, 0, 1], (3, 4), "float32", OFFSET, 0.1),
    "w3-1d-NCL-offset-f64": ([4, 0, 1], (3, 4), "float64", OFFSET, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_workers_together_equal_one_batchnorm_on_the_whole_batch(pools, name):
    sizes, shape, dtype, offset, momentum = CASES[name]
    case = make_case(sizes, shape=shape, dtype=dtype, offset=offset, momentum=momentum)
    check_against_one_batchnorm(case, run_case(pools(len(sizes)), case))


@pytest.mark.parametrize("world_size", [2, 3])
def test_without_affine_parameters_too(pools, world_size):
    case = make_case([2, 1, 3][:world_size], shape=(3, 4), affine=False)
    check_against_one_batchnorm(case, run_case(pools(world_size), case))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 4), min_size=3, max_size=3).filter(lambda s: sum(s) >= 2),
       seed=st.integers(0, 2**16))
def test_any_slicing_of_the_batch_gives_the_same_result(pools, sizes, seed):
    case = make_case(sizes, shape=(2, 3), dtype="float64", steps=1, seed=seed)
    check_against_one_batchnorm(case, run_case(pools(3), case))


def test_one_value_over_all_workers_is_refused_on_every_worker_and_the_group_survives(pools):
    case = make_case([1, 0], shape=(3,))
    with pytest.raises(WorkerError) as info:
        run_case(pools(2), case)
    assert str(info.value).count("more than 1 value per channel") == 2  # both workers raised, with the reason
    case = make_case([1, 1], shape=(3,))  # the same group still works: 2 values over all workers
    check_against_one_batchnorm(case, run_case(pools(2), case))


# -- DDP: the weight trajectory of single-process training on the full batch -------------------

STEPS, LR, GLOBAL_BATCH = 4, 0.2, 12


def _model(norm_layer) -> nn.Module:
    """Conv → BN2d → ReLU → flatten → Linear → BN1d → ReLU → Linear, float64, seeded."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 2), norm_layer[0](3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 2 * 2, 5), norm_layer[1](5), nn.ReLU(), nn.Linear(5, 3))
    return model.double()


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, GLOBAL_BATCH, 1, 3, 3, generator=g, dtype=torch.float64) * 2 + 1
    y = torch.randint(0, 3, (STEPS, GLOBAL_BATCH), generator=g)
    return x, y


def _flat_parameters(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _worker_ddp(worker, sizes: list[int]) -> dict:
    """DDP over normcore.SyncBatchNorm (converted from normcore BNs), loss scaled to the global batch."""
    from torch.nn.parallel import DistributedDataParallel

    model = normcore.SyncBatchNorm.convert_sync_batchnorm(_model((normcore.BatchNorm2d, normcore.BatchNorm1d)))
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    x, y = _data()
    lo, hi = sum(sizes[: worker.rank]), sum(sizes[: worker.rank + 1])
    trajectory = []
    for step in range(STEPS):
        loss = nn.functional.cross_entropy(ddp(x[step, lo:hi]), y[step, lo:hi], reduction="sum")
        opt.zero_grad()
        (loss * worker.world_size / GLOBAL_BATCH).backward()  # DDP averages: Σ_r ∇(loss_r)/N = ∇ mean loss
        opt.step()
        trajectory.append(_flat_parameters(model))
    return {"trajectory": trajectory, "running_var": model[5].running_var.numpy().copy()}


def _single_process_trajectory() -> tuple[list[np.ndarray], np.ndarray]:
    model = _model((nn.BatchNorm2d, nn.BatchNorm1d))  # torch.nn's BatchNorm: the independent oracle
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    x, y = _data()
    trajectory = []
    for step in range(STEPS):
        loss = nn.functional.cross_entropy(model(x[step]), y[step])
        opt.zero_grad()
        loss.backward()
        opt.step()
        trajectory.append(_flat_parameters(model))
    return trajectory, model[5].running_var.numpy()


@pytest.mark.parametrize("sizes", [[6, 6], [9, 3], [11, 1], [0, 12]], ids=["equal", "unequal", "one-sample", "empty-rank"])
def test_ddp_follows_the_single_process_trajectory(pools, sizes):
    results = pools(2).map(_worker_ddp, [sizes, sizes], timeout_s=60)
    expected, running_var = _single_process_trajectory()
    assert not np.allclose(expected[0], expected[-1])  # the weights do move
    for r in results:
        for step, (got, want) in enumerate(zip(r["trajectory"], expected), start=1):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"step {step}")
        np.testing.assert_allclose(r["running_var"], running_var, rtol=1e-12, atol=1e-12)


def test_no_values_on_any_worker_leaves_the_running_statistics_as_batchnorm_does(pools):
    case = make_case([0, 0], shape=(3, 2))
    check_against_one_batchnorm(case, run_case(pools(2), case))
