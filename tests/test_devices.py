"""Device discovery, the CPU-thread comparison, and one placed() body at a time."""

import threading
import time

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


def fresh_thread_count() -> int:
    """The count a new thread (a server's next script run) starts with."""
    seen = []
    probe = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    probe.start()
    probe.join()
    return seen[0]


def test_overlapping_runs_leave_the_thread_count_as_it_was():
    """torch's thread count is process-wide: two sessions running a 1-thread target at
    overlapping times must not leave the server at 1 thread (found by the load review),
    also when the second session's thread starts while the first one trains at 1 thread."""
    one = next((t for t in devices.all_targets() if t.threads == 1), None)
    if one is None or devices.DEFAULT_THREADS < 2:
        pytest.skip("needs a machine with 2 or more CPU threads")
    before = fresh_thread_count()
    inside, first_holds = [], threading.Event()  # what each body saw, asserted in the main thread

    def first():
        with devices.placed(one):
            inside.append(torch.get_num_threads())
            first_holds.set()
            time.sleep(0.3)

    def second():
        torch.get_num_threads()  # touches torch (as building a model does) while the first trains
        with devices.placed(one):
            inside.append(torch.get_num_threads())

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert first_holds.wait(timeout=30)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    for t in threads:
        t.join()
    assert inside == [1, 1]
    assert fresh_thread_count() == before == torch.get_num_threads()


def test_the_training_loop_takes_no_lock():
    """loop.train is a library call: it never waits for another caller's placed() body."""
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with devices.placed(devices.Target("cpu")):
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(timeout=30)
    data = datasets.load_digits_split(seed=0)
    results = []
    worker = threading.Thread(target=lambda: results.append(loop.train(
        models.make_model("mlp", "batch", width=8, seed=0), data, loop.TrainConfig(epochs=1, batch_size=256), threads=1)))
    worker.start()
    worker.join(timeout=60)
    finished = not worker.is_alive()
    release.set()
    holder.join()
    worker.join()
    assert finished and results[0].status == "finished" and results[0].threads == 1
