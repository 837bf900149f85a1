"""The experiments behind the Gradients page. UI-free: options in, tidy frames out.

* ``options``: the page's own controls (:data:`FIELDS`, :class:`GradientOptions`, :func:`problems`);
* ``backprop``: the forward graph x → μ, σ² → x̂ → y in plain ops, autograd through it, the
  layer's closed-form gradients, the closed form's terms and its two identities;
* ``step_by_step``: part 1 as frames (:func:`backprop_view`, :func:`identity_vs_eps`);
* ``coupling``: part 2, the Jacobian ∂y_i/∂x_j on a copy of the layer, its sample blocks,
  the 1/N sweep and the batch-of-two limit;
* ``flow``: part 3, a deep MLP trained with a norm and without, read layer by layer
  (activations, saturation, activation and weight gradients, update:data ratio);
* ``landscape`` and ``slices``: part 4, Santurkar et al.'s three smoothness measures over
  training, and 1-D / 2-D slices of the loss.
"""

from normcore.lab.experiments.gradients.backprop import build_layer, make_input, make_upstream
from normcore.lab.experiments.gradients.coupling import Blocks, batch_of_two, coupling_view, coupling_vs_batch_size, jacobian
from normcore.lab.experiments.gradients.options import (
    FIELDS, FLOW_FIELDS, LANDSCAPE_FIELDS, MODE_LABELS, SHAPE_FIELDS, UPSTREAM_LABELS, GradientOptions, flow_problems,
    landscape_problems, problems,
)
from normcore.lab.experiments.gradients.step_by_step import BackpropView, backprop_view, identity_vs_eps

__all__ = [
    "FIELDS", "FLOW_FIELDS", "LANDSCAPE_FIELDS", "MODE_LABELS", "SHAPE_FIELDS", "UPSTREAM_LABELS", "BackpropView", "Blocks", "GradientOptions",
    "backprop_view", "batch_of_two", "build_layer", "coupling_view", "coupling_vs_batch_size", "identity_vs_eps",
    "flow_problems", "jacobian", "landscape_problems", "make_input", "make_upstream", "problems",
]
