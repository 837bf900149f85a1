"""Small classifiers with a pluggable normalization: an MLP and a CNN.

Every hidden block is ``layer -> norm -> activation`` (normalization before the
nonlinearity, as in Ioffe & Szegedy 2015). ``norm`` picks which values share a mean and
variance and ``impl`` whose code computes it: normcore's layers or torch.nn's. With the
same ``seed`` the two implementations start from identical weights (the norm layers
initialise to γ = 1, β = 0 and use no randomness), so their loss curves can be compared
step by step.

>>> model = make_model("mlp", norm="batch", impl="normcore", width=32, depth=2)
>>> model(torch.zeros(4, 1, 8, 8)).shape
torch.Size([4, 10])

The input of each activation (the "pre-activation", the sigmoid input of Ioffe & Szegedy's
Figure 1) can be read with :func:`pre_activation`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normcore import modules as normcore_layers
from normcore.lab.norms import NORM_LABELS, NORMS, divisors

MODEL_KINDS = ("mlp", "cnn")
MODEL_LABELS = {"mlp": "MLP (fully connected)", "cnn": "CNN (3×3 convolutions)"}
IMPLS = ("normcore", "torch")
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def norm_problem(kind: str, norm: str, width: int, num_groups: int) -> str | None:
    """Why ``norm`` cannot go into a ``kind`` model of this width, in words; None if it can."""
    if norm == "instance" and kind == "mlp":
        return (
            "InstanceNorm normalizes each sample's channel over its spatial positions, and an MLP's "
            "hidden features have none (one value per feature), so it is undefined there. Use the CNN "
            "for InstanceNorm."
        )
    if norm == "group" and (num_groups < 1 or width % num_groups):
        return (
            f"GroupNorm needs the width to be divisible by the number of groups: num_channels ({width}) "
            f"must be divisible by num_groups ({num_groups}). Valid group counts for width {width}: "
            f"{', '.join(map(str, divisors(width)))}."
        )
    return None


def norm_layer(norm: str, impl: str, features: int, spatial: tuple[int, int] | None, *,
               num_groups: int, momentum: float | None, eps: float) -> nn.Module:
    """One normalization layer over ``features`` channels; ``spatial`` is (H, W) in a CNN,
    None in an MLP. ``impl`` picks the module namespace; the arguments are torch's."""
    if norm == "none":
        return nn.Identity()
    ns = normcore_layers if impl == "normcore" else nn
    image = spatial is not None
    if norm == "batch":
        return (ns.BatchNorm2d if image else ns.BatchNorm1d)(features, eps=eps, momentum=momentum)
    if norm == "layer":  # all of one sample's values: (C, H, W) in a CNN, the features in an MLP
        return ns.LayerNorm((features, *spatial) if image else features, eps=eps)
    if norm == "rms":  # the same values as LayerNorm, divided by their root mean square (no centring, no β)
        # eps given explicitly, the same as LayerNorm's here: RMSNorm's own default (None) is
        # finfo(dtype).eps (~1.2e-7 in float32), which would make the comparison with LayerNorm
        # differ in eps as well as in the mean.
        return ns.RMSNorm((features, *spatial) if image else features, eps=eps)
    if norm == "group":
        return ns.GroupNorm(num_groups, features, eps=eps)
    if norm == "instance":
        # affine=True (torch's default is False) so IN can rescale like the other norms do.
        return ns.InstanceNorm2d(features, eps=eps, momentum=momentum, affine=True)
    raise ValueError(f"Unknown normalization {norm!r}; choose one of {', '.join(NORMS)}.")


class Classifier(nn.Module):
    """``body`` (hidden blocks) then ``head``. ``activations`` lists each block's nonlinearity,
    whose input is that block's pre-activation."""

    def __init__(self, body: nn.Sequential, head: nn.Module, kind: str, norm: str, impl: str):
        super().__init__()
        self.body, self.head = body, head
        self.kind, self.norm, self.impl = kind, norm, impl
        self.flatten_input = kind == "mlp"  # the MLP sees an image as one vector
        self._probe: tuple[int, list[torch.Tensor]] | None = None

    @property
    def activations(self) -> list[nn.Module]:
        return [block[2] for block in self.body]

    def probe(self, layer: int | None) -> list[torch.Tensor]:
        """Collect unit/channel 0 of block ``layer``'s pre-activation (all positions, flattened)
        from every forward pass in training mode, into the returned list; ``None`` stops.

        Done in ``forward`` rather than with a forward hook: a hooked module takes PyTorch's
        slow call path, which costs a small model's training loop a few per cent."""
        if layer is None:
            self._probe = None
            return []
        index = range(len(self.body))[layer]  # negative counts from the end; out of range raises
        self._probe = (index, [])
        return self._probe[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1) if self.flatten_input else x
        if self._probe is None:
            return self.head(self.body(h))
        probed, values = self._probe
        for i, (layer, norm, act) in enumerate(self.body):
            h = norm(layer(h))
            if i == probed and self.training:
                values.append(h.detach()[:, 0].reshape(-1))
            h = act(h)
        return self.head(h)


def _check(kind, norm, impl, width, depth, num_groups, activation) -> None:
    for name, value, allowed in (("kind", kind, MODEL_KINDS), ("norm", norm, NORMS), ("impl", impl, IMPLS),
                                 ("activation", activation, tuple(ACTIVATIONS))):
        if value not in allowed:
            raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")
    if int(width) < 1 or int(depth) < 1:
        raise ValueError(f"width and depth must be ≥ 1, got width={width}, depth={depth}.")
    problem = norm_problem(kind, norm, int(width), int(num_groups))
    if problem:
        raise ValueError(problem)


def make_model(
    kind: str = "mlp",
    norm: str = "batch",
    impl: str = "normcore",
    *,
    input_shape: tuple[int, ...] = (1, 8, 8),
    num_classes: int = 10,
    width: int = 64,
    depth: int = 2,
    num_groups: int = 4,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    activation: str = "relu",
    seed: int = 0,
    device=None,
    init_gain: float | None = None,
) -> Classifier:
    """A ``kind`` classifier with ``depth`` hidden blocks of ``width`` units (MLP) or channels (CNN).

    * MLP: flatten -> [Linear -> norm -> act] × depth -> Linear.
    * CNN: [Conv 3×3 (same padding) -> norm -> act] × depth at full resolution -> max-pool 2×2
      -> flatten -> Linear.

    ``momentum`` (PyTorch's convention; None = cumulative average) and ``eps`` go to every
    norm layer that takes them; ``num_groups`` to GroupNorm. Weights are drawn on the CPU
    from ``seed`` and then moved, so the same seed gives the same start on every device.
    Invalid combinations raise ``ValueError`` with a readable reason (:func:`norm_problem`).
    ``init_gain`` (None: torch's default init) draws every weight layer from Xavier-normal
    init with that gain and zero biases: gain 1 is Xavier, √2 Kaiming's for ReLU (the two agree
    on square layers).
    """
    _check(kind, norm, impl, width, depth, num_groups, activation)
    width, depth = int(width), int(depth)
    channels, *spatial = input_shape
    act = ACTIVATIONS[activation]
    norm_args = dict(num_groups=int(num_groups), momentum=momentum, eps=float(eps))
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(int(seed))
        blocks = []
        if kind == "mlp":
            features = math.prod(input_shape)
            for _ in range(depth):
                blocks.append(nn.Sequential(nn.Linear(features, width), norm_layer(norm, impl, width, None, **norm_args), act()))
                features = width
            model = Classifier(nn.Sequential(*blocks), nn.Linear(width, num_classes), kind, norm, impl)
        else:
            h, w = spatial
            for _ in range(depth):
                blocks.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), norm_layer(norm, impl, width, (h, w), **norm_args), act()))
                channels = width
            head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * (h // 2) * (w // 2), num_classes))
            model = Classifier(nn.Sequential(*blocks), head, kind, norm, impl)
        if init_gain is not None:
            _xavier(model, float(init_gain))
    return model.to(device) if device is not None else model


@torch.no_grad()
def _xavier(model: nn.Module, gain: float) -> None:
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_normal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)


@torch.no_grad()
def pre_activation(model: Classifier, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """The input of block ``layer``'s nonlinearity for the batch ``x`` (model left in its mode).

    Shape (N, width) for the MLP, (N, width, H, W) for the CNN.
    """
    captured = []
    hook = model.activations[layer].register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        model(x)
    finally:
        hook.remove()
    return captured[0]


def forward_macs(kind: str, width: int, depth: int, input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10) -> int:
    """Multiply-accumulates in one sample's forward pass through the weight layers (norms and
    activations are a few operations per value and left out). Used to cap a run's work."""
    channels, *spatial = input_shape
    if kind == "mlp":
        return math.prod(input_shape) * width + (depth - 1) * width * width + width * num_classes
    positions = math.prod(spatial)
    pooled = math.prod(s // 2 for s in spatial)
    return positions * 9 * (channels * width + (depth - 1) * width * width) + width * pooled * num_classes


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "ACTIVATIONS", "Classifier", "IMPLS", "MODEL_KINDS", "MODEL_LABELS", "NORMS", "NORM_LABELS",
    "forward_macs", "make_model", "norm_layer", "norm_problem", "parameter_count", "pre_activation",
]
