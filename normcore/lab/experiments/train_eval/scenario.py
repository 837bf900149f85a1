"""What a train-vs-eval scenario is and returns: :class:`Scenario` (its controls, the shared
settings it reads), :class:`ScenarioResult` with its :class:`Headline`, and :class:`Resource`,
an expensive part several scenarios share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from normcore.lab.fields import Field, Schema
from normcore.lab.settings import FIELDS, LabSettings, Problem

NO_PARAMS = Schema(())


@dataclass(frozen=True)
class Headline:
    label: str
    value: str
    help: str = ""


@dataclass
class ScenarioResult:
    """Tidy frames for the chart, one headline number, and messages to show above it.

    ``messages`` use :class:`~normcore.lab.settings.Problem` levels, plus ``"info"``. An empty
    ``frames`` means the scenario could not run with these settings (the messages say why).
    """

    frames: dict[str, pd.DataFrame]
    headline: Headline | None
    messages: list[Problem] = field(default_factory=list)
    table: pd.DataFrame | None = None
    table_caption: str = ""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    icon: str
    explanation: str  # markdown
    run: Callable[..., ScenarioResult]
    # The scenario's own controls (the shared ones come from the sidebar): one field each,
    # named like run's keyword arguments.
    params: Schema = NO_PARAMS
    # The name of an expensive part in RESOURCES (the trained digits model), built once per
    # setting and shared by every scenario that names it; then run(s, resource, **params).
    resource: str | None = None
    # The shared settings it reads. A problem with settings it does not read (the digits
    # network has its own widths, so no channel count) is not this scenario's to report.
    reads: tuple[str, ...] = tuple(FIELDS)

    def defaults(self) -> dict:
        return self.params.defaults()

    def concerns(self, problem: Problem) -> bool:
        """Whether ``problem`` is about settings this scenario reads (then it must show it)."""
        return set(problem.fields) <= set(self.reads)


def number_field(name: str, label: str, default: int | float, low, high, step, help: str = "", caps=()) -> Field:
    """A scenario's numeric control: a whole number if the default is an int, else a float."""
    kind = "int" if isinstance(default, int) else "float"
    return Field(name, label, default, kind, help, low=low, high=high, step=step, caps=caps)


def blocked(messages: list[Problem]) -> ScenarioResult:
    return ScenarioResult({}, None, messages)


@dataclass(frozen=True)
class Resource:
    """An expensive part some scenarios share: ``build(config(s), on_progress)`` runs once per
    distinct config (a page caches it); ``on_progress`` gets the fraction done."""

    config: Callable[[LabSettings], dict]
    build: Callable[..., Any]
    message: str

