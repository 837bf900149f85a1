"""Device discovery and the CPU-thread comparison."""

import pytest
import torch

from normcore.lab import datasets, devices, models, loop


def test_discovery_lists_the_cpu_first_and_only_usable_devices():
    found = devices.available()
    assert found[0] == "cpu" and found[1:] == devices.accelerators()
    for device in found:
        assert torch.ones(2, device=device).sum().item() == 2.0
    assert torch.cuda.is_available() == any(d.startswith("cuda") for d in found)


def test_comparison_without_a_gpu_is_one_thread_against_all(monkeypatch):
    monkeypatch.setattr(devices, "accelerators", lambda: [])
    monkeypatch.setattr(devices, "DEFAULT_THREADS", 4)
    assert [t.key for t in devices.comparison_targets()] == ["cpu:1t", "cpu"]
    assert "No GPU was found" in devices.no_accelerator_message()
    assert devices.Target("cpu", 1).label == "CPU, 1 thread" and devices.Target("cpu").label == "CPU, 4 threads (all)"


def test_comparison_with_a_gpu_is_cpu_against_each_gpu(monkeypatch):
    monkeypatch.setattr(devices, "accelerators", lambda: ["cuda:0", "cuda:1"])
    assert [t.key for t in devices.comparison_targets()] == ["cpu", "cuda:0", "cuda:1"]
    assert devices.no_accelerator_message() is None


def test_this_machines_comparison_and_message_agree():
    targets = devices.comparison_targets()
    assert (devices.no_accelerator_message() is None) == bool(devices.accelerators())
    assert all(devices.parse_target(t.key) == t for t in targets + devices.all_targets())


@pytest.mark.parametrize("key,words", [("gpu", "Unknown device"), ("cpu:0t", "CPU threads"), ("cpu:999t", "CPU threads"),
                                        ("cuda:9", "not available"), ("cpu; rm -rf", "Unknown device")])
def test_bad_device_names_are_explained(key, words):
    with pytest.raises(ValueError, match=words):
        devices.parse_target(key)


def test_placed_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with devices.placed(devices.Target("cpu", 1)) as device:
        assert torch.get_num_threads() == 1 and device == torch.device("cpu")
    assert torch.get_num_threads() == before


def test_cpu_thread_comparison_trains_the_same_model():
    data = datasets.load_digits_split(seed=0)
    cfg = loop.TrainConfig(epochs=1, batch_size=64, log_every=7)
    results = {t.key: loop.train(models.make_model("mlp", "batch", width=16, seed=0), data, cfg,
                                     device=t.device, threads=t.threads) for t in devices.all_targets()}
    if "cpu:1t" in results:
        assert results["cpu:1t"].threads == 1 and results["cpu"].threads == devices.DEFAULT_THREADS
    losses = [r.history["loss"] for r in results.values()]
    for other in losses[1:]:  # different kernels/thread counts: equal up to float32 rounding
        assert (other - losses[0]).abs().max() < 1e-3
    assert all(r.samples_per_s > 0 for r in results.values())


def test_default_targets(monkeypatch):
    monkeypatch.setattr(devices, "accelerators", lambda: [])
    monkeypatch.setattr(devices, "DEFAULT_THREADS", 2)
    assert [t.key for t in devices.default_targets()] == ["cpu:1t"]
    monkeypatch.setattr(devices, "accelerators", lambda: ["cuda:0"])
    assert [t.key for t in devices.default_targets()] == ["cpu", "cuda:0"]


def test_overlapping_runs_leave_the_thread_count_as_it_was():
    """torch's thread count is process-wide: two sessions running a 1-thread target at
    overlapping times must not leave the server at 1 thread (found by the load review)."""
    import threading
    import time

    import torch

    one = next((t for t in devices.all_targets() if t.threads == 1), None)
    if one is None or devices.DEFAULT_THREADS < 2:
        pytest.skip("needs a machine with 2 or more CPU threads")
    before = torch.get_num_threads()

    def run(delay, hold):
        time.sleep(delay)
        with devices.placed(one):
            assert torch.get_num_threads() == 1
            time.sleep(hold)

    threads = [threading.Thread(target=run, args=(0, 0.2)), threading.Thread(target=run, args=(0.1, 0.3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = {}
    probe = threading.Thread(target=lambda: seen.update(n=torch.get_num_threads()))
    probe.start()
    probe.join()
    assert seen["n"] == before == torch.get_num_threads()
