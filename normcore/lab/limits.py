"""Every cap on expensive input, in one place.

The dashboard is also a public hosted demo on small CPU machines, so each control that
can make work grow has a ceiling here. Controls take their ranges from these numbers and
``settings.problems`` explains, in words, when a combination goes over one.
"""

# Live statistics and train-vs-eval: one (N, C, H, W) tensor per step.
MAX_BATCH_SIZE = 512
MAX_CHANNELS = 64
MAX_SPATIAL = 32  # H = W
MAX_ELEMENTS = 1 << 21  # N·C·H·W per batch (2,097,152 float32 values = 8 MiB)
MAX_STREAM_STEPS = 2000  # steps kept in a live stream's history
MAX_TRAIN_EVAL_VALUES = 30_000_000  # values one train-vs-eval scenario pushes through its layers

# Training comparisons: bound the total work of one run.
MAX_EPOCHS = 30
MAX_WIDTH = 256  # hidden units (MLP) or channels (CNN)
MAX_DEPTH = 6
MAX_TRAIN_BATCH_SIZE = 512
MAX_VARIANTS = 10  # model × norm × device combinations in one run
MAX_SAMPLE_STEPS = 5_000_000  # Σ over variants of epochs × training samples
MAX_CONFIG_BYTES = 16_384  # an uploaded run configuration (JSON)
# Samples count the data but not what it costs: tiny batches are bound by per-step overhead
# (~1-2 ms a step here) and wide CNNs by arithmetic (~50-90 GMAC/s on 2 cores), so a run is
# also capped in optimizer steps and in multiply-accumulates (3 × forward, for the backward).
MAX_TRAIN_STEPS = 40_000  # Σ over variants of optimizer steps (~1 minute at worst here)
MAX_TRAIN_MACS = 3e12  # Σ over variants of 3 × forward MACs per sample × samples (~1 minute)
