"""RMSNorm: LayerNorm without the mean (Zhang & Sennrich, 2019), with torch's signature.

    ms = mean(x², over the last len(normalized_shape) dims)
    y  = x · rsqrt(ms + ε) · γ              (no centring, no β)

It divides by the root mean square, not the standard deviation, so its output is not
zero-mean: a row with mean μ and variance σ² comes out with mean μ/sqrt(μ² + σ² + ε) and
RMS 1 (up to ε). The closed-form backward and its derivation are in ``rms_backward.py``.

What torch 2.13 does, and so what this does (measured against ``F.rms_norm`` on CPU; its
CPU ``rms_norm`` is a composite of ordinary ops, so autograd differentiates it op by op):

* ``eps=None`` is ``torch.finfo`` of the dtype it *computes* in: 2.22e-16 for float64,
  1.19e-07 for float32, and for float16 and bfloat16 also 1.19e-07 (float32's: half
  inputs are computed in float32), not finfo(float16).eps = 9.8e-4 nor
  finfo(bfloat16).eps = 7.8e-3, nor the 1e-5 / 1e-6 defaults of other libraries.
* Half precision: x is cast to float32, ms, rsqrt and x · r are float32, γ multiplies
  *before* the cast back (``(x32 · r · γ).to(float16)``); multiplying after the cast
  rounds twice and differs from torch in the last bit of about a quarter of the values
  (26% for float16 and bfloat16 at N(1, 3²) inputs). Outputs here equal torch's bit for
  bit on every one of the four dtypes, with and without γ, in both backward modes; the
  gradients are torch's bit for bit with ``backward="autograd"`` and within rounding of
  them with the closed form (the same sums, in another order).
* A γ of another dtype is promoted as torch promotes it (the product takes the wider
  dtype), and the result is cast to the input's dtype.
* ε is taken as given: any float, negative or NaN too (NaN where ms + ε < 0), as torch.
* complex64/complex128 inputs are accepted, as torch accepts them (its formula, pow(x, 2)
  not |x|², through autograd); integer, bool and complex32 inputs are refused.

Large offsets: nothing is centred, so there is no cancellation in ms (a sum of positive
terms, which float32 holds to ~1e-7 relative at any offset), and none in the gradient
either unless dx̂ is nearly parallel to x̂. At x = 1e4 + N(0, 1) in float32, (4096, 1024),
the largest errors against float64, relative to the largest value, are: output 2.4e-7
(torch 2.4e-7, the same bits), dx 1.2e-7 (torch 1.4e-7), dγ 1.6e-7 (torch 2.1e-7)
(``tests/test_rms_norm.py::test_large_offset_is_as_accurate_as_torch``).

``last_stats`` (``return_stats=True``): a :class:`~normcore.moments.NormStats` with
``mean`` = zeros and ``var`` = ms, the mean square it divided by (also ``.mean_square``),
one entry per leading index, so that ``(x − mean) / sqrt(var + ε)`` is the shared formula.
"""

from __future__ import annotations

import math

import torch

from . import checks, transforms
from .axes import reduced_dims
from .moments import NormStats, compute_dtype
from .rms_backward import NormalizeByRMS


def _plain(x: torch.Tensor, weight, dims, eps):
    """The formula as written, for torch's autograd: (y, ms)."""
    ms = x.square().mean(dims, keepdim=True)
    y = x * torch.rsqrt(ms + eps)
    return (y if weight is None else y * weight), ms


def rms_norm(
    input: torch.Tensor,
    normalized_shape,
    weight: torch.Tensor | None = None,
    eps: float | None = None,
    *,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Root-mean-square normalization over the last ``len(normalized_shape)`` dims.

    ``normalized_shape`` is a tuple or list of ints (``torch.Size`` too), as for
    ``torch.nn.functional.rms_norm``; ``weight`` (γ) has that shape. ``eps=None`` is
    torch's default (see the module docstring). ``backward="closed_form"`` runs the
    derived gradient (``rms_backward.py``), ``"autograd"`` lets torch differentiate the
    formula. ``return_stats=True`` also returns the :class:`NormStats` (mean square in ``var``).
    """
    shape_key = checks.shape_key(normalized_shape)
    key = ("rms_norm", checks.spec(input), shape_key, checks.spec(weight), backward)
    dtype, dims, lead, closed_form = checks.validated(key, lambda: _check(input, normalized_shape, weight, backward))
    x = input if input.dtype == dtype else input.to(dtype)
    eps = torch.finfo(dtype).eps if eps is None else eps
    if closed_form:
        w = weight if weight is None or weight.dtype == dtype else weight.to(dtype)
        y, ms, _inv_rms = transforms.apply(NormalizeByRMS, x, w, dims, eps)
    else:
        y, ms = _plain(x, weight, dims, eps)
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    if not return_stats:
        return y
    ms = ms.detach().reshape(lead)
    return y, NormStats(torch.zeros_like(ms), ms, "batch", math.prod(x.shape[d] for d in dims))


def _check(input, normalized_shape, weight, backward):
    """rms_norm's checks; returns (compute dtype, dims, leading shape, whether the closed form runs)."""
    checks.check_floating(input, "rms_norm", complex_ok=True)
    checks.check_backward(backward)
    shape = checks.check_normalized_shape(normalized_shape, "rms_norm")
    checks.check_trailing_shape(input, shape, "rms_norm")
    checks.check_affine_shape(weight, shape, "weight", "rms_norm")
    dtype = compute_dtype(input)
    # The closed form keeps γ in x's dtype: a narrower γ (float16 γ on a float32 computation)
    # is widened first, exactly as torch's product does; a wider or complex one is left to autograd.
    castable = weight is None or torch.promote_types(dtype, weight.dtype) == dtype
    closed_form = backward == "closed_form" and castable and not dtype.is_complex
    lead = tuple(input.shape[: input.dim() - len(shape)])
    return dtype, reduced_dims("rms", input.dim(), len(shape)), lead, closed_form
