"""The normalization layer the lab's settings describe, on (N, C, H, W) input.

Built from ``normcore`` or from ``torch.nn`` (the two have the same signatures), so an
experiment can run a normcore layer next to its torch twin. Every experiment builds its
layers here, so the settings mean the same thing on every page.
"""

from __future__ import annotations

import torch

import normcore
from normcore.lab.settings import LabSettings

SAME = object()  # "take the momentum from the settings" (None is a valid momentum: a cumulative average)


def build_layer(s: LabSettings, kind: str | None = None, *, library=normcore, momentum=SAME,
                track_running_stats: bool, affine: bool | None = None) -> torch.nn.Module:
    """The layer for ``kind`` (default: the chosen norm, ``s.norm``) from ``library``.

    ``momentum`` and ``affine`` override the settings' (``momentum=None``: a cumulative
    average). ``track_running_stats`` must be said: it decides whether BatchNorm and
    InstanceNorm keep running statistics (and so what eval mode does); LayerNorm,
    GroupNorm and RMSNorm keep none either way.

    RMSNorm normalizes each sample over (C, H, W), the values LayerNorm uses, with the
    settings' eps (not torch's ``eps=None`` default, which is float32's machine epsilon),
    so the two differ only in the mean they subtract. It has a γ but no β.
    """
    kind = kind or s.norm
    m = s.momentum if momentum is SAME else momentum
    affine = s.affine if affine is None else affine
    c = s.channels
    if kind == "batch":
        return library.BatchNorm2d(c, eps=s.eps, momentum=m, affine=affine, track_running_stats=track_running_stats)
    if kind == "instance":
        return library.InstanceNorm2d(c, eps=s.eps, momentum=m, affine=affine, track_running_stats=track_running_stats)
    if kind == "layer":
        return library.LayerNorm((c, s.spatial, s.spatial), eps=s.eps, elementwise_affine=affine)
    if kind == "group":
        return library.GroupNorm(s.num_groups, c, eps=s.eps, affine=affine)
    if kind == "rms":
        return library.RMSNorm((c, s.spatial, s.spatial), eps=s.eps, elementwise_affine=affine)
    raise ValueError(f"Unknown normalization {kind!r}; choose one of batch, layer, group, instance, rms.")
