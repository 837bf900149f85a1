"""What the Gradients page writes out: the forward graph, the closed form per norm (LaTeX), where
normcore computes each term, and the prose for the upstream gradient and the batch of two."""

from __future__ import annotations

from normcore.lab.norms import NORM_LABELS

from normcore.lab.experiments.gradients.options import GradientOptions

REDUCED_OVER = {
    "batch": "N, H, W (per channel)", "layer": "C, H, W (per sample)", "rms": "C, H, W (per sample)",
    "group": "C/G, H, W (per sample and group)", "instance": "H, W (per sample and channel)",
}
LOCATIONS = {  # where normcore computes each term: (file, function), shown as text
    "stats": [("Σdy per cell", "normcore/backward.py", "_batch_stats_backward: sum_dy"),
              ("Σ(dy·x̂) per cell", "normcore/backward.py", "_batch_stats_backward: sum_dy_centered"),
              ("istd/M (mean_d_xhat, mean_d_xhat_xhat)", "normcore/backward.py", "_batch_stats_backward"),
              ("dγ = Σdy·x̂, dβ = Σdy", "normcore/backward.py", "_batch_stats_backward: d_weight, d_bias")],
    "rms": [("dy·x̂ (one buffer)", "normcore/rms_backward.py", "_rms_backward: buf"),
            ("Σ(dx̂·x̂)/M", "normcore/rms_backward.py", "_rms_backward: mean_d_xhat_xhat"),
            ("r = istd factor", "normcore/rms_backward.py", "_rms_backward: mul_(inv_rms)"),
            ("dγ = Σdy·x̂", "normcore/rms_backward.py", "_rms_backward: d_weight")],
}
CLOSED_FORM = {  # one LaTeX line each
    "stats": (r"dx = \frac{\mathrm{istd}}{M}\Big(M\,d\hat x - \sum d\hat x - \hat x \sum (d\hat x\,\hat x)\Big),"
              r"\quad d\hat x = \gamma\,dy",
              r"d\gamma = \sum dy\,\hat x,\qquad d\beta = \sum dy,\qquad \mathrm{istd} = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}"),
    "rms": (r"dx = \frac{\mathrm{istd}}{M}\Big(M\,d\hat x - \hat x \sum (d\hat x\,\hat x)\Big),\quad d\hat x = \gamma\,dy",
            r"d\gamma = \sum dy\,\hat x,\qquad \mathrm{istd} = \frac{1}{\sqrt{\overline{x^2} + \varepsilon}}"),
}
FORM_NOTES = {
    "batch": "BatchNorm: γ is one number per channel, constant in a statistic group, so this is "
             "`dx = (γ·istd/M)·(M·dy − Σdy − x̂·Σ(dy·x̂))`; the sums run over N, H, W.",
    "layer": "LayerNorm: γ varies within a sample, so the sums are over dx̂ = γ·dy, over C, H, W of one sample.",
    "group": "GroupNorm: the same form, each sum over one group's C/G channels and H, W of one sample.",
    "instance": "InstanceNorm: the same form, each sum over one map (H, W) of one sample and channel.",
    "rms": "RMSNorm has no μ: the path through the mean, −Σdx̂, is gone; the path through the mean "
           "square stays. So Σdx ≠ 0, but Σ(dx·x̂) keeps its form with σ² → mean square.",
}


def family(norm: str) -> str:
    return "rms" if norm == "rms" else "stats"


def forward_dot(o: GradientOptions) -> str:
    """The forward as a Graphviz graph: x → μ, σ² → x̂ → y (RMSNorm: x → mean square → x̂ → y)."""
    over = REDUCED_OVER[o.norm]
    stats = ('"mean square\\nover ' + over + '"') if o.norm == "rms" else f'"μ, σ²\\nover {over}"'
    affine = '"y = γ·x̂"' if o.norm == "rms" else '"y = γ·x̂ + β"'
    xhat = '"x̂ = x·istd"' if o.norm == "rms" else '"x̂ = (x − μ)·istd"'
    return (f'digraph {{ rankdir=LR; node [shape=box, style=rounded]; x -> {stats}; x -> {xhat}; '
            f'{stats} -> {xhat} [label="istd = 1/√(·+ε)"]; {xhat} -> {affine}; }}')


def upstream_note(o: GradientOptions) -> str:
    if o.upstream == "ones" and o.norm != "rms":
        return ("**dy = all ones**: a constant shift of y. In every statistic group Σdx̂ = M·γ and "
                "Σ(dx̂·x̂) = γ·Σx̂ = 0, so the bracket M·dx̂ − Σdx̂ − x̂·Σ(dx̂·x̂) is 0: dx is exactly 0 "
                "wherever γ is constant in a group (BatchNorm, InstanceNorm, and the rest here, since every γ is "
                "the same). Shifting x by a constant is undone by subtracting the mean.")
    if o.upstream == "one_hot":
        return ("**dy one-hot** on the first value: its gradient reaches every value of its statistic group, "
                "through μ and σ², and no other group.")
    return f"**dy = {o.upstream.replace('_', ' ')}**: the gradient from the layers above, as backprop hands it down."


def title(o: GradientOptions) -> str:
    return f"{NORM_LABELS[o.norm]} on {'×'.join(map(str, o.shape))} (N×C×H×W)"


def coupling_note(o: GradientOptions) -> str:
    """What the Jacobian shows for this norm and mode."""
    if o.norm != "batch":
        mode = (f" {NORM_LABELS[o.norm]} keeps no running statistics here: eval mode normalizes with the same "
                "per-sample statistics, so the Jacobian is the same." if o.mode == "eval" else "")
        return "Each sample has its own statistics: the Jacobian is block-diagonal, one block per sample." + mode
    if o.mode == "eval":
        return ("In eval mode μ and σ² are constants (the running statistics, here this batch's): each output "
                "depends on its own input only, ∂y/∂x = γ·istd on the diagonal. The coupling vanishes.")
    return ("BatchNorm shares μ and σ² across the batch: off-diagonal blocks couple every sample to its "
            "batch-mates, −γ·istd·(1 + x̂ᵢx̂ⱼ)/M between values of one channel.")


BATCH_OF_TWO = (
    "Two samples, one value per channel, a ± d: μ = a, σ² = d², so y = ±d/√(d² + ε), **±1 up to eps** "
    "whatever a and d are. The output says only which sample is larger; its Jacobian "
    "ε/(2(d²+ε)^{3/2}) is ≈ 0 once d² ≫ ε. Training BatchNorm at batch 2 passes almost no information "
    "about the input forward, and almost no gradient back."
)
