"""The one control schema: every control the lab offers is a :class:`Field`.

A field says, once, everything the lab needs to know about one value a person can choose:

* **the widget**: its kind, label, help, range, step and format (``pages/shared/widgets.py``
  draws it from these and nothing else, so no page re-types a range);
* **its URL form**: the parameter name and how the value is written and read back;
* **its validation**: :meth:`Field.check` turns a value from a loaded JSON file (or any caller)
  into the field's type, or raises a ``ValueError`` that says what was expected;
* **its bound**: ``low``/``high`` are the caps from ``normcore.lab.limits`` where the value
  costs work; ``caps`` names the combined checks in that file the field takes part in.

A :class:`Schema` is an ordered set of fields (the shared sidebar controls, a page's own
options, a scenario's parameters, a training run's configuration) with the conversions
that go over all of them at once: defaults, URL in and out, JSON validation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping

WIDGETS = ("slider", "select_slider", "number_input", "selectbox", "radio", "toggle", "multiselect")


@dataclass(frozen=True)
class Field:
    """One control: a value's type, range and widget. ``kind`` is one of

    ``int``, ``float``: a number in [low, high] (``choices`` set: one of those values);
    ``bool``; ``choice``: one of ``choices``; ``choices``: a non-empty list of distinct ``choices``.
    """

    name: str
    label: str
    default: Any
    kind: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple | Callable[[], tuple] | None = None  # a callable for what is only known at run time
    labels: Mapping | Callable[[Any], str] | None = None  # how a choice is shown
    widget: str = ""  # default: from the kind (see widget_kind)
    format: str | None = None  # printf-style number format for the widget
    url: str = ""  # the URL parameter's name; default: the field's name
    nullable: bool = False  # None is a value (momentum: a cumulative average)
    snap: bool = False  # a number from a URL snaps to the nearest choice (log scale)
    resolution: int | None = None  # decimals a URL value is rounded to (the widget's resolution)
    max_items: int | None = None  # kind "choices": at most this many
    canonical: Callable[[str], str] | None = None  # kind "choices": an item's canonical name (raises ValueError)
    caps: tuple[str, ...] = ()  # combined checks in normcore.lab.limits this field takes part in

    def __post_init__(self):
        assert self.kind in ("int", "float", "bool", "choice", "choices"), self.kind
        assert not self.widget or self.widget in WIDGETS, self.widget

    # -- what the widget shows ----------------------------------------------------------

    @property
    def url_name(self) -> str:
        return self.url or self.name

    @property
    def options(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())

    @property
    def widget_kind(self) -> str:
        if self.widget:
            return self.widget
        return {"bool": "toggle", "choice": "selectbox", "choices": "multiselect"}.get(
            self.kind, "select_slider" if self.choices is not None else "slider")

    def label_of(self, value) -> str:
        if isinstance(value, (list, tuple)):  # kind "choices": each item's label
            return ", ".join(self.label_of(v) for v in value)
        if self.labels is None:
            return f"{value:g}" if isinstance(value, float) else str(value)
        return self.labels(value) if callable(self.labels) else self.labels.get(value, str(value))

    # -- validation: JSON and programmatic values ---------------------------------------

    def check(self, value):
        """``value`` in the field's type, or a ``ValueError`` saying what was expected."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("must not be null")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}"[:120])
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.options:
                raise ValueError(f"expected one of {', '.join(map(str, self.options))}, got {value!r}"[:300])
            return value
        if self.kind == "choices":
            return self._check_list(value)
        return self._check_number(value)

    def _check_list(self, value) -> list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of names")
        if not value:
            raise ValueError("must name at least one")
        if len(set(value)) != len(value):
            raise ValueError("lists a name twice")
        if self.max_items is not None and len(value) > self.max_items:
            raise ValueError(f"lists {len(value)} names; at most {self.max_items}")
        items = [self.canonical(v) for v in value] if self.canonical else list(value)
        bad = [v for v in items if v not in self.options]
        if bad:
            raise ValueError(f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(self.options)}")
        return items

    def _check_number(self, value):
        # JSON true/false are ints in Python: refuse them explicitly.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {type(value).__name__} {value!r}"[:120])
        if self.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise ValueError(f"expected a whole number, got {value!r}")
        number = int(value) if self.kind == "int" else float(value)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("expected a finite number")
        if self.choices is not None:  # one of the control's values (up to float rounding)
            match = [c for c in self.options if math.isclose(c, number, rel_tol=1e-9)]
            if not match:
                raise ValueError(f"expected one of {', '.join(f'{c:g}' for c in self.options)}, got {number:g}")
            return match[0]
        if not self.low <= number <= self.high:
            raise ValueError(f"{number:g} is outside the allowed range {self.low:g} to {self.high:g} (this demo's cap)")
        return number

    # -- the URL form ---------------------------------------------------------------------

    def to_text(self, value) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (list, tuple)):
            return ",".join(map(str, value))
        return str(value)

    def from_text(self, text: str):
        """A URL parameter's value, checked like a loaded file's."""
        text = text.strip()
        if self.nullable and text.lower() in ("none", "null", ""):
            return None
        if self.kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return text.lower() in ("true", "1")
        if self.kind == "choice":
            return self.check(text)
        if self.kind == "choices":
            return self.check([v.strip() for v in text.split(",") if v.strip()])
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}"[:120]) from None
        if self.snap and math.isfinite(number):  # eps: the nearest offered value on the log scale
            if number <= 0:
                raise ValueError(f"{self.name} must be > 0")
            return min(self.options, key=lambda c: abs(math.log10(c) - math.log10(number)))
        if self.resolution is not None and math.isfinite(number):
            number = round(number, self.resolution)  # the control's resolution (no 5e-324)
        return self.check(number)


@dataclass(frozen=True)
class Schema:
    """An ordered set of fields and the conversions over all of them."""

    fields: tuple[Field, ...]
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def __getitem__(self, name: str) -> Field:
        return self.by_name[name]

    def __iter__(self):  # like a dict: the names
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    @property
    def url_names(self) -> tuple[str, ...]:
        return tuple(f.url_name for f in self.fields)

    def defaults(self) -> dict:
        return {f.name: f.default for f in self.fields}

    def subset(self, names: Iterable[str]) -> Schema:
        return Schema(tuple(self[n] for n in names))

    def to_query(self, values: Mapping, defaults: Mapping | None = None) -> dict[str, str]:
        """The values that differ from ``defaults`` (the fields' own by default), as URL parameters."""
        defaults = self.defaults() if defaults is None else defaults
        out = {}
        for f in self.fields:
            value, default = values[f.name], defaults[f.name]
            if isinstance(value, (list, tuple)):
                value, default = list(value), list(default)
            if value != default:
                out[f.url_name] = f.to_text(value)
        return out

    def from_query(self, params: Mapping) -> tuple[dict, list[str]]:
        """The values the URL parameters give (only those present). A bad one is left out,
        with a message naming the parameter, what was wrong and the default kept."""
        values, messages = {}, []
        for f in self.fields:
            if f.url_name not in params:
                continue
            raw = params[f.url_name]
            raw = str(raw[-1] if isinstance(raw, (list, tuple)) else raw)
            try:
                values[f.name] = f.from_text(raw)
            except ValueError as exc:
                messages.append(f"Ignored URL parameter {f.url_name}={raw.strip()[:60]!r}: {str(exc).rstrip('.')}. "
                                f"Using the default {f.label_of(f.default) if f.default is not None else 'none'}.")
        return values, messages

    def check(self, body: Mapping) -> tuple[dict, list[str]]:
        """Each field present in ``body`` checked (:meth:`Field.check`); the messages say,
        field by field, what is wrong."""
        values, errors = {}, []
        for f in self.fields:
            if f.name in body:
                try:
                    values[f.name] = f.check(body[f.name])
                except ValueError as exc:
                    errors.append(f"{f.name}: {str(exc).rstrip('.')}.")
        return values, errors


class QueryOptions:
    """Mixin for a page's frozen dataclass of options whose fields are ``SCHEMA``'s: the URL
    form both ways. Subclasses set ``SCHEMA: ClassVar[Schema] = FIELDS``."""

    SCHEMA: ClassVar[Schema]

    def to_query(self) -> dict[str, str]:
        """The options that differ from the defaults, as URL parameters."""
        return type(self).SCHEMA.to_query(asdict(self))

    @classmethod
    def from_query(cls, params: Mapping):
        """Options from URL parameters, and a message for each bad value (which keeps its default).
        A list (a multiselect's value) becomes a tuple, so the options stay hashable."""
        values, messages = cls.SCHEMA.from_query(params)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return replace(cls(), **values), messages
