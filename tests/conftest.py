"""Devices the library tests run on: the CPU always, plus CUDA and MPS when present.

Tests parametrize over ``DEVICES`` (``from conftest import DEVICES``) or take the
``devices`` fixture.
"""

import pytest
import torch

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    DEVICES.append("mps")


@pytest.fixture
def devices() -> list[str]:
    return list(DEVICES)


@pytest.fixture(scope="session")
def keras():
    """The real Keras on its torch backend, imported once per session: the oracle of tests/test_keras_*.py.

    A test dependency only (requirements-dev.txt); ``import normcore`` never imports it.
    """
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # without it Keras tries TensorFlow
    import keras as keras_module

    assert keras_module.backend.backend() == "torch", "set KERAS_BACKEND=torch (or unset it) to run the Keras tests"
    return keras_module


def imports_keras(item) -> bool:
    return "keras" in getattr(item, "fixturenames", ()) or "real_keras" in item.name


def pytest_collection_modifyitems(config, items):
    """Tests that import the real Keras run last. Keras adds about 2,200 modules to sys.modules,
    and every later Streamlit script run in this process then takes about twice as long
    (measured: tests/test_page_live_statistics.py 58 s alone, 137 s after one Keras test)."""
    items[:] = [i for i in items if not imports_keras(i)] + [i for i in items if imports_keras(i)]
