"""A training run's configuration: :class:`RunConfig`, its schema of fields, JSON in and out.

Every field is a :class:`normcore.lab.fields.Field` in :data:`SCHEMA`: the training page
draws its widgets from it, shares a comparison by link through it (``dataset`` travels as
``data``, ``probe_layer`` as ``probe``), and a loaded file is validated through it. Caps
come from ``normcore.lab.limits``. The shared controls (batch size, momentum, eps, groups,
seed) are the sidebar's; the page's own controls set the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from normcore.lab import datasets, devices, limits, models
from normcore.lab.fields import Field, Schema
from normcore.lab.loop import OPTIMIZER_LABELS, OPTIMIZERS
from normcore.lab.settings import FIELDS as SHARED

MODES = ("compare", "batch_sweep", "lr_sweep")
MODE_LABELS = {
    "compare": "Compare normalizations × devices",
    "batch_sweep": "Batch-size sweep (GroupNorm paper, Fig. 1)",
    "lr_sweep": "Learning-rate sweep (with vs without BN)",
}
# The default comparison: every normalization an MLP can use (InstanceNorm needs the CNN's maps).
DEFAULT_NORMS = ("none", "batch", "layer", "group", "rms")
CONFIG_KIND = "normcore-training-run"
CONFIG_VERSION = 1


def _target_keys() -> tuple[str, ...]:
    return tuple(t.key for t in devices.all_targets())


def _target_key(name: str) -> str:
    return devices.parse_target(name).key  # a ValueError says why a device is unusable here


def _target_label(key: str) -> str:
    return devices.parse_target(key).label


SCHEMA = Schema((
    Field("mode", "Mode", "compare", "choice", choices=MODES, labels=MODE_LABELS, widget="radio"),
    Field("dataset", "Data set", "digits", "choice", choices=datasets.DATASETS, labels=datasets.DATASET_LABELS, url="data"),
    Field("separation", "Cluster separation (noise stds)", 3.0, "float", "Distance between class means; 0 = pure noise.",
          0.0, 20.0, 0.5),
    Field("model", "Model", "mlp", "choice", choices=models.MODEL_KINDS, labels=models.MODEL_LABELS),
    Field("width", "Width (units or channels)", 64, "int", low=1, high=limits.MAX_WIDTH, caps=("training_work",)),
    Field("depth", "Hidden blocks", 2, "int", low=1, high=limits.MAX_DEPTH, caps=("training_work",)),
    Field("activation", "Activation", "relu", "choice", choices=tuple(models.ACTIVATIONS)),
    Field("probe_layer", "Block tracked for percentiles", 2, "int", low=1, high=limits.MAX_DEPTH, url="probe"),
    Field("norms", "Normalizations", DEFAULT_NORMS, "choices", "Sweeps use their own fixed sets.",
          choices=models.NORMS, labels=models.NORM_LABELS, max_items=limits.MAX_VARIANTS, caps=("variants_per_run", "training_work")),
    Field("impl", "Implementation", "normcore", "choice", "normcore's layers or torch.nn's.", choices=models.IMPLS,
          widget="radio"),
    replace(SHARED["batch_size"], low=2, high=limits.MAX_TRAIN_BATCH_SIZE, caps=("training_work",)),
    SHARED["momentum"],
    SHARED["eps"],
    SHARED["num_groups"],
    Field("lr", "Learning rate", 0.1, "float", low=1e-6, high=100.0, widget="number_input", format="%g"),
    Field("epochs", "Epochs", 3, "int", low=1, high=limits.MAX_EPOCHS, caps=("training_work",)),
    Field("optimizer", "Optimizer", "sgd", "choice", choices=OPTIMIZERS, labels=OPTIMIZER_LABELS),
    SHARED["seed"],
    Field("devices", "Devices", ("cpu",), "choices", "Sweeps use the first device.", choices=_target_keys,
          labels=_target_label, max_items=limits.MAX_VARIANTS, canonical=_target_key,
          caps=("variants_per_run", "training_work")),
))


@dataclass(frozen=True)
class RunConfig:
    """A training run: every field with :data:`SCHEMA`'s default."""

    mode: str = SCHEMA["mode"].default
    dataset: str = SCHEMA["dataset"].default
    separation: float = SCHEMA["separation"].default  # clusters only: distance between class means, in noise stds
    model: str = SCHEMA["model"].default
    width: int = SCHEMA["width"].default
    depth: int = SCHEMA["depth"].default
    activation: str = SCHEMA["activation"].default
    probe_layer: int = SCHEMA["probe_layer"].default  # 1-based hidden block whose pre-activation percentiles are tracked
    norms: tuple[str, ...] = SCHEMA["norms"].default
    impl: str = SCHEMA["impl"].default
    batch_size: int = SCHEMA["batch_size"].default
    momentum: float | None = SCHEMA["momentum"].default  # BatchNorm's, PyTorch convention; None = cumulative average
    eps: float = SCHEMA["eps"].default
    num_groups: int = SCHEMA["num_groups"].default
    lr: float = SCHEMA["lr"].default
    epochs: int = SCHEMA["epochs"].default
    optimizer: str = SCHEMA["optimizer"].default
    seed: int = SCHEMA["seed"].default
    devices: tuple[str, ...] = SCHEMA["devices"].default

    def values(self) -> dict:
        """Every field, with lists for the tuples: what JSON and widgets hold."""
        return asdict(self) | {"norms": list(self.norms), "devices": list(self.devices)}

    def to_json(self) -> str:
        return json.dumps({"kind": CONFIG_KIND, "version": CONFIG_VERSION} | self.values(), indent=2)

    @property
    def key(self) -> str:
        """A canonical string naming this experiment (the result cache's key)."""
        return json.dumps(asdict(self), sort_keys=True)


# The dashboard's shared controls (normcore.lab.settings, in the sidebar and the URL under their
# own names) set these fields; the training page's own controls set the rest.
SHARED_FIELDS = ("batch_size", "momentum", "eps", "num_groups", "seed")
PAGE_FIELDS = tuple(name for name in SCHEMA if name not in SHARED_FIELDS)


class ConfigError(ValueError):
    """A configuration that cannot be used; ``messages`` says what is wrong, field by field."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


def _envelope_errors(body: dict) -> list[str]:
    """What is wrong with a file's kind, version and field names (not its values)."""
    errors = []
    if body.get("kind", CONFIG_KIND) != CONFIG_KIND:
        errors.append(f"kind: this is not a training-run configuration (kind {body.get('kind')!r}, expected {CONFIG_KIND!r}).")
    if body.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        errors.append(f"version: expected {CONFIG_VERSION}, got {body.get('version')!r}.")
    unknown = sorted(set(body) - set(SCHEMA) - {"kind", "version"})
    if unknown:
        errors.append(f"Unknown field(s): {', '.join(map(repr, unknown))[:300]}. Known fields: {', '.join(SCHEMA)}.")
    return errors


def from_dict(body) -> RunConfig:
    """A :class:`RunConfig` from a parsed JSON object. Missing fields take their defaults;
    every wrong field is reported at once (:class:`ConfigError`)."""
    if not isinstance(body, dict):
        raise ConfigError([f"The file must hold a JSON object ({{...}}), not a {type(body).__name__}."])
    values, errors = SCHEMA.check(body)
    errors = _envelope_errors(body) + errors
    if errors:
        raise ConfigError(errors)
    return RunConfig(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def from_json(data: bytes | str) -> RunConfig:
    """A :class:`RunConfig` from an uploaded file's bytes: size-checked, parsed as JSON (never
    pickle or eval), then validated field by field."""
    if too_big := limits.config_size(len(data.encode() if isinstance(data, str) else data)):
        raise ConfigError([too_big])
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        body = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError([f"The file is not valid JSON: {exc}."[:300]]) from None
    return from_dict(body)


from_upload = from_json  # what the page calls with an uploaded file's bytes


def with_settings(config: RunConfig, **changes) -> RunConfig:
    """``config`` with ``changes`` applied (values validated as a loaded file's would be)."""
    return from_dict(config.values() | changes)


# -- the page's split: its own controls (widgets, URL) and the shared ones (sidebar) ------


def page_schema() -> Schema:
    """The page's own fields, the devices defaulting to this machine's default comparison."""
    default = tuple(t.key for t in devices.default_targets())
    return Schema(tuple(replace(SCHEMA[n], default=default) if n == "devices" else SCHEMA[n] for n in PAGE_FIELDS))


def page_defaults() -> dict:
    """The page's own fields at their defaults, in widget form (lists)."""
    return widget_form(page_schema().defaults())


def widget_form(values: dict) -> dict:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def page_values(config: RunConfig) -> dict:
    """The page's own fields of ``config``, in widget form."""
    return {name: value for name, value in config.values().items() if name in PAGE_FIELDS}


def shared_values(config: RunConfig) -> dict:
    """The fields of ``config`` the shared controls hold."""
    return {name: getattr(config, name) for name in SHARED_FIELDS}


def from_page(page: dict, shared) -> RunConfig:
    """The configuration the page's widgets (``page``) and the shared settings describe;
    :class:`ConfigError` says what is wrong."""
    return from_dict(dict(page) | {name: getattr(shared, name) for name in SHARED_FIELDS})


def inactive(page: dict) -> set[str]:
    """The page's controls that do not apply to these values (the page greys them out)."""
    out = set()
    if page["dataset"] != "clusters":
        out.add("separation")  # only the synthetic clusters have a separation
    if page["mode"] != "compare":
        out.add("norms")  # the sweeps use their own fixed sets
    return out


# Sharing a comparison by link: the page's own fields as URL parameters.
URL_NAMES = {name: SCHEMA[name].url_name for name in PAGE_FIELDS}


def to_query(values: dict, defaults: dict | None = None) -> dict[str, str]:
    """The page's fields in ``values`` that differ from ``defaults``, as URL parameters."""
    return page_schema().to_query(values, defaults)


def from_query(params: dict) -> tuple[dict, list[str]]:
    """The page's fields the URL parameters give, checked as a loaded file's would be, in
    widget form; a bad one is left out with a message saying which and why."""
    values, messages = page_schema().from_query(params)
    return widget_form(values), messages
