"""The Fold tab's own controls: which digits CNN to fold, the batch the train-mode mistake bakes
in, and how many timed passes. The shared sidebar's controls do not apply here.

:data:`FIELDS` says each control once (widget, range, URL name, all prefixed ``f_`` so they
never collide with the shared controls' or the other tabs' parameters); :class:`FoldOptions`
is the frozen value the experiment runs with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema

SOURCES = ("trained", "calibrated")
SOURCE_LABELS = {
    "trained": "Trained on the digits (3 epochs)",
    "calibrated": "Random weights, calibrated statistics, random γ/β",
}

FIELDS = Schema((
    Field("source", "The model", "trained", "choice",
          "A fresh BatchNorm has μ=0, σ²=1, γ=1, β=0 and folds to almost nothing, hiding every mistake: "
          "this CNN's statistics come from the digits, by training it or by one calibration pass.",
          choices=SOURCES, labels=SOURCE_LABELS, widget="radio", url="f_model"),
    Field("width", "Channels per conv block", 16, "int", "Each 3×3 convolution's output channels.",
          4, limits.MAX_FOLD_WIDTH, 1, url="f_width"),
    Field("depth", "Conv blocks", 2, "int", "Conv → BatchNorm → ReLU blocks.", 1, limits.MAX_FOLD_DEPTH, 1,
          url="f_depth"),
    Field("batch", "Batch the train-mode fold sees", 16, "int",
          "Folding from training mode bakes in the statistics of one batch of this many digits.",
          2, limits.MAX_FOLD_BATCH, 1, url="f_batch"),
    Field("repeats", "Timed passes of each version", 20, "int",
          "The speed-up is the median over this many passes of the test set through each version.",
          5, limits.MAX_FOLD_REPEATS, 1, url="f_repeats", caps=("fold_timing_repeats",)),
    Field("seed", "Seed", 0, "int", "Seed of the weights, the training order and the random γ/β.", 0, 2**31 - 1, 1,
          widget="number_input", url="f_seed"),
))


@dataclass(frozen=True)
class FoldOptions(QueryOptions):
    """The tab's options; defaults are :data:`FIELDS`' defaults."""

    SCHEMA: ClassVar[Schema] = FIELDS

    source: str = FIELDS["source"].default
    width: int = FIELDS["width"].default
    depth: int = FIELDS["depth"].default
    batch: int = FIELDS["batch"].default
    repeats: int = FIELDS["repeats"].default
    seed: int = FIELDS["seed"].default

    def __post_init__(self):
        values, errors = FIELDS.check(asdict(self))
        if errors:
            raise ValueError(" ".join(errors))

    @property
    def model_key(self) -> tuple:
        """What the model depends on (the rest only changes what is done with it)."""
        return self.source, self.width, self.depth, self.seed



__all__ = ["FIELDS", "SOURCES", "SOURCE_LABELS", "FoldOptions"]
