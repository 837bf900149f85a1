"""Every cap on expensive input, in one place.

The dashboard is also a public hosted demo on small CPU machines, so each control that can
make work grow has a ceiling here. Two kinds:

* **single caps** (``MAX_*``): a field's ``high`` in the control schema refers to one, so the
  widget, the URL parser and the JSON validation all stop at it;
* **combined caps**: work that grows with several fields at once (values per batch,
  optimizer steps, multiply-accumulates). Each is a named check below that returns the
  message a person reads, saying what to change, or ``None``. Fields name the checks they take
  part in (``Field.caps``), and the experiments call them.
"""

from __future__ import annotations

# -- Live statistics and train-vs-eval: one (N, C, H, W) tensor per step -----------------
MAX_BATCH_SIZE = 512
MAX_CHANNELS = 64
MAX_SPATIAL = 32  # H = W
MAX_ELEMENTS = 1 << 21  # N·C·H·W per batch (2,097,152 float32 values = 8 MiB)
MAX_STREAM_STEPS = 2000  # steps kept in a live stream's history
MAX_STEPS_PER_TICK = 50  # batches one Play tick streams
MAX_DRIFT_PERIOD = 1000  # steps of one drift cycle

# -- Train vs eval: each scenario's own controls, and the work behind one scenario -------
MAX_TRAIN_EVAL_VALUES = 30_000_000  # values one train-vs-eval scenario pushes through its layers
MAX_WARMUP = 300  # warm-up steps before a measurement (enough for the EMA to forget its start)
MAX_SCENARIO_STEPS = 1000  # training / warm-up steps a scenario control offers
MAX_PROBES = 64  # probe batches per batch size
MAX_PRECISE_BN_BATCHES = 1024  # batches PreciseBN may average
MAX_FINETUNE_SAMPLES = 1000  # shifted digits the frozen-BN scenario fine-tunes on
MAX_FINETUNE_EPOCHS = 30  # epochs of that fine-tuning

# -- Training comparisons: bound the total work of one run --------------------------------
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


# -- Combined caps: named checks ----------------------------------------------------------


def elements_per_batch(batch_size: int, channels: int, spatial: int) -> str | None:
    """One batch of N×C×H×W values (fields batch_size, channels, spatial)."""
    n = batch_size * channels * spatial * spatial
    if n <= MAX_ELEMENTS:
        return None
    return (f"N×C×H×W = {batch_size}×{channels}×{spatial}×{spatial} = {n:,} values is over this demo's cap of "
            f"{MAX_ELEMENTS:,} per batch. Lower the batch size, channels or spatial size.")


def variants_per_run(variants: int) -> str | None:
    """Normalizations × devices compared in one run (fields norms, devices)."""
    if variants <= MAX_VARIANTS:
        return None
    return (f"{variants} normalization × device combinations is over this demo's cap of {MAX_VARIANTS} per run. "
            "Pick fewer normalizations or devices.")


def training_work(steps: int, macs: float, samples: int) -> list[str]:
    """The total work of a training run (fields epochs, batch_size, width, depth, model, norms,
    devices): optimizer steps, multiply-accumulates and samples, each with what to change."""
    out = []
    for amount, cap, what, fix in (
        (steps, MAX_TRAIN_STEPS, "optimizer steps", "Use fewer epochs, fewer variants or a larger batch size."),
        (macs, MAX_TRAIN_MACS, "multiply-accumulates", "Use a narrower or shallower model, fewer epochs or fewer variants."),
        (samples, MAX_SAMPLE_STEPS, "training samples", "Use fewer epochs or fewer variants."),
    ):
        if amount > cap:
            out.append(f"This run needs about {amount:,.0f} {what}, over this demo's cap of {cap:,.0f}. {fix}")
    return out


def scenario_steps(steps: int, values_per_step: int, what: str = "steps") -> tuple[int, str | None]:
    """Steps a train-vs-eval scenario may take at ``values_per_step`` (fields batch_size,
    channels, spatial and the scenario's steps): ``steps`` or fewer, with a warning if fewer."""
    cap = max(1, MAX_TRAIN_EVAL_VALUES // max(values_per_step, 1))
    if steps <= cap:
        return steps, None
    return cap, (f"{what[0].upper() + what[1:]}: {cap} instead of {steps}, to keep this demo responsive at "
                 f"{values_per_step:,} values per step; smaller batches or maps allow more.")


def config_size(size: int) -> str | None:
    """An uploaded run configuration's size in bytes."""
    if size <= MAX_CONFIG_BYTES:
        return None
    return f"The file is {size:,} bytes; a run configuration is at most {MAX_CONFIG_BYTES:,} bytes."


# -- Data-parallel runs (normcore.lab.distributed): worker processes on this machine ---------
# Each spawned worker is a full interpreter with torch (~230 MB, ~1.2 s to start here) and one
# thread, so the worker count is what costs: memory and cores. (torchrun runs are not capped
# in workers: torchrun decides how many there are.)
MAX_WORKERS = 4
MAX_HOSTED_WORKERS = 2  # on a hosted server (environment variable NORMCORE_HOSTED=1)
HOSTED_VARIABLE = "NORMCORE_HOSTED"
MAX_PER_WORKER_BATCH = 256
MAX_DISTRIBUTED_EPOCHS = 20
MAX_DISTRIBUTED_STEPS = 6000  # Σ over one page run's normalizations of epochs × steps per epoch
MAX_DISTRIBUTED_PARAMS = 250_000  # trainable parameters of the data-parallel model (width × depth)
MAX_DISTRIBUTED_RUN_S = 120.0  # a run's wall-clock cap; its workers are then stopped
MAX_DISTRIBUTED_RUNS = 1  # distributed runs at a time on one server (others are told to wait)
MAX_SWEEP_EPOCHS = 3  # the Data-parallel page's batch sweep: epochs of each (batch, norm) run
MAX_SWEEP_STEPS = 6000  # Σ over the sweep's (batch, norm) runs of epochs × steps per epoch
MAX_SWEEP_RUN_S = 300.0  # the batch sweep's wall-clock cap (all its runs on one set of workers)
# The command line (python -m normcore.lab.distributed) takes the page's ranges (one schema,
# normcore.lab.distributed.config.FIELDS), but a run there may be longer than a hosted page's:
COMMAND_LINE_LIFTS = ("distributed_work",)  # the page's combined checks a command-line run is not held to
MAX_COMMAND_LINE_RUN_S = 1800.0  # a command-line run's wall-clock cap (a page run's: MAX_DISTRIBUTED_RUN_S)


def worker_cap(environ) -> int:
    """Workers a spawned run may have: 2 on a hosted server, else MAX_WORKERS."""
    return MAX_HOSTED_WORKERS if environ.get(HOSTED_VARIABLE, "") not in ("", "0") else MAX_WORKERS


def workers_allowed(workers: int, environ) -> str | None:
    """The worker count against :func:`worker_cap` (field workers)."""
    cap = worker_cap(environ)
    if workers <= cap:
        return None
    return (f"{workers} workers is over this server's cap of {cap} (each worker takes about 230 MB and a core). "
            f"Use at most {cap}.")


def sweep_work(steps: int) -> list[str]:
    """The Data-parallel page's batch sweep: optimizer steps over all its (batch, norm) runs."""
    if steps > MAX_SWEEP_STEPS:
        return [f"This sweep needs {steps:,} optimizer steps, over this demo's cap of {MAX_SWEEP_STEPS:,}. "
                "Use fewer epochs, more workers, or leave out the smallest batches (they take the most steps)."]
    return []


def distributed_work(steps: int, params: int) -> list[str]:
    """One data-parallel page run: optimizer steps over its normalizations, and the model's size."""
    out = []
    if steps > MAX_DISTRIBUTED_STEPS:
        out.append(f"This run needs {steps:,} optimizer steps, over this demo's cap of {MAX_DISTRIBUTED_STEPS:,}. "
                   "Use fewer epochs, fewer normalizations or a larger per-worker batch.")
    if params > MAX_DISTRIBUTED_PARAMS:
        out.append(f"The model has {params:,} parameters, over this demo's cap of {MAX_DISTRIBUTED_PARAMS:,} for "
                   "data-parallel runs. Use a narrower or shallower model.")
    return out


def global_batch(workers: int, per_worker_batch: int, train_size: int) -> str | None:
    """One optimizer step takes workers × per-worker batch samples (fields workers, per_worker_batch)."""
    if workers * per_worker_batch <= train_size:
        return None
    return (f"{workers} workers × {per_worker_batch} samples = {workers * per_worker_batch:,} per step is more than "
            f"the {train_size:,} training samples. Use fewer workers or a smaller per-worker batch.")


# -- Gradients: one small batch, its backward and its full Jacobian (N·C·H·W)² -------------
# jacrev builds one row per output value; at 64 values the Jacobian is 4,096 entries and the
# heatmap stays readable.
MAX_GRADIENT_ELEMENTS = 64  # N·C·H·W of the Gradients page's own input


def gradient_elements(n: int, c: int, h: int, w: int) -> str | None:
    """The Gradients page's input of N×C×H×W values (its fields n, c, h, w)."""
    total = n * c * h * w
    if total <= MAX_GRADIENT_ELEMENTS:
        return None
    return (f"N×C×H×W = {n}×{c}×{h}×{w} = {total} values is over this page's cap of {MAX_GRADIENT_ELEMENTS} "
            "(its Jacobian has one row and one column per value). Lower N, C, H or W.")


# -- Gradients page, parts 3–4: a deep MLP trained twice (the norm and none), and the landscape --
# One optimizer step of a depth-D, width-W MLP costs ~3·128·D·W² multiply-accumulates, but
# at these sizes per-layer overhead dominates (~0.25 ms per layer and step here), so the
# work is capped as depth × width × steps, summed over both runs.
MAX_FLOW_DEPTH = 50  # hidden blocks (the training page keeps its own MAX_DEPTH)
MAX_FLOW_WIDTH = 128
MAX_FLOW_STEPS = 1000
MAX_FLOW_WORK = 2_000_000  # depth × width × steps of one run (the default: 20 × 64 × 200 = 256,000); normcore's layers
MAX_LANDSCAPE_STEPS = 1000  # training steps of each landscape run
MAX_PROBE_POINTS = 600  # points along the gradient evaluated in one run (probes × step sizes)
MAX_SLICE_RESOLUTION = 41  # points per side of the 2-D slice (and of the 1-D slice × 2)


def flow_work(depth: int, width: int, steps: int) -> str | None:
    """One gradient-flow run of depth × width × steps (fields depth, width, steps)."""
    work = depth * width * steps
    if work <= MAX_FLOW_WORK:
        return None
    return (f"depth × width × steps = {depth} × {width} × {steps} = {work:,} is over this page's cap of "
            f"{MAX_FLOW_WORK:,} per run. Use fewer layers, fewer units or fewer steps.")


def probe_points(steps: int, every: int, scales: int) -> str | None:
    """Points along the gradient one landscape run evaluates (fields land_steps, land_every)."""
    points = (steps // every) * scales
    if points <= MAX_PROBE_POINTS:
        return None
    return (f"{steps // every} probes × {scales} step sizes = {points} points along the gradient is over this "
            f"page's cap of {MAX_PROBE_POINTS} per run. Probe less often (a larger k) or train fewer steps.")


# -- Deploy & port, Fold tab: the digits CNN it folds, and the timing of both versions --------
# The widest, deepest CNN (1.8 M multiply-accumulates per digit) trains in a few seconds here; the
# timing runs the test set through both versions, repeats × 2 passes, so it is capped in
# multiply-accumulates.
MAX_FOLD_WIDTH = 32  # channels of each conv block
MAX_FOLD_DEPTH = 4  # conv blocks
MAX_FOLD_BATCH = 256  # the one batch whose statistics the train-mode mistake bakes in
MAX_FOLD_REPEATS = 200  # timed forward passes of each version
MAX_FOLD_TIMING_MACS = 2e10  # Σ of the timed passes' multiply-accumulates (~1 s on 1 busy core here)


def fold_timing_repeats(repeats: int, macs_per_pass: float) -> tuple[int, str | None]:
    """Timed passes the Fold tab may make of each version at ``macs_per_pass`` (fields repeats,
    width, depth): ``repeats`` or fewer (at least 5), with a message if fewer."""
    cap = max(5, int(MAX_FOLD_TIMING_MACS // max(2 * macs_per_pass, 1)))
    if repeats <= cap:
        return repeats, None
    return cap, (f"Timing: {cap} passes of each version instead of {repeats}, to keep this demo responsive at "
                 f"{macs_per_pass:,.0f} multiply-accumulates per pass; a narrower or shallower model allows more.")


# -- Deploy & port: the Port and Precision tabs -------------------------------------------
# Port: a stack of 16-feature Linear → BatchNorm → ReLU blocks runs T training batches on the
# source side and on up to four target sides (one per mismatch); one BatchNorm call costs
# ~0.3-1 ms here (small tensors: Python overhead), so the work is capped in layer-steps.
MAX_KERAS_RUN_S = 120  # the real-Keras comparison's child process (Keras's import is ~5 s of it)
MAX_PORT_DEPTH = 24  # normalized layers in one stack
MAX_PORT_STEPS = 500  # training batches per side
MAX_PORT_BATCH = 256  # samples per training batch
MAX_PORT_LAYER_STEPS = 1200  # depth × steps per side (≤ 5 sides: ~2-4 s at worst here, one thread)
MAX_EPS_DEPTH = 48  # residual blocks of the LayerNorm/RMSNorm eps stack (float64, 64 tokens × 32)
# Precision: every point of a sweep runs 7 methods (and their float64 twins) on one 8,192-value input.
MAX_PRECISION_POINTS_PER_DECADE = 4  # the offset sweep spans 8 decades: at most 33 points + offset 0


def port_work(depth: int, steps: int) -> str | None:
    """The Port tab's stack: layers × training steps per side (fields depth, steps)."""
    if depth * steps <= MAX_PORT_LAYER_STEPS:
        return None
    return (f"{depth} layers × {steps} steps = {depth * steps:,} layer-steps per side is over this demo's cap of "
            f"{MAX_PORT_LAYER_STEPS:,}. Use fewer layers or fewer training steps.")


# -- Transformers: a tiny GPT at initialization (one backward pass) and in training ---------
# One optimizer step of a depth-L, width-d TinyGPT on B×T tokens costs about 3 × (12·d²·L + 2·T·d·L)
# multiply-accumulates per token; at the default (d 64, L 4, 32 × 32 tokens) that is ~45 ms here
# (one thread), per-op overhead included. Runs are capped in that work, and in wall-clock time.
MAX_TRANSFORMER_WIDTH = 128  # d_model
MAX_TRANSFORMER_DEPTH = 8  # blocks of a model that trains
MAX_TRANSFORMER_INIT_DEPTH = 48  # blocks of a model that is only initialised and differentiated once
MAX_TRANSFORMER_CONTEXT = 128  # tokens per sequence
MAX_TRANSFORMER_STEPS = 1000  # optimizer steps of one run
MAX_TRANSFORMER_SEEDS = 3  # seeds averaged at initialization
MAX_TRANSFORMER_BATCH = 128  # sequences per batch (the shared sidebar allows more for other pages)
MAX_TRANSFORMER_RUN_S = 180.0  # a training comparison's wall-clock cap (all its runs)
MAX_HOSTED_TRANSFORMER_RUN_S = 60.0
MAX_TRANSFORMER_TRAIN_MACS = 5e12  # Σ over a comparison's runs of steps × tokens × MACs per token (~3 min here)
MAX_HOSTED_TRANSFORMER_TRAIN_MACS = 1e12
MAX_TRANSFORMER_SWEEP_RUNS = 24  # a learning-rate sweep's runs: rates × variants (8 × 3)
MAX_HOSTED_TRANSFORMER_SWEEP_RUNS = 12
MAX_TRANSFORMER_SWEEP_S = 300.0  # a learning-rate sweep's wall-clock cap (all its runs)
MAX_HOSTED_TRANSFORMER_SWEEP_S = 120.0
MAX_TRANSFORMER_INIT_MACS = 1e12  # Σ over an at-initialization view's backward passes
MAX_HOSTED_TRANSFORMER_INIT_MACS = 3e11


def hosted(environ) -> bool:
    """True on a hosted server (environment variable NORMCORE_HOSTED set and not 0)."""
    return environ.get(HOSTED_VARIABLE, "") not in ("", "0")


def transformer_run_seconds(environ) -> float:
    """A training comparison's wall-clock cap: tighter on a hosted server."""
    return MAX_HOSTED_TRANSFORMER_RUN_S if hosted(environ) else MAX_TRANSFORMER_RUN_S


def transformer_macs(width: int, depth: int, context: int, tokens: int) -> float:
    """Multiply-accumulates of ``tokens`` tokens through a TinyGPT, forward and backward."""
    return 3.0 * tokens * depth * (12 * width * width + 2 * context * width)


def transformer_training_work(runs: int, steps: int, batch_size: int, context: int, depth: int, width: int,
                              environ) -> str | None:
    """A comparison of ``runs`` training runs (fields steps, batch_size, context, depth, width)."""
    macs = runs * steps * transformer_macs(width, depth, context, batch_size * context)
    cap = MAX_HOSTED_TRANSFORMER_TRAIN_MACS if hosted(environ) else MAX_TRANSFORMER_TRAIN_MACS
    if macs <= cap:
        return None
    return (f"{runs} runs × {steps} steps of {batch_size} × {context} tokens through {depth} blocks of width {width} "
            f"is about {macs:.2g} multiply-accumulates, over this server's cap of {cap:.2g}. "
            "Use fewer steps, a smaller batch or context, or a narrower or shallower model.")


def transformer_sweep_seconds(environ) -> float:
    """A learning-rate sweep's wall-clock cap: tighter on a hosted server."""
    return MAX_HOSTED_TRANSFORMER_SWEEP_S if hosted(environ) else MAX_TRANSFORMER_SWEEP_S


def transformer_sweep_work(rates: int, variants: int, steps: int, batch_size: int, context: int, depth: int,
                           width: int, environ) -> str | None:
    """A learning-rate sweep: ``rates`` × ``variants`` runs (fields rates, z_loss, steps, depth,
    width, context and the sidebar's batch size), capped in runs and in total work."""
    cap = MAX_HOSTED_TRANSFORMER_SWEEP_RUNS if hosted(environ) else MAX_TRANSFORMER_SWEEP_RUNS
    if rates * variants > cap:
        return (f"{rates} learning rates × {variants} variants is {rates * variants} runs, over this server's cap of "
                f"{cap}. Pick fewer learning rates, or leave z-loss out.")
    return transformer_training_work(rates * variants, steps, batch_size, context, depth, width, environ)


def transformer_init_work(passes: int, batch_size: int, context: int, depth_sum: int, width: int, environ) -> str | None:
    """An at-initialization view: ``passes`` backward passes per depth (placements × seeds × inits),
    over depths summing to ``depth_sum`` (fields depth, seeds, batch_size, context, width)."""
    macs = passes * transformer_macs(width, depth_sum, context, batch_size * context)
    cap = MAX_HOSTED_TRANSFORMER_INIT_MACS if hosted(environ) else MAX_TRANSFORMER_INIT_MACS
    if macs <= cap:
        return None
    return (f"This view differentiates about {macs:.2g} multiply-accumulates, over this server's cap of {cap:.2g}. "
            "Use fewer seeds, a smaller batch or context, or a shallower or narrower model.")
