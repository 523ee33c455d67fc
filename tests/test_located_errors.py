"""Problems found only when a run starts still point at the config line (or --set item) they
concern: ``file:line: where: what``, exit status 2."""

from __future__ import annotations

import pytest

from nasframe.cli import main
from nasframe.config_load import load_config, validate_data
from nasframe.config_source import ConfigSource
from nasframe.yaml_io import LineMap, load_yaml

TINY_CELLS = """\
name: tiny
data:
  name: synthetic
  options: {shape: [3, 8, 8], classes: 3, n_train: 32, n_test: 8}
space:
  type: cells
  cells: 3
  channels: 4
  nodes: 2
  ops: [identity, sep_conv3]
search:
  epochs: 1
  batch_size: 8
  strategy_options:
    alhpa: 1.5
"""


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def _fail(args: list[str], capsys) -> list[str]:
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    return err.splitlines()


def test_an_option_the_strategy_does_not_take_gets_its_line(write_yaml, tmp_path, capsys):
    cfg = write_yaml(TINY_CELLS)
    (line,) = _fail(["search", str(cfg), "--out", str(tmp_path / "r")], capsys)
    n = _line_of(TINY_CELLS, "    alhpa")
    assert line.startswith(f"{cfg}:{n}: search.strategy_options.alhpa: strategy 'asng' takes no ")
    assert line.endswith("did you mean 'alpha'?")


def test_a_value_given_by_set_names_the_set_item(write_yaml, tmp_path, capsys):
    cfg = write_yaml(TINY_CELLS.replace("    alhpa: 1.5\n", "    alpha: 1.5\n"))
    (line,) = _fail(
        ["search", str(cfg), "--out", str(tmp_path / "r"), "--set", "search.strategy_options.x=1"],
        capsys,
    )
    assert line.startswith("--set search.strategy_options.x=1: search.strategy_options.x: ")


def test_a_path_the_file_does_not_write_points_at_its_section(write_yaml, tmp_path, capsys):
    """10x10 images reach the reduction cell at 5x5: space.reductions is a default, so the line
    is the space section's."""
    text = TINY_CELLS.replace("alhpa", "alpha").replace("[3, 8, 8]", "[3, 10, 10]")
    cfg = write_yaml(text)
    (line,) = _fail(["search", str(cfg), "--out", str(tmp_path / "r")], capsys)
    n = _line_of(text, "space:")
    assert line.startswith(f"{cfg}:{n}: space.reductions: reduction cell 2 gets 5x5 feature maps")


def test_missing_dataset_files_point_at_data_root(write_yaml, tmp_path, capsys):
    text = "name: c\ndata:\n  name: cifar10\n  root: nowhere\nspace:\n  type: cells\n"
    cfg = write_yaml(text)
    (line,) = _fail(["search", str(cfg), "--out", str(tmp_path / "r")], capsys)
    assert line.startswith(f"{cfg}:4: data.root: 'nowhere' (")
    assert "is not a directory (dataset 'cifar10'); expected ROOT/cifar-10-batches-py/" in line


def test_a_retraining_budget_too_small_points_at_the_budget(write_yaml, tmp_path, capsys):
    text = TINY_CELLS.replace("  strategy_options:\n    alhpa: 1.5\n", "")
    fixed = "[{inputs: [0, 1], ops: [sep_conv3, identity]}, {inputs: [1, 2], ops: [identity, identity]}]"
    text = text.replace(
        "  ops:",
        f"  normal: {fixed}\n  reduction: {fixed}\n"
        "  retrain: {channels: auto,\n    param_budget: 10}\n  ops:",
    )
    cfg = write_yaml(text)
    (line,) = _fail(["train", str(cfg), "--out", str(tmp_path / "r")], capsys)
    n = _line_of(text, "    param_budget")
    assert line.startswith(f"{cfg}:{n}: space.retrain.param_budget: 10 parameters are too few")


@pytest.mark.parametrize(
    "message, expected",
    [
        ("space.stages.s2.width: too wide", "f.yaml:6: space.stages.s2.width: too wide"),
        ("space.stages.s2.depth: no", "f.yaml:5: space.stages.s2.depth: no"),  # not written
        ("search.lam: set", "--set search.lam=3: search.lam: set"),
        ("name: cannot make it", "f.yaml:1: name: cannot make it"),
        ("--resume x: no checkpoint", "--resume x: no checkpoint"),  # not a config path
        ("/tmp/a.pt: damaged", "/tmp/a.pt: damaged"),
        ("prefix: not a section", "prefix: not a section"),
        ("dataset 'x': spaces", "dataset 'x': spaces"),
    ],
)
def test_locate_reads_paths_with_stage_names(tmp_path, message, expected):
    f = tmp_path / "f.yaml"
    f.write_text(
        "name: n\nspace:\n  stages:\n    - {name: s1, width: 8}\n    - name: s2\n      width: 16\n"
    )
    raw, lines = load_yaml(f)
    sections = frozenset({"name", "space", "search"})
    source = ConfigSource("f.yaml", raw, lines, {("search", "lam"): "search.lam=3"}, sections)
    assert source.locate(message) == expected
    assert source.locate(f"{message}\n{message}") == f"{expected}\n{expected}"


def test_a_path_without_a_line_gets_the_file_alone():
    source = ConfigSource("f.yaml", {}, LineMap(), {}, frozenset({"space"}))
    assert source.locate("space: x") == "f.yaml: space: x"


def test_a_config_not_read_from_a_file_leaves_messages_alone(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("space:\n  stages: [{name: s1, width: 8}]\n")
    raw, _ = load_yaml(f)
    assert validate_data(raw).locate("space: x") == "space: x"
    config, _ = load_config(f)
    assert config.locate("space: x") == f"{f}:1: space: x"
