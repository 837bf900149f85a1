"""Keras's ``BatchNormalization`` as a torch ``nn.Module``: Keras's arguments, call, update rule and weights.

What differs from ``torch.nn.BatchNorm2d``, as in Keras 3:

* ``momentum`` weights the OLD value: ``moving = m · moving + (1 − m) · batch`` (m = 0.99).
* The moving variance takes the *biased* batch variance (torch's takes the unbiased one).
* ``epsilon`` is 1e-3; ``axis`` (default −1, channels last) is the one axis that keeps its
  own statistic; every other axis is reduced.
* ``center`` / ``scale`` switch β / γ on and off separately.
* The weights are created on the first call, from the input's size along ``axis``.
* ``trainable = False`` freezes γ and β *and* runs the layer in inference mode.
* A batch of one value per channel is accepted in training: its variance is 0, so the
  output is β (torch raises there).

``training=None`` follows torch: it means ``self.training`` (``.train()`` / ``.eval()``),
and a new module is in training mode, as every torch module. Keras resolves ``None`` from the
calling model, and a layer called on its own runs in inference: call ``.eval()`` (or pass
``training=False``) for that.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from .. import checks
from ..backward import NormalizeWithBatchStats, NormalizeWithFixedStats
from ..moments import NormStats, shifted_moments, standardize
from . import renorm as keras_renorm
from .arguments import check_keras_arguments

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): Keras adds it to the count of a masked mean
WEIGHT_NAMES = ("gamma", "beta", "moving_mean", "moving_variance") + keras_renorm.RENORM_WEIGHTS  # Keras's order


def _torch_dtype(dtype):
    """A torch dtype, or a Keras dtype name such as "float64"; mixed policies are refused."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype), None) if str(dtype) in ("float16", "bfloat16", "float32", "float64") else None
    if found is None:
        raise checks.NormcoreError(
            f"dtype {dtype!r} is not supported: give a torch floating dtype or one of 'float16', 'bfloat16', "
            "'float32', 'float64'. For mixed precision keep float32 weights and use torch.autocast."
        )
    return found


class BatchNormalization(LazyModuleMixin, nn.Module):
    """``keras.layers.BatchNormalization(axis, momentum, epsilon, center, scale)`` in torch.

    Call it as Keras does, ``layer(inputs, training=None, mask=None)``. γ (``gamma``), β
    (``beta``) and the buffers ``moving_mean`` / ``moving_variance`` exist after the first
    call or ``build(input_shape)``, as in Keras (and torch's LazyModules): build it before
    handing ``layer.parameters()`` to an optimizer. ``get_weights()`` / ``set_weights()``
    read and write Keras's list ``[gamma, beta, moving_mean, moving_variance]`` (without
    gamma when ``scale=False``, beta when ``center=False``). ``layer.last_stats`` holds the
    :class:`~normcore.NormStats` of the last call.

    ``renorm=True`` is Keras 3's Batch Renormalization (``renorm.py``): three more weights,
    ``moving_stddev``, ``renorm_mean``, ``renorm_stddev``, follow in ``get_weights()``.
    Keras's other arguments are accepted at their default values and refused otherwise,
    with what to do instead. ``dtype``/``device`` place the weights (float32 by default);
    the output has the input's dtype (Keras casts it to the layer's). Unlike Keras, the rank
    is not fixed by the first call: only the size along ``axis`` is checked.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        *,
        trainable: bool = True,
        name: str | None = None,
        dtype=None,
        device=None,
        backward: str = "closed_form",
        renorm: bool = False,
        renorm_clipping: dict | None = None,
        renorm_momentum: float = 0.99,
        **keras_arguments,
    ) -> None:
        check_keras_arguments(keras_arguments)
        clipping = keras_renorm.checked_clipping(bool(renorm), renorm_clipping)
        super().__init__()
        try:
            self.axis = operator.index(axis)
        except TypeError:
            raise checks.NormcoreError(f"axis must be one int (Keras 3 normalizes along one axis), got {axis!r}.") from None
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale, self.name = bool(center), bool(scale), name
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        factory = {"device": device, "dtype": _torch_dtype(dtype)}
        self.register_parameter("gamma", UninitializedParameter(**factory) if self.scale else None)
        self.register_parameter("beta", UninitializedParameter(**factory) if self.center else None)
        self.register_buffer("moving_mean", UninitializedBuffer(**factory))
        self.register_buffer("moving_variance", UninitializedBuffer(**factory))
        # Batch Renormalization (renorm.py): three more moving statistics, as Keras's
        self.renorm, self.renorm_clipping, self.renorm_momentum = bool(renorm), clipping, float(renorm_momentum)
        for name in keras_renorm.RENORM_WEIGHTS:
            self.register_buffer(name, UninitializedBuffer(**factory) if self.renorm else None)
        self.trainable = trainable

    # -- Keras's attributes ------------------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """``False`` freezes γ and β (``requires_grad=False``) and runs the layer in inference mode."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for p in (self.gamma, self.beta):
            if p is not None and not is_lazy(p):  # (build applies it to lazy ones)
                p.requires_grad_(self._trainable)

    @property
    def built(self) -> bool:
        return not self.has_uninitialized_params()

    def build(self, input_shape) -> None:
        """Create the weights for inputs of ``input_shape`` (only its size along ``axis`` is used)."""
        shape = tuple(input_shape)
        features = int(shape[self._axis_of(shape)])
        with torch.no_grad():
            for name, fill in zip(WEIGHT_NAMES, (1.0, 0.0, 0.0, 1.0) + keras_renorm.RENORM_FILLS):
                t = getattr(self, name)
                if t is not None and is_lazy(t):
                    t.materialize((features,))
                    t.fill_(fill)
        self.trainable = self._trainable

    def _axis_of(self, shape) -> int:
        """``axis`` as a non-negative index into ``shape``, which needs a batch and a feature axis."""
        if len(shape) < 2:
            raise checks.NormcoreIndexError(
                f"BatchNormalization needs an input with a batch axis and a features axis (rank 2 or more), "
                f"got shape {tuple(shape)}. Add the batch axis, e.g. x.unsqueeze(0)."
            )
        if not -len(shape) <= self.axis < len(shape):
            raise checks.NormcoreIndexError(
                f"axis {self.axis} is out of range for an input of rank {len(shape)} (shape {tuple(shape)}); "
                "Keras's axis counts from 0 (or from -1 at the end) and names the features axis."
            )
        return self.axis % len(shape)

    def initialize_parameters(self, inputs, training=None, mask=None) -> None:  # LazyModuleMixin's hook
        if self.has_uninitialized_params():
            checks.check_floating(inputs, "BatchNormalization")
            self.build(inputs.shape)

    def get_config(self) -> dict:
        return {
            "name": self.name, "trainable": self.trainable, "axis": self.axis, "momentum": self.momentum,
            "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
            "renorm": self.renorm, "renorm_clipping": self.renorm_clipping, "renorm_momentum": self.renorm_momentum,
        }

    def _weights(self) -> list[torch.Tensor]:
        return [t for t in (getattr(self, n) for n in WEIGHT_NAMES) if t is not None]

    def get_weights(self) -> list:
        """Keras's weight list as numpy arrays; ``[]`` before the layer is built, as in Keras."""
        weights = [t.detach().cpu() for t in self._weights()] if self.built else []
        return [(t.float() if t.dtype == torch.bfloat16 else t).numpy().copy() for t in weights]  # (numpy has no bfloat16)

    def set_weights(self, weights) -> None:
        """Write Keras's weight list (numpy arrays, tensors or lists), in ``get_weights()``'s order."""
        mine, weights = self._weights() if self.built else [], list(weights)
        names = [n for n in WEIGHT_NAMES if getattr(self, n) is not None]
        if not self.built or len(weights) != len(mine):
            raise checks.NormcoreError(
                f"set_weights got {len(weights)} arrays; this layer expects {len(mine) if self.built else 0} "
                f"({', '.join(names) if self.built else 'it is not built yet: call layer.build(input_shape) or run one batch first'})."
            )
        values = [torch.as_tensor(w) for w in weights]
        for name, t, v in zip(names, mine, values):
            if tuple(v.shape) != tuple(t.shape):
                raise checks.NormcoreError(f"set_weights: {name} has shape {tuple(t.shape)}, got an array of shape {tuple(v.shape)}.")
        with torch.no_grad():
            for t, v in zip(mine, values):
                t.copy_(v)

    def extra_repr(self) -> str:
        text = f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon}, center={self.center}, scale={self.scale}"
        if self.built:
            text = f"{self.moving_mean.shape[0]}, " + text
        if not self.trainable:
            text += ", trainable=False"
        return text

    # -- the call ------------------------------------------------------------------------------

    def forward(self, inputs: torch.Tensor, training: bool | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        checks.check_floating(inputs, "BatchNormalization")
        axis = self._axis_of(inputs.shape)
        features = self.moving_mean.shape[0]
        if inputs.shape[axis] != features:
            raise checks.NormcoreError(
                f"BatchNormalization was built for {features} features along axis {self.axis}, but the input has "
                f"{inputs.shape[axis]} there (shape {tuple(inputs.shape)}). Check the input's layout (Keras: channels last)."
            )
        training = self.training if training is None else bool(training)
        x = inputs.to(torch.float32 if inputs.dtype in (torch.float16, torch.bfloat16) else inputs.dtype)
        shape = [1] * x.dim()
        shape[axis] = features  # a per-feature tensor, broadcast along every other axis
        gamma = None if self.gamma is None else self.gamma.to(x.dtype).reshape(shape)
        beta = None if self.beta is None else self.beta.to(x.dtype).reshape(shape)
        dims = tuple(d for d in range(x.dim()) if d != axis)
        if training and self.trainable and self.renorm:
            y, mean, var, count = self._renormalized(x, mask, gamma, beta, dims)
            keras_renorm.update_statistics(self, mean.reshape(features), var.reshape(features))
            self.last_stats = NormStats(mean.detach().reshape(features), var.detach().reshape(features), "batch", count)
        elif training and self.trainable:
            y, mean, var, count = self._with_batch_stats(x, mask, gamma, beta, dims)
            self._update_moving(mean.reshape(features), var.reshape(features))
            self.last_stats = NormStats(mean.detach().reshape(features), var.detach().reshape(features), "batch", count)
        else:
            mean, var = self.moving_mean.to(x.dtype).reshape(shape), self.moving_variance.to(x.dtype).reshape(shape)
            if self.backward_mode == "closed_form":
                y = NormalizeWithFixedStats.apply(x, mean, var, gamma, beta, self.epsilon)[0]
            else:
                y = normalize(x, mean, var, gamma, beta, self.epsilon)
            count = math.prod(x.shape[d] for d in dims)
            self.last_stats = NormStats(self.moving_mean.detach().clone(), self.moving_variance.detach().clone(), "running", count)
        return y.to(inputs.dtype)

    def _with_batch_stats(self, x, mask, gamma, beta, dims):
        """Normalize with the batch's mean and biased variance; returns (y, mean, var, count)."""
        if mask is not None:
            mean, var, count = masked_moments(x, mask, dims)
            return normalize(x, mean, var, gamma, beta, self.epsilon), mean, var, count
        count = math.prod(x.shape[d] for d in dims)
        if self.backward_mode == "closed_form":
            y, mean, var, *_ = NormalizeWithBatchStats.apply(x, gamma, beta, dims, self.epsilon)
            return y, mean, var, count
        x_hat, mean, var, _ = standardize(x, dims, self.epsilon)
        y = x_hat if gamma is None else x_hat * gamma
        return (y if beta is None else y + beta), mean, var, count

    def _renormalized(self, x, mask, gamma, beta, dims):
        """Keras's renorm training step (renorm.py): returns (y, mean, var, count)."""
        closed_form = mask is None and self.backward_mode == "closed_form"
        if mask is not None:
            mean, var, count = masked_moments(x, mask, dims)
        else:
            _, mean, var = shifted_moments(x.detach() if closed_form else x, dims)
            count = math.prod(x.shape[d] for d in dims)
        moving = (t.to(x.dtype).reshape(mean.shape) for t in (self.renorm_mean, self.renorm_stddev))
        r, d = keras_renorm.correction(mean, var, *moving, self.epsilon, self.renorm_clipping)
        scale, offset = keras_renorm.composed_affine(r, d, gamma, beta)
        if closed_form:  # the closed form with γ' = r·γ, β' = d·γ + β, r and d constants
            y, mean, var, *_ = NormalizeWithBatchStats.apply(x, scale, offset, dims, self.epsilon)
            return y, mean, var, count
        return normalize(x, mean, var, scale, offset, self.epsilon), mean, var, count

    def _update_moving(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """moving = m · moving + (1 − m) · batch, with the biased batch variance (Keras's rule)."""
        m = self.momentum
        with torch.no_grad():
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                moving.copy_(moving.to(batch.dtype) * m + batch.detach() * (1.0 - m))


def masked_moments(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...]):
    """Keras's masked mean and biased variance over ``dims``: only where ``mask`` is True.

    As Keras: the mask has one dim less than ``x`` and is broadcast along the last axis
    (``mask[..., None]``), and the count of masked values gets ``keras.backend.epsilon()``
    (1e-7) added, so an all-False mask gives a mean and variance of 0. Returns
    ``(mean, var, count)`` with kept dims, ``count`` the fewest values any feature took.
    """
    if mask.dim() != x.dim() - 1:
        raise checks.NormcoreError(
            f"The mask must have one dim less than the inputs (Keras broadcasts it along the last axis); "
            f"got mask shape {tuple(mask.shape)} for inputs of shape {tuple(x.shape)}."
        )
    keep = mask.unsqueeze(-1).expand(x.shape).bool()
    weight = keep.to(x.dtype).sum(dims, keepdim=True)
    mean = torch.where(keep, x, 0).sum(dims, keepdim=True) / (weight + KERAS_EPSILON)
    var = torch.where(keep, x - mean, 0).square().sum(dims, keepdim=True) / (weight + KERAS_EPSILON)
    return mean, var, int(weight.min().item()) if weight.numel() else 0


def normalize(x, mean, var, gamma, beta, eps):
    """γ (x − μ) / sqrt(σ² + ε) + β, in the order Keras's torch backend computes it; autograd."""
    scale = torch.rsqrt(var + eps)
    y = (x - mean) * (scale if gamma is None else scale * gamma)
    return y if beta is None else y + beta
