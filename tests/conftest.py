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
