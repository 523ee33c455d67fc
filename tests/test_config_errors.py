"""Bad input: one clear line per problem (file:line: where: what) and exit status 2."""

from __future__ import annotations

import pytest
from conftest import SPACES, run_cli

from nasframe import ConfigError, load_config
from nasframe.cli import main

GOOD = (SPACES / "digits.yaml").read_text()


def errors_of(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [str(p) for p in e.value.problems]


def test_typo_in_op_name_gets_line_and_suggestion(write_yaml):
    text = GOOD.replace("[conv3, sep_conv3, max_pool3, identity]", "[conv3, sepconv3, max_pool3]")
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "sepconv3" in l)
    (msg,) = errors_of(p)
    assert msg.startswith(f"{p}:{line}: space.stages.s1.layer.op")
    assert "unknown op 'sepconv3'; did you mean 'sep_conv3'?" in msg


def test_unknown_key_is_an_error_with_suggestion(write_yaml):
    text = GOOD.replace("  batch_size: 64\n  lam: 2", "  batchsize: 64\n  lam: 2")
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "batchsize" in l)
    (msg,) = errors_of(p)
    assert (
        msg == f"{p}:{line}: search.batchsize: unknown key 'batchsize'; did you mean 'batch_size'?"
    )


def test_negative_width(write_yaml):
    text = GOOD.replace("width: {choices: [8, 16]}", "width: -8")
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "width: -8" in l)
    (msg,) = errors_of(p)
    assert msg.startswith(f"{p}:{line}: space.stages.s1.width:")
    assert "greater than 0" in msg


def test_negative_width_inside_choices(write_yaml):
    p = write_yaml(GOOD.replace("width: {choices: [16, 32]}", "width: {choices: [16, -32]}"))
    (msg,) = errors_of(p)
    assert "space.stages.s2.width.choices.1" in msg and "greater than 0" in msg


def test_several_problems_one_line_each(write_yaml):
    text = GOOD.replace("epochs: 15", "epochs: 0").replace("name: digits,", "name: digitz,")
    msgs = errors_of(write_yaml(text))
    assert len(msgs) == 2
    assert any("data.name" in m and "did you mean 'digits'" in m for m in msgs)
    assert any("search.epochs" in m for m in msgs)


def test_yaml_syntax_error(write_yaml):
    p = write_yaml("version: 1\nspace:\n  stages: [\n    {depth: 1\nsearch: {}\n")
    (msg,) = errors_of(p)
    assert msg.startswith(f"{p}:") and "invalid YAML" in msg
    assert int(msg.split(":")[1]) >= 3


def test_empty_file(write_yaml):
    (msg,) = errors_of(write_yaml(""))
    assert "empty" in msg


def test_missing_file(tmp_path):
    (msg,) = errors_of(tmp_path / "nope.yaml")
    assert msg == f"{tmp_path / 'nope.yaml'}: file not found"


def test_python_tags_never_execute(write_yaml, tmp_path):
    marker = tmp_path / "pwned"
    p = write_yaml(
        f"version: 1\nname: !!python/object/apply:os.system ['touch {marker}']\n"
        + GOOD.split("\n", 3)[3]
    )
    (msg,) = errors_of(p)
    assert f"{p}:2:" in msg and "python/object/apply" in msg
    assert not marker.exists()


def test_not_a_mapping(write_yaml):
    (msg,) = errors_of(write_yaml("- just\n- a list\n"))
    assert "expected a mapping" in msg


def test_cli_reports_without_traceback_and_exits_2(write_yaml, capsys):
    p = write_yaml(GOOD.replace("sep_conv3, max_pool3", "sep_cnv3, max_pool3"))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "did you mean 'sep_conv3'" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_validate_ok(capsys):
    assert main(["validate", *(str(p) for p in sorted(SPACES.glob("*.yaml")))]) == 0
    assert capsys.readouterr().out.count(": ok") == len(list(SPACES.glob("*.yaml")))


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cuda", "'cuda' was requested but CUDA is not available on this machine"),
        ("mps", "'mps' was requested but is not available"),
    ],
)
def test_a_device_the_machine_lacks_is_a_user_error(
    tmp_path, capsys, monkeypatch, device, expected
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with one
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "r"
    code = main(
        ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--set", f"device={device}"]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith(f"--set device={device}: device: {expected}")
    assert not out.exists()  # refused as the run set up: nothing left behind


def test_overrides_apply_and_validate(tmp_path):
    cfg, raw = load_config(
        SPACES / "digits.yaml", ["search.epochs=3", "space.stages.s2.width=24", "seed=5"]
    )
    assert cfg.search.epochs == 3 and cfg.seed == 5
    assert cfg.space.stages[1].width == 24
    with pytest.raises(ConfigError, match="greater than 0"):
        load_config(SPACES / "digits.yaml", ["space.stages.s1.width=-1"])


def test_optimizer_keyword_typo(write_yaml):
    p = write_yaml(GOOD.replace("momentum: 0.9", "momentun: 0.9"))
    (msg,) = errors_of(p)
    assert "search.optimizer" in msg and "did you mean 'momentum'" in msg


@pytest.mark.parametrize(
    "option, message",
    [
        ("lam=4", "search.strategy_options.lam: set by search.lam"),
        (
            "alpah=2",
            "takes no option 'alpah' (it takes alpha, delta_max, init_delta, theta, theta_int); "
            "did you mean 'alpha'?",
        ),
        ("ordinal=[1]", "search.strategy_options.ordinal: set by 'ordinal: true' on the choices"),
        ("alpha=-1", "search.strategy_options: alpha must be a finite number > 0, got -1"),
    ],
)
def test_bad_strategy_options_are_one_clear_line(option, message, tmp_path):
    done = run_cli(
        "search",
        str(SPACES / "digits.yaml"),
        "--out",
        str(tmp_path / "r"),
        "--set",
        f"search.strategy_options.{option}",
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_equally_close_names_are_all_suggested_and_the_available_listed(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (SPACES / "digits.yaml").read_text().replace("[conv3, sep_conv3", "[conv4, sep_conv3")
    )
    done = run_cli("validate", str(cfg))
    assert done.returncode == 2
    assert "unknown op 'conv4'; did you mean 'conv3', 'conv5' or 'conv7'?" in done.stderr
    assert "(available: avg_pool3, conv3," in done.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("version: 1\nversion: 1\n", "c.yaml:2: version: duplicate key (first given on line 1)"),
        ("a: &a [*a]\n", "c.yaml:1: invalid YAML: an alias refers to a value that contains it"),
        (
            "".join(
                f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]\n"
                for i in range(9)
            ),
            "c.yaml: invalid YAML: more than 100,000 values once its aliases are expanded",
        ),
    ],
    ids=["duplicate-key", "recursive-alias", "alias-bomb"],
)
def test_yaml_that_safe_loading_alone_would_accept_is_refused(text, expected, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    done = run_cli("validate", str(cfg), timeout=60)
    assert done.returncode == 2 and expected in done.stderr, done.stderr


@pytest.mark.parametrize(
    "override, expected",
    [
        ("seed=-1", "--set seed=-1: seed: must be at least 0, got -1"),
        ("seed=99999999999999999999", "--set seed=99999999999999999999: seed: must be less than"),
        ("search.lam=1", "--set search.lam=1: search.lam: must be at least 2, got 1"),
        ("search.optimizer.momentum=-1", "optimizer 'sgd': Invalid momentum value: -1"),
        ("data.options.shape=[-1, 4]", "data.options.shape: [-1, 4] should be a list of positive"),
    ],
)
def test_bad_values_from_the_command_line_name_the_override(override, expected, tmp_path):
    args = ["--out", str(tmp_path / "r"), "--set", "search.epochs=1", "--set", override]
    if override.startswith("data.options"):
        args += ["--set", "data.name=synthetic"]
    done = run_cli("search", str(SPACES / "mlp.yaml"), *args)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_device_is_reported_at_its_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((SPACES / "mlp.yaml").read_text().replace("device: auto", "device: gpu"))
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if t.startswith("device"))
    done = run_cli("validate", str(cfg))
    assert (
        f"c.yaml:{line}: device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'" in done.stderr
    )


def test_a_boolean_where_a_number_belongs_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (SPACES / "mlp.yaml")
        .read_text()
        .replace("epochs: 20\n  batch_size", "epochs: yes\n  batch_size", 1)
    )
    done = run_cli("validate", str(cfg))
    assert done.returncode == 2
    assert "search.epochs: expected a number, got the boolean true" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "choices, expected",
    [
        (
            "[16, 8]",
            "ordinal: true needs the choices in increasing order, got [16, 8]; list them "
            "as [8, 16]",
        ),
        ("[8]", "ordinal: true needs at least 2 choices"),
    ],
)
def test_ordinal_choices_must_be_increasing_numbers(choices, expected, write_yaml):
    text = GOOD.replace(
        "width: {choices: [8, 16]}", f"width: {{choices: {choices}, ordinal: true}}"
    )
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "ordinal" in l)
    (msg,) = errors_of(p)
    assert msg == f"{p}:{line}: space.stages.s1.width: {expected}"


@pytest.mark.parametrize("ordinal", ["", ", ordinal: true"])
def test_an_option_listed_twice_is_refused_at_its_line(ordinal, write_yaml):
    text = GOOD.replace("width: {choices: [8, 16]}", f"width: {{choices: [8, 8]{ordinal}}}")
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "[8, 8]" in l)
    (msg,) = errors_of(p)
    assert msg.startswith(
        f"{p}:{line}: space.stages.s1.width.choices.1: option '8' is listed twice"
    )


@pytest.mark.parametrize("value", ["true", '"8"', "99999999999999999999"])
def test_a_width_must_be_a_plain_integer_in_range(value, write_yaml):
    text = GOOD.replace("width: {choices: [8, 16]}", f"width: {value}")
    p = write_yaml(text)
    (msg,) = errors_of(p)
    assert "space.stages.s1.width:" in msg and ("whole number" in msg or "at most" in msg)


def test_ordinal_ops_are_refused_with_the_reason(write_yaml):
    text = GOOD.replace(
        "op: {choices: [conv3, sep_conv3, identity]}",
        "op: {choices: [conv3, sep_conv3, identity], ordinal: true}",
    )
    (msg,) = errors_of(write_yaml(text))
    assert "space.stages.s2.layer.op: ordinal: true needs numbers" in msg
    assert "a choice of ops is categorical: remove ordinal" in msg


@pytest.mark.parametrize(
    "text, said",
    [
        (  # a key one space short of its mapping's
            "space:\n  stages:\n    - width: 8\n     depth: 1\n",
            ":4: invalid YAML: expected <block end>, but found '<block mapping start>'; this "
            "line's key is indented 5 spaces, the key above it 6: the keys of one mapping line up",
        ),
        (  # a key indented under a key that has a value
            "space:\n  stages:\n    - width: 8\n        depth: 1\n",
            ":4: invalid YAML: mapping values are not allowed here; this line's key is indented "
            "8 spaces, the key above it 6: the keys of one mapping line up",
        ),
        ("a: b: c\n", ":1: invalid YAML: mapping values are not allowed here"),  # no hint
    ],
    ids=["dedented", "indented", "colon-in-a-value"],
)
def test_yaml_indentation_errors_say_how_the_line_is_indented(text, said, tmp_path):
    from nasframe.errors import ConfigError
    from nasframe.yaml_io import load_yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg)
    assert str(e.value) == f"{cfg}{said}"
