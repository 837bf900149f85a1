"""The shared settings model: defaults, problems for invalid combinations, URL round trips."""

import math

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from normcore.lab import limits
from normcore.lab import settings as S


def test_defaults_are_torchs():
    d = S.DEFAULTS
    assert (d.momentum, d.eps, d.affine) == (0.1, 1e-5, True)
    assert d.norm == "batch" and d.momentum_convention == "pytorch"


def test_eps_choices_are_a_log_scale_from_1e8_to_1():
    c = S.EPS_CHOICES
    assert c[0] == 1e-8 and c[-1] == 1.0 and 1e-5 in c and 1e-3 in c
    assert all(b > a for a, b in zip(c, c[1:]))


def test_momentum_text_shows_both_conventions():
    assert S.LabSettings(momentum=0.1).momentum_text() == "PyTorch 0.1 = Keras/d2l 0.9"
    assert "cumulative" in S.LabSettings(momentum=None).momentum_text()


def levels(s, training=True):
    return [(p.level, p.message) for p in S.problems(s, training)]


def test_defaults_have_no_problems():
    assert S.problems(S.DEFAULTS) == []


def test_batch_norm_one_value_per_channel_is_an_error_only_in_training():
    s = S.LabSettings(batch_size=1, spatial=1)
    (level, message), = levels(s)
    assert level == "error" and message.startswith("Expected more than 1 value per channel when training")
    assert S.problems(s, training=False) == []


def test_batch_size_one_with_spatial_positions_is_a_warning():
    (level, _), = levels(S.LabSettings(batch_size=1, spatial=4))
    assert level == "warning"


def test_groups_not_dividing_channels_lists_the_valid_counts():
    (level, message), = levels(S.LabSettings(norm="group", channels=6, num_groups=4))
    assert level == "error"
    assert "num_channels (6) must be divisible by num_groups (4)" in message
    assert message.endswith("1, 2, 3, 6.")


def test_over_the_element_cap_is_an_error():
    s = S.LabSettings(batch_size=limits.MAX_BATCH_SIZE, channels=limits.MAX_CHANNELS, spatial=limits.MAX_SPATIAL)
    assert s.num_elements > limits.MAX_ELEMENTS
    assert any(level == "error" and "cap" in m for level, m in levels(s))


def test_instance_norm_needs_more_than_one_position():
    (level, message), = levels(S.LabSettings(norm="instance", spatial=1))
    assert level == "error" and "spatial element" in message


def test_layer_norm_has_no_batch_problems():
    assert S.problems(S.LabSettings(norm="layer", batch_size=1, spatial=1)) == []


def test_to_query_keeps_only_non_defaults():
    assert S.to_query(S.DEFAULTS) == {}
    q = S.to_query(S.LabSettings(batch_size=64, momentum=None, affine=False, norm="group"))
    assert q == {"batch_size": "64", "momentum": "none", "affine": "false", "norm": "group"}


@pytest.mark.parametrize(
    "name, raw, why",
    [
        ("batch_size", "0", "allowed range 1 to 512"),
        ("batch_size", "abc", "expected a number"),
        ("norm", "bogus", "expected one of"),
        ("eps", "-1", "eps must be > 0"),
        ("momentum", "1.5", "allowed range 0 to 1"),
        ("affine", "maybe", "true or false"),
        ("scale", "nan", "finite"),
        ("batch_size", "2.5", "whole number"),
    ],
)
def test_bad_url_values_fall_back_to_the_default_with_a_message(name, raw, why):
    s, messages = S.from_query({name: raw})
    assert getattr(s, name) == getattr(S.DEFAULTS, name)
    (message,) = messages
    assert name in message and why in message


def test_url_eps_snaps_to_the_nearest_choice_on_the_log_scale():
    s, messages = S.from_query({"eps": "0.0011"})
    assert s.eps == 1e-3 and messages == []


def test_unknown_url_parameters_are_ignored():
    s, messages = S.from_query({"utm_source": "x", "tab": "3"})
    assert s == S.DEFAULTS and messages == []


settings_strategy = st.builds(
    S.LabSettings,
    norm=st.sampled_from(S.FIELDS["norm"].choices),
    batch_size=st.integers(1, limits.MAX_BATCH_SIZE),
    channels=st.integers(1, limits.MAX_CHANNELS),
    spatial=st.integers(1, limits.MAX_SPATIAL),
    momentum=st.none() | st.floats(0, 1).map(lambda v: round(v, 4)),
    momentum_convention=st.sampled_from(S.MOMENTUM_CONVENTIONS),
    eps=st.sampled_from(S.EPS_CHOICES),
    num_groups=st.integers(1, limits.MAX_CHANNELS),
    affine=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    mean_offset=st.floats(-100, 100).map(lambda v: round(v, 3)),
    scale=st.floats(0.01, 100).map(lambda v: round(v, 3)).filter(lambda v: v >= 0.01),
    channel_spread=st.floats(0, 10).map(lambda v: round(v, 3)),
    outlier_fraction=st.floats(0, 0.5).map(lambda v: round(v, 3)),
)


@hsettings(max_examples=200, deadline=None)
@given(settings_strategy)
def test_query_round_trip(s):
    back, messages = S.from_query(S.to_query(s))
    assert messages == []
    assert back == s


@hsettings(max_examples=200, deadline=None)
@given(settings_strategy)
def test_problems_are_errors_exactly_when_torch_would_refuse_or_a_cap_is_hit(s):
    errors = S.errors(s)
    over_cap = s.num_elements > limits.MAX_ELEMENTS
    bad_groups = s.norm == "group" and s.channels % s.num_groups != 0
    one_value = s.norm == "batch" and s.batch_size * s.spatial**2 == 1
    one_position = s.norm == "instance" and s.spatial == 1
    one_per_group = s.norm == "group" and not bad_groups and s.batch_size * s.channels // s.num_groups * s.spatial**2 == 1
    expected = over_cap + bad_groups + one_value + one_position + one_per_group
    assert len(errors) == expected
    assert all(isinstance(m, str) and len(m) > 40 for m in errors)
    assert math.prod(s.input_shape) == s.num_elements


def test_the_schema_and_the_settings_agree_on_every_default():
    assert S.FIELDS.defaults() == S.as_dict(S.DEFAULTS)
    assert set(S.FIELDS) == set(S.as_dict(S.DEFAULTS))


@hsettings(max_examples=100, deadline=None)
@given(settings_strategy)
def test_every_problem_names_the_settings_it_is_about(s):
    for p in S.problems(s):
        assert p.fields and set(p.fields) <= set(S.FIELDS), p


# -- every settings dataclass takes its defaults from its schema ----------------------------


def _settings_and_schemas():
    """(dataclass, schema, {dataclass field: schema field}) for every settings or options
    dataclass of the lab: the shared settings, both run configurations, every page's options
    (each ``QueryOptions`` subclass, found by importing the experiments) and the parts' settings."""
    import dataclasses
    import importlib
    import pkgutil

    import normcore.lab.experiments as experiments
    from normcore.lab.distributed import config as ddp
    from normcore.lab.experiments.gradients import flow, landscape
    from normcore.lab.experiments.training import config as training
    from normcore.lab.fields import QueryOptions

    for module in pkgutil.walk_packages(experiments.__path__, experiments.__name__ + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    sidebar = lambda cls: {f.name: None if f.name in getattr(cls, "FROM_SIDEBAR", ()) else f.name  # noqa: E731
                           for f in dataclasses.fields(cls)}
    pages = [(cls, cls.SCHEMA, sidebar(cls)) for cls in QueryOptions.__subclasses__()]
    assert len(pages) >= 8, pages  # live, gradients, data-parallel and its sweep, fold, port, port eps, precision
    same = lambda cls: {f.name: f.name for f in dataclasses.fields(cls)}  # noqa: E731
    return pages + [
        (S.LabSettings, S.FIELDS, {}),
        (ddp.DDPConfig, ddp.FIELDS, {}),
        (training.RunConfig, training.SCHEMA, {}),
        (flow.FlowSettings, flow.FLOW_FIELDS, same(flow.FlowSettings) | {"norm": "flow_norm", "lr": "flow_lr", "seed": None}),
        (landscape.LandscapeSettings, landscape.LANDSCAPE_FIELDS,
         {"steps": "land_steps", "every": "land_every", "lr": "land_lr", "resolution": "resolution", "seed": None}),
    ]


def test_every_settings_dataclass_defaults_are_its_schemas():
    import dataclasses

    checked = []
    for cls, schema, names in _settings_and_schemas():
        names = names or {f.name: f.name for f in dataclasses.fields(cls)}
        defaults = dataclasses.asdict(cls())
        assert set(names.values()) - {None} == set(schema.names), cls  # every field of the schema, once
        for field_name, schema_name in names.items():
            if schema_name is not None:
                assert defaults[field_name] == schema[schema_name].default, f"{cls.__name__}.{field_name}"
        checked.append(cls.__name__)
    assert {"LabSettings", "DDPConfig", "RunConfig", "FlowSettings", "LandscapeSettings", "GradientOptions",
            "DataParallelOptions", "LiveOptions"} <= set(checked)


def test_the_data_parallel_page_runs_with_the_run_schemas_groups_and_ranges():
    from normcore.lab.distributed import config as ddp
    from normcore.lab.experiments import data_parallel as D

    assert D.options.GROUPS == ddp.DDPConfig().num_groups
    assert all(c.num_groups == ddp.DDPConfig().num_groups for c in D.run_configs(D.DataParallelOptions()))
    for name in D.options.PAGE_RUN_FIELDS:  # one range per value: the page's field is the run's
        assert D.FIELDS[name] is ddp.FIELDS[name], name
