"""Fuzz the shared controls and every page's own controls with hypothesis, through AppTest.

Three ways in, for every page the router lists (``pages/shared/navigation.py``; a new page
is fuzzed without touching this file):

* **URL parameters**, as a shared link carries them: valid values, edge values and garbage
  for any subset of the shared settings (and of a page's own URL parameters). A fresh
  session per example, like a new visitor. Checked: no exception; the settings are exactly
  what ``settings.from_query`` makes of the URL; every ignored parameter is explained in a
  warning; the URL the page leaves behind opens the same settings again.
* **Widgets**, as a visitor clicks: any subset of the sidebar controls set to any value
  their widgets allow, random values for the page's own widgets and a random button
  press, in one session per page reused across examples (state carries over, as it does
  for a visitor). Checked: no exception; the settings store follows the widgets.
* **Training runs** with tiny random configurations (the Run button is left out of the
  widget fuzz, where a random configuration may train for minutes).

Invalid combinations must explain themselves: when the settings model reports an error for
the settings a page shows, the page shows an st.error or st.warning; a disabled Run button
comes with an st.error. The number of combinations tried is printed and written to
``artifacts/fuzz/combinations.json``. ``NORMCORE_FUZZ_EXAMPLES`` sets the examples per
page and way in (default 40: about 300 combinations over seven pages, 2 to 3 minutes;
raise it for a deeper search, e.g. NORMCORE_FUZZ_EXAMPLES=200).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from tests import apptest_pages

from normcore.lab import datasets, devices, models
from normcore.lab import settings as S
from normcore.lab.populations import DRIFTS
from normcore.lab.experiments import train_eval as te
from normcore.lab.experiments import training as T
from normcore.lab.experiments import data_parallel as dp
from normcore.lab.experiments import gradients, live
from normcore.lab.experiments.deploy import fold_options, port as deploy_port, port_eps as deploy_eps
from normcore.lab.experiments.deploy import precision as deploy_precision
from normcore.lab.experiments.transformers import options as transformer_options
from normcore.lab.loop import OPTIMIZER_LABELS
from pages.shared import controls as C
from pages.shared.navigation import PAGES, ROOT

APP = str(ROOT / "app.py")
EXAMPLES = int(os.environ.get("NORMCORE_FUZZ_EXAMPLES", "40"))
COUNTS_FILE = Path(os.environ.get("NORMCORE_ARTIFACTS", ROOT / "artifacts")) / "fuzz" / "combinations.json"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a rerun that trains a model takes seconds, and that is not a bug
    derandomize=IN_CI,  # CI tries the same combinations every run; locally they vary
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None if IN_CI else settings.default.database,
)
# The widget tests reuse one session, so an example depends on the ones before it: a
# failure is reported as found, with the log of what was set, not shrunk.
FUZZ_SESSION = settings(FUZZ, phases=[Phase.explicit, Phase.generate])

# What this module must know about particular pages.
PAGE_URL_OPTIONS = {  # session key, parser, schema
    "live_statistics": ("live_options", live.LiveOptions, live.FIELDS),
    "gradients": ("gradient_options", gradients.GradientOptions, gradients.FIELDS),
    "data_parallel": ("dp_options", dp.DataParallelOptions, dp.FIELDS),
    "deploy_port": ("fold_options", fold_options.FoldOptions, fold_options.FIELDS),  # its default tab's
    "transformers": ("ti_options", transformer_options.InitOptions, transformer_options.INIT_FIELDS),  # its default tab's
}
# Pages that ignore the shared controls take fewer draws; each Fold example may retrain its CNN (~3 s).
URL_EXAMPLES = {"gradients": max(10, EXAMPLES // 2), "data_parallel": max(10, EXAMPLES // 2),
                "deploy_port": max(10, EXAMPLES // 8), "transformers": max(4, EXAMPLES // 8)}
# The Transformers page differentiates a model of the chosen size on every rerun: a random size near
# its cap takes seconds to a minute, so few examples (its extremes: tests/test_page_transformers.py).
WIDGET_EXAMPLES = {"transformers": max(4, EXAMPLES // 8)}
# st.tabs(key=...): the open tab is session state. The Gradients tabs 3-4 train deep networks
# at random sizes (tested at their extremes in tests/test_page_gradients.py), so not here.
TAB_KEYS = {"train_vs_eval": "scenario", "deploy_port": "deploy_tab"}
# Long work, fuzzed separately with tiny configs (training) or run in tests of their own
# (data_parallel starts worker processes: tests/test_page_data_parallel.py, the fault tests).
# The real Keras (deploy_port) is imported in this process only by its own tests, run last (tests/conftest.py).
SKIP_BUTTONS = {"training": {"▶️ Run"}, "data_parallel": {"▶️ Run", "▶️ Run the batch sweep"},
                "deploy_port": {"Run real Keras beside normcore"},
                "transformers": {"▶️ Run the depth sweep", "▶️ Train the four runs"}}
RAW_OPTIONS = {  # widgets whose format_func hides the options from AppTest
    "live_drift": DRIFTS,
    "training_mode": T.MODES,
    "training_dataset": datasets.DATASETS,
    "training_model": models.MODEL_KINDS,
    "training_optimizer": tuple(OPTIMIZER_LABELS),
    "training_norms": models.NORMS,
    "training_devices": tuple(t.key for t in devices.all_targets()),
    **{f"grad_{f.name}": f.options for f in gradients.FIELDS.fields if f.kind == "choice"},
    **{f"dp_{f.name}": f.options for f in dp.FIELDS.fields if f.kind in ("choice", "choices")},
    **{f"fold_{f.name}": f.options for f in fold_options.FIELDS.fields if f.kind == "choice"},
    **{f"port_options.{f.name}": f.options for f in deploy_port.FIELDS.fields if f.kind == "choice"},
    **{f"port_eps_options.{f.name}": f.options for f in deploy_eps.FIELDS.fields if f.kind == "choice"},
    **{f"precision_options.{f.name}": f.options for f in deploy_precision.FIELDS.fields if f.choices is not None},
    **{f"ti_{f.name}": f.options for f in transformer_options.INIT_FIELDS.fields if f.choices is not None},
}

COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    total = sum(COUNTS.values())
    COUNTS_FILE.write_text(json.dumps({"total": total, "per_test": COUNTS}, indent=2))
    print(f"\nfuzz: {total} combinations of controls tried ({', '.join(f'{k} {v}' for k, v in COUNTS.items())})")


def record(test: str) -> None:
    COUNTS[test] = COUNTS.get(test, 0) + 1


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def open_page(page, query: dict[str, str] | None = None) -> AppTest:
    """The page as a visitor reaches it from a link: the router first, then the page."""
    return apptest_pages.open_page(page.script, timeout=180, **(query or {}))


def find(at: AppTest, kind: str, key: str):
    return next((w for w in getattr(at, kind) if w.key == key), None)


def open_scenario(at: AppTest) -> te.Scenario:
    """The train-vs-eval tab that is open (the first one until another is chosen)."""
    label = at.session_state["scenario"] if "scenario" in at.session_state else None
    return next((sc for sc in te.SCENARIOS if f"{sc.icon} {sc.title}" == label), te.SCENARIOS[0])


def owed_errors(at: AppTest, page) -> list[str]:
    """The messages this view owes its visitor for the settings it holds now: the lab's
    errors for the shared settings it reads (``settings.problems``, tested on its own
    against torch's rules), and on the training page the errors of the run it would start."""
    if page.url_path == "training":
        chosen = {name: at.session_state[f"training_{name}"] for name in T.PAGE_FIELDS}
        try:
            config = T.from_page(chosen, at.session_state[C._STORE])
        except T.ConfigError as exc:
            return exc.messages
        return [p.message for p in T.plan(config)[1] if p.level == "error"]
    if find(at.sidebar, "selectbox", C._key("norm")) is None:  # the page reads no layer settings
        return []
    found = [p for p in S.problems(at.session_state[C._STORE]) if p.level == "error"]
    if page.url_path in TAB_KEYS:
        found = [p for p in found if open_scenario(at).concerns(p)]
    return [p.message for p in found]


def check_page(at: AppTest, what: str, page) -> None:
    """No exception, and every invalid combination explained on the page: each error the lab
    reports for these settings is shown, word for word, in an st.error."""
    assert not at.exception, f"{what}:\n" + "\n".join(str(e.value) for e in at.exception)
    shown = texts(at.error)
    for message in owed_errors(at, page):
        assert any(message in text for text in shown), f"{what}: this error is not shown: {message}\nshown: {shown}"
    for b in at.main.button:
        if b.label.endswith("Run") and b.disabled:
            assert shown, f"{what}: Run is disabled without an st.error saying why"


# -- URL parameters ----------------------------------------------------------------------

GARBAGE = st.sampled_from(["", " ", "abc", "nan", "inf", "-inf", "1e999", "-1", "0", "0x10", "3.5", "1,5",
                           "true", "None", "null", "٣", "batch", "GROUP", "  7  ", "1e-3", "%20", "[]"])


def url_value(name: str) -> st.SearchStrategy[str]:
    """Strings for one shared setting's URL parameter: mostly valid, often at or past the
    edges, sometimes garbage."""
    f, default = S.FIELDS[name], getattr(S.DEFAULTS, name)
    if isinstance(default, bool):
        valid = st.sampled_from(["true", "false", "1", "0", "True", "FALSE"])
    elif isinstance(default, str):
        valid = st.sampled_from(f.choices)
    elif name == "eps":
        valid = st.floats(1e-10, 10.0).map(repr) | st.sampled_from([repr(c) for c in S.EPS_CHOICES])
    elif isinstance(default, int):
        lo, hi = int(f.low), int(f.high)
        valid = (st.integers(lo, hi) | st.sampled_from([lo, lo + 1, hi - 1, hi, hi + 1, lo - 1])).map(str)
    else:
        lo, hi = f.low, f.high
        valid = (st.floats(lo, hi) | st.sampled_from([lo, hi, (lo + hi) / 2, hi * 1.01])).map(repr)
        if name == "momentum":
            valid = valid | st.sampled_from(["none", "None", "null"])
    return st.one_of(valid, valid, valid, GARBAGE, st.text(max_size=8))


def page_url_value(f) -> st.SearchStrategy[str]:
    """Strings for one of a page's own URL parameters (its schema field: kind, choices, range)."""
    if f.kind == "bool":
        valid = st.sampled_from(["true", "false", "1", "0"])
    elif f.kind == "choice":
        valid = st.sampled_from(list(f.options))
    elif f.choices is not None:  # a number from a list (eps on a log scale)
        valid = st.sampled_from([repr(c) for c in f.options]) | st.floats(1e-10, 10.0).map(repr)
    else:
        lo, hi = f.low, f.high
        valid = (st.integers(int(lo) - 1, int(hi) + 1) if f.kind == "int" else st.floats(lo - 1, hi + 1)).map(str)
    return st.one_of(valid, valid, GARBAGE)


def training_url_value(field: str) -> st.SearchStrategy[str]:
    """Strings for one of the training page's own URL parameters (T.SCHEMA: types, choices, caps)."""
    spec = T.SCHEMA[field]
    if spec.kind == "choices":
        valid = st.lists(st.sampled_from(list(spec.options) + ["bogus"]), min_size=0, max_size=5).map(",".join)
    elif spec.kind == "choice":
        valid = st.sampled_from(list(spec.options))
    elif spec.kind == "int":
        lo, hi = int(spec.low), int(spec.high)
        valid = (st.integers(lo, hi) | st.sampled_from([lo - 1, lo, hi, hi + 1])).map(str)
    else:
        valid = (st.floats(spec.low, spec.high) | st.sampled_from([spec.low, spec.high, spec.high * 2, -1.0])).map(repr)
    return st.one_of(valid, valid, GARBAGE)


def url_params(page) -> st.SearchStrategy[dict]:
    optional = {name: url_value(name) for name in S.FIELDS} | {"not_a_setting": st.text(max_size=5)}
    if page.url_path in PAGE_URL_OPTIONS:
        schema = PAGE_URL_OPTIONS[page.url_path][2]
        optional |= {f.url_name: page_url_value(f) for f in schema.fields}
    if page.url_path == "training":
        optional |= {url: training_url_value(field) for field, url in T.URL_NAMES.items()}
    return st.fixed_dictionaries({}, optional=optional)


def as_widget_values(values: dict) -> dict:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


@pytest.mark.parametrize("page", PAGES, ids=[p.url_path for p in PAGES])
def test_url_parameters(page):
    @settings(FUZZ, max_examples=URL_EXAMPLES.get(page.url_path, EXAMPLES))
    @given(params=url_params(page))
    @example(params={"momentum": "5e-324"})  # subnormal: 1/log1p(-m) overflowed a warm-up length once
    @example(params={"batch_size": "512", "channels": "64", "spatial": "8", "norm": "group", "num_groups": "64"})
    @example(params={"eps": "0", "momentum": "1e999", "seed": "-1", "scale": "nan", "norm": ""})
    @example(params={"norm": "group", "channels": "7", "num_groups": "3"})  # an error the page must explain
    @example(params={"batch_size": "1", "spatial": "1", "epochs": "1"})  # torch's one-value error (BN)
    @example(params={"norm": "rms", "batch_size": "1", "spatial": "1", "channels": "1", "norms": "rms", "model": "cnn"})
    def check(params):
        record(f"url/{page.url_path}")
        at = open_page(page, params)
        what = f"/{page.url_path}?{params}"
        check_page(at, what, page)
        expected, messages = S.from_query(params)
        assert at.session_state[C._STORE] == expected, what
        if page.url_path in PAGE_URL_OPTIONS:
            store, parser, _ = PAGE_URL_OPTIONS[page.url_path]
            options, more = parser.from_query(params)
            assert at.session_state[store] == options, what
            messages += more
        if page.url_path == "training":
            chosen, more = T.from_query(params)
            shown = {name: at.session_state[f"training_{name}"] for name in T.PAGE_FIELDS}
            assert shown == T.page_defaults() | as_widget_values(chosen), what
            messages += more
            again, problems = T.from_query(dict(at.query_params))
            assert not problems and T.page_defaults() | as_widget_values(again) == shown, f"{what}: the URL reads back differently"
        warnings = " ".join(texts(at.warning))
        for message in messages:
            assert message in warnings, f"{what}: not explained: {message}"
        # The URL the page leaves behind (what a visitor copies) opens the same settings.
        again, problems = S.from_query(dict(at.query_params))
        assert again == expected and not problems, f"{what}: the page's own URL {dict(at.query_params)} reads back differently"

    check()


# -- widgets -----------------------------------------------------------------------------


def shared_value(name: str) -> st.SearchStrategy:
    """Any value the sidebar widget of a shared setting accepts."""
    f, default = S.FIELDS[name], getattr(S.DEFAULTS, name)
    if name == "eps":
        return st.sampled_from(S.EPS_CHOICES)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, str):
        return st.sampled_from(f.choices)
    if isinstance(default, int):
        lo, hi = int(f.low), int(f.high)
        return st.integers(lo, hi) | st.sampled_from([lo, lo + 1, hi])
    step = 0.01 if name in ("momentum", "outlier_fraction", "scale") else 0.1
    lo, hi = round(f.low / step), round(f.high / step)
    return st.integers(lo, hi).map(lambda k: round(k * step, 4))


# Shapes (N, C, H=W): small ones mostly (fast reruns), the caps' edges sometimes.
SHAPES = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 16), st.integers(1, 12)),
    st.sampled_from([(512, 64, 8), (512, 64, 9), (2, 64, 32), (1, 1, 1), (1, 7, 1), (512, 1, 1), (128, 64, 16)]),
)


def set_shared(at: AppTest, data) -> dict:
    """Set a random subset of the sidebar controls; return what was set (setting -> value)."""
    chosen = data.draw(st.sets(st.sampled_from(sorted(S.FIELDS)), max_size=6), label="controls")
    if data.draw(st.booleans(), label="change shape"):
        chosen |= {"batch_size", "channels", "spatial"}
    shape = dict(zip(("batch_size", "channels", "spatial"), data.draw(SHAPES, label="shape (N, C, H=W)")))
    values = {}
    for name in sorted(chosen):
        value = shape[name] if name in shape else data.draw(shared_value(name), label=name)
        if name == "momentum" and data.draw(st.booleans(), label="momentum None"):
            widget, value = find(at, "checkbox", C._key("momentum_none")), True
        else:
            widget = next((w for kind in ("slider", "selectbox", "select_slider", "toggle", "number_input", "radio")
                           if (w := find(at, kind, C._key(name))) is not None), None)
        if widget is None:  # this page does not show that control (or not right now)
            continue
        widget.set_value(value)
        values[name] = value
    return values


def raw_options(w) -> list | None:
    """A choice widget's options as the script passed them. AppTest only has the labels,
    which are the options themselves unless a format_func changed them; for those this
    module must know the options (RAW_OPTIONS), else the widget is left alone."""
    if w.key in RAW_OPTIONS:
        return list(RAW_OPTIONS[w.key])
    try:
        plain = all(w.format_func(o) == o for o in w.options)
    except Exception:
        plain = False
    return list(w.options) if plain else None


# What to do in the main area, drawn up front and independent of what the page shows now
# (hypothesis needs the same draws for the same example): the i-th widget found takes the
# i-th (change it?, position in its range) pair.
MAIN_PLAN = st.fixed_dictionaries({
    "tab": st.integers(0, 63),
    "widgets": st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), min_size=24, max_size=24),
    "button": st.integers(0, 31),
})


def pick(options: list, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def set_main(at: AppTest, page, plan: dict) -> list[str]:
    """Apply a MAIN_PLAN to the page's own widgets and buttons; a log of what was done."""
    log = []
    if page.url_path in TAB_KEYS and at.tabs:
        label = at.tabs[plan["tab"] % len(at.tabs)].label
        at.session_state[TAB_KEYS[page.url_path]] = label
        log.append(f"tab={label}")
    main = at.main
    widgets = [*main.slider, *main.selectbox, *main.radio, *main.multiselect, *main.toggle, *main.checkbox,
               *main.number_input]
    for w, (change, u) in zip(widgets, plan["widgets"]):
        if not change or w.disabled:
            continue
        if w.type == "slider":
            k = round(u * round((w.max - w.min) / w.step))
            value = int(w.min + k * w.step) if isinstance(w.min, int) else round(w.min + k * w.step, 6)
            value = (value, value) if isinstance(w.value, tuple) else value
        elif w.type in ("selectbox", "radio"):
            if not (options := raw_options(w)):
                continue
            value = pick(options, u)
        elif w.type == "multiselect":
            if not (options := raw_options(w)):
                continue
            bits = int(u * (2 ** len(options) - 1) + 0.5)  # any subset, the empty one included
            value = [o for i, o in enumerate(options) if bits >> i & 1]
        elif w.type in ("toggle", "checkbox"):
            value = u >= 0.5
        else:  # number_input
            lo = w.min if w.min is not None else -1000
            hi = w.max if w.max is not None else 1000
            value = lo + u * (hi - lo)
            value = round(value) if isinstance(w.step, int) else value
        w.set_value(value)
        log.append(f"{w.key}={value}")
    skip = SKIP_BUTTONS.get(page.url_path, set())
    buttons = [b for b in main.button if b.label not in skip and not b.disabled]
    pressed = plan["button"] % (len(buttons) + 2)  # sometimes no press at all
    if pressed < len(buttons):
        buttons[pressed].click()
        log.append(f"click {buttons[pressed].label!r}")
    return log


@pytest.fixture(scope="module")
def sessions():
    """One AppTest per page for the whole module: a visitor who keeps clicking."""
    opened: dict[str, AppTest] = {}

    def get(page) -> AppTest:
        if page.url_path not in opened:
            opened[page.url_path] = open_page(page)
            check_page(opened[page.url_path], f"{page.url_path} on opening", page)
        return opened[page.url_path]

    return get


@pytest.mark.parametrize("page", PAGES, ids=[p.url_path for p in PAGES])
def test_widgets(page, sessions):
    at = sessions(page)
    history: list[str] = []  # the examples before a failure: the state it grew from

    @settings(FUZZ_SESSION, max_examples=WIDGET_EXAMPLES.get(page.url_path, EXAMPLES))
    @given(data=st.data())
    def check(data):
        record(f"widgets/{page.url_path}")
        set_values = set_shared(at, data)
        main_log = set_main(at, page, data.draw(MAIN_PLAN, label="main area"))
        history.append(f"shared {set_values}, main {main_log}")
        at.run()
        what = f"{page.url_path} after:\n  " + "\n  ".join(history[-5:])
        check_page(at, what, page)
        s = at.session_state[C._STORE]
        for name, value in set_values.items():
            if name != "momentum":  # shown in the chosen convention; None through its checkbox
                assert getattr(s, name) == value, f"{what}\n{name} is {getattr(s, name)!r} after setting {value!r}"

    check()


# -- training runs -----------------------------------------------------------------------

TINY_RUNS = st.fixed_dictionaries({
    "training_dataset": st.sampled_from(datasets.DATASETS),
    "training_model": st.sampled_from(models.MODEL_KINDS),
    "training_activation": st.sampled_from(list(models.ACTIVATIONS)),
    "training_width": st.integers(1, 16),
    "training_depth": st.integers(1, 2),
    "training_probe_layer": st.integers(1, 3),
    "training_impl": st.sampled_from(models.IMPLS),
    "training_norms": st.lists(st.sampled_from(models.NORMS), min_size=0, max_size=3, unique=True),
    "training_lr": st.sampled_from([1e-6, 1e-3, 0.1, 10.0, 100.0]),
    "training_optimizer": st.sampled_from(tuple(OPTIMIZER_LABELS)),
    "training_devices": st.lists(st.sampled_from(RAW_OPTIONS["training_devices"]), min_size=0, max_size=1, unique=True),
})


@pytest.mark.skipif(not any(p.url_path == "training" for p in PAGES), reason="no training page")
def test_tiny_training_runs(sessions):
    page = next(p for p in PAGES if p.url_path == "training")
    at = sessions(page)

    @settings(FUZZ_SESSION, max_examples=max(4, EXAMPLES // 4))
    @given(run=TINY_RUNS, batch_size=st.sampled_from([1, 2, 7, 32]), num_groups=st.sampled_from([1, 2, 3]))
    @example(run={"training_dataset": "digits", "training_model": "cnn", "training_activation": "relu", "training_width": 4,
                  "training_depth": 2, "training_probe_layer": 2, "training_impl": "torch", "training_norms": ["rms", "none"],
                  "training_lr": 0.1, "training_optimizer": "sgd", "training_devices": [RAW_OPTIONS["training_devices"][0]]},
             batch_size=2, num_groups=1)
    def check(run, batch_size, num_groups):
        record("run/training")
        # Rerun after the mode: a sweep left by the previous example disables the normalizations.
        find(at, "radio", "training_mode").set_value("compare").run()
        find(at, "slider", "training_epochs").set_value(1)
        for key, value in run.items():
            widget = next(w for kind in ("selectbox", "radio", "multiselect", "slider", "number_input")
                          if (w := find(at.main, kind, key)) is not None)
            widget.set_value(value)
        find(at, "slider", C._key("batch_size")).set_value(batch_size)
        find(at, "slider", C._key("num_groups")).set_value(num_groups)
        at.run()
        what = f"training with {run}, batch {batch_size}, groups {num_groups}"
        check_page(at, what, page)
        button = next(b for b in at.main.button if b.label.endswith("Run"))
        if not button.disabled:
            button.click()
            at.run()
            check_page(at, what + ", after Run", page)

    check()
