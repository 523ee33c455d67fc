"""YAML 1.2 numbers, round-trips of written YAML, and the messages for values of the wrong kind."""

from __future__ import annotations

import datetime
import math
import types
import typing

import pytest
import yaml
from conftest import SPACES
from pydantic import BaseModel, ValidationError

from nasframe import ConfigError, load_config
from nasframe.cell_config import CellRetrain
from nasframe.cli import main
from nasframe.config import Config
from nasframe.config_base import number_field
from nasframe.yaml_io import dump_yaml, load_yaml, parse_scalar

GOOD = (SPACES / "digits.yaml").read_text()

# What the YAML 1.2 core schema reads (YAML 1.1, PyYAML's default, differs on most of these).
NUMBERS = [
    ("1e3", 1000.0),
    ("1e-3", 0.001),
    ("-2.5E+2", -250.0),
    (".5", 0.5),
    ("1.", 1.0),
    ("017", 17),
    ("+5", 5),
    ("0o17", 15),
    ("0x10", 16),
    ("0x1F", 31),
    (".inf", math.inf),
    ("-.inf", -math.inf),
    ("1:30", "1:30"),
    ("1_000", "1_000"),
    ("0b11", "0b11"),
    ("e3", "e3"),
    ("yes", True),
    ("no", False),
    ("~", None),
    ("2001-01-01", datetime.date(2001, 1, 1)),
]


def problems(path, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return [str(p) for p in e.value.problems]


def line_of(text: str, start: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if t.lstrip().startswith(start))


@pytest.mark.parametrize("text, value", NUMBERS, ids=[t for t, _ in NUMBERS])
def test_scalars_are_read_as_yaml_1_2_in_files_and_in_set(text, value, write_yaml):
    loaded = load_yaml(write_yaml(f"x: {text}\n"))[0]["x"]
    for got in (loaded, parse_scalar(text)):
        assert got == value and type(got) is type(value)


def test_nan_is_read_as_nan():
    assert math.isnan(parse_scalar(".nan")) and math.isnan(parse_scalar(".NaN"))


@pytest.mark.parametrize("text", ["!!float abc", "!!int 1_000", "!!int 0b11", "1" * 5000])
def test_a_number_that_cannot_be_read_is_refused_at_its_line(text, write_yaml):
    p = write_yaml(f"version: 1\nx: {text}\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    (msg,) = [str(x) for x in e.value.problems]
    assert msg.startswith(f"{p}:2: invalid YAML: cannot read ")


def test_tags_that_build_objects_are_still_refused(write_yaml):
    p = write_yaml("x: !!python/object/apply:os.system [ls]\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    assert "tags that build objects are refused" in str(e.value)


def test_written_yaml_reads_back_the_same_with_nasframe_and_with_plain_yaml(tmp_path):
    tricky = [t for t, _ in NUMBERS] + ["0o17", "1.0e+3", "+.inf", "null", "True", "plain"]
    data = {
        "strings": tricky,
        "floats": [1e-5, 1e16, 0.1, 1000.0, 1e300, -2.5, math.inf, -math.inf],
        "ints": [0, 17, -3, 10**30],
        "other": [True, False, None, datetime.date(2001, 1, 1)],
    }
    path = tmp_path / "out.yaml"
    dump_yaml(data, path)
    assert load_yaml(path)[0] == data
    assert yaml.safe_load(path.read_text()) == data  # YAML 1.1 readers (e.g. `nasframe show`)


def test_a_config_with_yaml_1_2_numbers_round_trips_through_dump_yaml(write_yaml, tmp_path):
    text = GOOD.replace("  epochs: 15", "  epochs: 1e3", 1).replace("lr: 0.05", "lr: 1e-2", 1)
    config, raw = load_config(write_yaml(text))
    dump_yaml(raw, tmp_path / "run.yaml")  # as a run's config.yaml, read back on --resume
    again, raw_again = load_config(tmp_path / "run.yaml")
    assert raw_again == raw and again.model_dump(warnings=False) == config.model_dump(
        warnings=False
    )


def test_integer_fields_take_whole_numbers_in_exponent_form(write_yaml):
    text = GOOD.replace("  epochs: 15", "  epochs: 1e3", 1).replace("seed: 0", "seed: 017")
    text = text.replace("weight_decay: 3.0e-4", "weight_decay: 3e-4")
    config, _ = load_config(write_yaml(text))
    assert config.search.epochs == 1000 and type(config.search.epochs) is int
    assert config.seed == 17
    assert config.search.optimizer.kwargs()["weight_decay"] == 0.0003  # a float, not "3e-4"


@pytest.mark.parametrize(
    "value, fix",
    [("1e3", "the number 1000.0; write 1000"), ("1_000", "the text '1_000'; write 1000")],
)
def test_a_strict_integer_written_another_way_gets_the_plain_integer(value, fix, write_yaml):
    text = GOOD.replace("channels: 16", f"channels: {value}")
    p = write_yaml(text)
    (msg,) = problems(p)
    line = line_of(text, "stem:")
    assert msg == f"{p}:{line}: space.stem.channels: expected a whole number, got {fix}"


@pytest.mark.parametrize("value", ["1:30", "1e3.5", "fifteen"])
def test_what_is_not_a_number_is_refused_at_its_line(value, write_yaml):
    text = GOOD.replace("  epochs: 15", f"  epochs: {value}", 1)
    p = write_yaml(text)
    (msg,) = problems(p)
    line = line_of(text, "epochs:")
    assert msg == f"{p}:{line}: search.epochs: expected a number, got the text '{value}'"


@pytest.mark.parametrize(
    "old, new, where, fix",
    [
        ("seed: 0", "seed: 1_000", "seed", "write 1000"),
        ("seed: 0", 'seed: "7"', "seed", "write 7 without quotes"),
        ("  epochs: 15", '  epochs: "15"', "search.epochs", "write 15 without quotes"),
        ("fraction: 0.5", "fraction: '0.5'", "data.valid_fraction", "write 0.5 without quotes"),
        ("lr: 0.05", 'lr: "5e-2"', "search.optimizer.lr", "write 5e-2 without quotes"),
        (
            "momentum: 0.9",
            'momentum: "0.9"',
            "search.optimizer.momentum",
            "write 0.9 without quotes",
        ),
    ],
)
def test_a_number_written_as_text_is_refused_with_the_number_to_write(
    old, new, where, fix, write_yaml
):
    text = GOOD.replace(old, new, 1)
    p = write_yaml(text)
    (msg,) = problems(p)
    shown = new.split(": ", 1)[1].strip("'\"")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if new.strip() in t)
    assert msg == f"{p}:{line}: {where}: expected a number, got the text '{shown}'; {fix}"


def test_a_number_given_as_text_by_set_is_refused_naming_the_set_item(write_yaml):
    (msg,) = problems(write_yaml(GOOD), ['search.epochs="15"'])
    assert msg == (
        "--set search.epochs=\"15\": search.epochs: expected a number, got the text '15'; "
        "write 15 without quotes"
    )


def test_an_optimizer_option_of_text_that_is_not_a_number_is_passed_on(write_yaml):
    text = GOOD.replace("momentum: 0.9", "momentum: 0.9, foreach: null", 1)
    config, _ = load_config(write_yaml(text))
    assert config.search.optimizer.kwargs()["momentum"] == 0.9  # numbers pass as numbers


def _takes_float(annotation: typing.Any) -> bool:
    if annotation is float:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _takes_float(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_float(a) for a in typing.get_args(annotation))
    return False


def _fields(takes: typing.Callable[[typing.Any], bool]) -> list[tuple[type[BaseModel], str]]:
    """Every field of the schema (any section, any kind of space) whose annotation ``takes``."""

    def models(annotation: typing.Any) -> list[type[BaseModel]]:
        found = []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append(annotation)
        for arg in typing.get_args(annotation):
            found.extend(models(arg))
        return found

    out, queue, seen = [], [Config], set()
    while queue:
        model = queue.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if takes(field.annotation):
                out.append((model, name))
            queue.extend(models(field.annotation))
    return out


FLOAT_FIELDS = _fields(_takes_float)
NUMBER_FIELDS = _fields(lambda annotation: number_field(annotation) is not None)


def test_the_schema_has_the_float_fields_the_next_test_covers():
    names = {name for _, name in FLOAT_FIELDS}
    assert {"lr", "valid_fraction", "drop_path", "stop_when_converged"} <= names


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "model, name", FLOAT_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in FLOAT_FIELDS]
)
def test_every_float_field_says_a_value_must_be_finite(model, name, value):
    with pytest.raises(ValidationError) as e:
        model.model_validate({name: value})
    mine = [err for err in e.value.errors() if err["loc"][:1] == (name,)]
    assert mine and all(err["msg"] == "Input should be a finite number" for err in mine), mine


def test_the_schema_has_the_number_fields_the_next_test_covers():
    names = {name for _, name in NUMBER_FIELDS}
    assert {"seed", "epochs", "lam", "lr", "batch_size", "valid_fraction", "version"} <= names
    assert {"inputs", "reductions", "channels"} <= names  # lists of numbers; a number or 'auto'
    assert not {"name", "device", "optimizer", "width"} & names  # text, sections, choices


def _number_field_errors(model, name, value) -> list[dict]:
    spec = number_field(model.model_fields[name].annotation)
    with pytest.raises(ValidationError) as e:
        model.model_validate({name: [value] if spec.items else value})
    return [err for err in e.value.errors() if err["loc"][:1] == (name,)]


@pytest.mark.parametrize(
    "model, name", NUMBER_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in NUMBER_FIELDS]
)
@pytest.mark.parametrize("text, fix", [("3", "write 3 without quotes"), ("3_0", "write 30")])
def test_every_number_field_refuses_text_that_reads_as_a_number(model, name, text, fix):
    spec = number_field(model.model_fields[name].annotation)
    (err,) = _number_field_errors(model, name, text)
    assert err["loc"] == (name,) and err["ctx"]["at"] == ((0,) if spec.items else ())
    expected = "a number" + "".join(f" or '{w}'" for w in sorted(spec.words))
    assert err["msg"] == f"expected {expected}, got the text '{text}'; {fix}"


@pytest.mark.parametrize(
    "model, name", NUMBER_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in NUMBER_FIELDS]
)
def test_every_number_field_refuses_a_boolean(model, name):
    (err,) = _number_field_errors(model, name, True)
    assert err["type"] == "bool_number" and err["msg"].endswith(", got the boolean true")


BOOL_FIELDS = _fields(lambda annotation: annotation is bool)


def test_the_schema_has_the_boolean_fields_the_next_test_covers():
    assert {"flip", "baseline", "tensorboard", "progress", "ordinal"} <= {n for _, n in BOOL_FIELDS}


@pytest.mark.parametrize(
    "model, name", BOOL_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in BOOL_FIELDS]
)
@pytest.mark.parametrize(
    "value, said",
    [
        (1, "the number 1; write true"),
        (0, "the number 0; write false"),
        ("on", "the text 'on'; write on without quotes"),
        ("maybe", "the text 'maybe'"),
    ],
)
def test_every_boolean_field_takes_true_or_false_only(model, name, value, said):
    with pytest.raises(ValidationError) as e:
        model.model_validate({name: value})
    mine = [err for err in e.value.errors() if err["loc"][:1] == (name,)]
    assert [err["msg"] for err in mine] == [f"expected true or false, got {said}"]


def test_a_boolean_written_as_a_number_is_refused_at_its_line(write_yaml):
    p = write_yaml(GOOD.replace("log: {tensorboard: true}", "log: {progress: 1}"))
    line = GOOD.splitlines().index("log: {tensorboard: true}") + 1
    assert problems(p) == [
        f"{p}:{line}: log.progress: expected true or false, got the number 1; write true"
    ]


def test_a_number_field_takes_its_words_and_whole_numbers_written_as_floats(write_yaml):
    retrain = CellRetrain.model_validate({"channels": "auto", "param_budget": 4.0e6})
    assert retrain.channels == "auto"
    config, _ = load_config(write_yaml(GOOD.replace("seed: 0", "seed: 1e3")))
    assert config.seed == 1000 and type(config.seed) is int


def test_every_problem_of_a_section_is_reported_beside_a_number_written_as_text(write_yaml):
    text = GOOD.replace("seed: 0", 'seed: "7"').replace("  epochs: 15", '  epochs: "15"', 1)
    text = text.replace("name: sgd", "name: sgdd", 1)
    p = write_yaml(text)
    got = problems(p)
    assert len(got) == 3, got
    assert got[0].endswith("seed: expected a number, got the text '7'; write 7 without quotes")
    assert got[1].endswith(
        "search.epochs: expected a number, got the text '15'; write 15 without quotes"
    )
    assert "search.optimizer.name: unknown optimizer 'sgdd'" in got[2]


@pytest.mark.parametrize("written", ['"1.5"', "'2.5e0'"])
def test_no_write_hint_for_a_fraction_in_an_integer_field(written, write_yaml):
    text = GOOD.replace("  epochs: 15", f"  epochs: {written}", 1)
    p = write_yaml(text)
    (msg,) = problems(p)
    assert msg.endswith(f"search.epochs: expected a number, got the text '{written[1:-1]}'")


CELLS = "version: 1\ndata: {name: digits}\nspace:\n  type: cells\n  retrain: {drop_path: .nan}\n"


@pytest.mark.parametrize(
    "text, where, line_start",
    [
        (GOOD.replace("lr: 0.05", "lr: .nan"), "search.optimizer.lr", "optimizer:"),
        (GOOD.replace("fraction: 0.5", "fraction: .nan"), "data.valid_fraction", "data:"),
        (
            GOOD.replace("  lam: 2", "  lam: 2\n  stop_when_converged: .nan"),
            "search.stop_when_converged",
            "stop_when_converged:",
        ),
        (CELLS, "space.retrain.drop_path", "retrain:"),
    ],
)
def test_nan_is_refused_as_not_finite_at_its_line(text, where, line_start, write_yaml):
    p = write_yaml(text)
    (msg,) = problems(p)
    line = line_of(text, line_start)
    assert msg == f"{p}:{line}: {where}: expected a finite number, got the number nan"


def test_a_file_that_is_not_utf8_is_refused_at_the_line_of_the_bad_byte(tmp_path, capsys):
    p = tmp_path / "y.yaml"
    p.write_bytes(b"version: 1\nname: caf\xe9\nseed: 0\n")
    (msg,) = problems(p)
    assert msg == f"{p}:2: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    assert main(["validate", str(p)]) == 2
    assert capsys.readouterr().err.strip().endswith(msg)


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_control_character_is_refused_at_its_line(tmp_path, end):
    p = tmp_path / "c.yaml"
    p.write_bytes(f"version: 1{end}{end}name: a\x01b{end}".encode())
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:3: invalid YAML: character #x0001 is not allowed")


@pytest.mark.parametrize(
    "key, kind",
    [
        ("~", "null"),
        ("null", "null"),
        ("yes", "a boolean"),
        ("1", "a number"),
        ("2001-01-01", "a date"),
    ],
)
def test_a_key_that_is_not_text_is_refused_as_written_at_its_line(key, kind, write_yaml):
    p = write_yaml(f"version: 1\nseed: 0\n{key}: 1\n")
    (msg,) = problems(p)
    assert msg.startswith(f'{p}:3: {key}: a key must be text, not {kind}; quote it ("{key}")')


def test_a_nested_key_that_is_not_text_is_refused_at_its_line(write_yaml):
    text = GOOD.replace("  lam: 2", "  lam: 2\n  strategy_options:\n    alpha: 1\n    ~: 2")
    p = write_yaml(text)
    (msg,) = problems(p)
    where = "search.strategy_options.~"  # the key's whole path, as the user wrote it
    assert msg.startswith(f"{p}:{line_of(text, '~:')}: {where}: a key must be text")


def test_a_quoted_key_is_a_name(write_yaml):
    p = write_yaml(GOOD.replace("seed: 0", 'seed: 0\n"~": 1'))
    (msg,) = problems(p)
    assert msg == f"{p}:5: ~: unknown key '~'"


@pytest.mark.parametrize("value", ["no", "123", "2001-01-01", "1e3", "0x10"])
def test_a_text_field_given_what_yaml_reads_otherwise_is_told_to_quote_it(value, write_yaml):
    p = write_yaml(GOOD.replace("name: digits-cnn", f"name: {value}"))
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:3: name: expected text, got the ")  # number, boolean, date
    assert msg.endswith(f'; quote it: name: "{value}"')
    quoted = write_yaml(GOOD.replace("name: digits-cnn", f'name: "{value}"'), "quoted.yaml")
    assert load_config(quoted)[0].name == value


def test_a_plugin_name_in_a_choice_list_gets_the_quote_hint(write_yaml):
    text = GOOD.replace("[conv3, sep_conv3, identity]", "[conv3, 5, identity]")
    p = write_yaml(text)
    (msg,) = problems(p)
    assert msg.endswith('expected text, got the number 5; quote it: "5"')
    assert msg.startswith(f"{p}:{line_of(text, 'op: {choices: [conv3, 5')}: ")


def test_a_text_value_from_set_gets_the_quote_hint_for_the_command_line():
    path = SPACES / "digits.yaml"
    (msg,) = problems(path, ["name=no"])
    assert (
        msg == "--set name=no: name: expected text, got the boolean false; quote it: "
        "--set 'name=\"no\"'"
    )
    assert load_config(path, ['name="no"'])[0].name == "no"


def test_stop_when_converged_with_a_strategy_without_converged_is_refused_by_validate(
    write_yaml, capsys
):
    text = GOOD.replace("strategy: asng", "strategy: random\n  stop_when_converged: 0.9")
    p = write_yaml(text)
    (msg,) = problems(p)
    line = line_of(text, "stop_when_converged:")
    assert msg.startswith(f"{p}:{line}: search.stop_when_converged: strategy 'random' has no ")
    assert main(["validate", str(p)]) == 2
    assert msg in capsys.readouterr().err
    ok = write_yaml(GOOD.replace("  lam: 2", "  lam: 2\n  stop_when_converged: 0.9"), "ok.yaml")
    assert load_config(ok)[0].search.stop_when_converged == 0.9


def test_an_override_changes_one_stage_even_when_stages_share_an_anchor(tmp_path):
    path = tmp_path / "anchored.yaml"
    path.write_text(
        "version: 1\ndata: {name: digits}\nspace:\n  stem: {op: conv3, channels: 8}\n"
        "  stages:\n  - &st\n    name: s1\n    stride: 1\n    width: {choices: [8, 16]}\n"
        "    layer: {op: conv3}\n  - <<: *st\n    name: s2\n    stride: 2\n"
    )
    config, _ = load_config(path, ["space.stages.s1.width.choices=[4]"])
    s1, s2 = config.space.stages
    assert list(s1.width.choices) == [4] and list(s2.width.choices) == [8, 16]


def test_the_quote_hint_for_an_item_of_a_set_list_does_not_quote_the_whole_list():
    with pytest.raises(ConfigError) as e:
        load_config(SPACES / "cells_digits.yaml", ["space.ops=[identity, no]"])
    (problem,) = [str(p) for p in e.value.problems]
    assert problem.endswith("quote that item inside the value of --set space.ops"), problem


@pytest.mark.parametrize("written", ["1e300", "-1e3"])
def test_no_write_hint_for_a_whole_number_that_would_be_refused_or_is_not_exact(tmp_path, written):
    path = tmp_path / "w.yaml"
    path.write_text(
        "version: 1\ndata: {name: digits}\nspace:\n  stem: {op: conv3, channels: 8}\n"
        f"  stages:\n  - {{name: s1, stride: 1, width: {written}, layer: {{op: conv3}}}}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert all("; write " not in str(p) for p in e.value.problems)
