"""What the Keras tests compare: any tensor-like value as a numpy array."""

from __future__ import annotations

import numpy as np
import torch


def arr(value) -> np.ndarray:
    """A torch tensor, a Keras variable (its .value is a torch Parameter) or an array, as numpy."""
    value = getattr(value, "value", value)
    return value.detach().cpu().numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)
