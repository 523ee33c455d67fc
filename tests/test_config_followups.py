"""Follow-ups of the config checks: a cell space without reductions searches no reduction cell,
stages are placed the same way in every message, and an optimizer's boolean options are checked
when the config is read (not when a run builds the optimizer)."""

from __future__ import annotations

import pytest
import yaml
from conftest import SPACES

from nasframe.cli import main
from nasframe.config_load import load_config
from nasframe.errors import ConfigError
from nasframe.space import SearchSpace

CIFAR = (SPACES / "asng_nas_cifar10.yaml").read_text()
DIGITS = (SPACES / "digits.yaml").read_text()
CELLS = (SPACES / "cells_digits.yaml").read_text()


def _write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _line_of(text: str, part: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``text`` holding ``part``."""
    lines = [i for i, t in enumerate(text.splitlines(), 1) if part in t]
    return lines[nth - 1]


def _refused(path, capsys) -> str:
    """The one line `validate` (without --data) says about ``path``, which it must refuse."""
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ 1. cells without reductions
def test_without_reductions_the_reduction_cell_is_not_searched(tmp_path):
    path = _write(tmp_path, CIFAR.replace("  cells: 8 ", "  reductions: []\n  cells: 8 "))
    space = SearchSpace(load_config(path)[0])
    assert space.categories == [2, 2, 5, 5, 3, 3, 5, 5, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 5, 5]
    assert all(p.startswith("space.normal.") for p in space.paths)
    # an architecture it exports is fixed, and reads back as one
    frozen = space.freeze([0] * len(space.paths))
    assert "reduction" not in frozen["space"]  # no cell that no network builds
    described = space.describe([0] * len(space.paths))
    assert "reduction:" not in described
    assert described.splitlines()[0].endswith(", no reduction cell")  # it said "reductions at []"
    arch = _write(tmp_path, yaml.safe_dump(frozen), "arch.yaml")
    assert SearchSpace(load_config(arch)[0]).choices == []


def test_a_cell_space_without_reductions_searches_and_trains(tmp_path):
    from nasframe.cli import main

    run = tmp_path / "s"
    quick = ["--quiet", "--set", "space.reductions=[]", "--set", "log.tensorboard=false"]
    args = [*quick, "--set", "search.epochs=1", "--set", "train.epochs=1"]
    assert main(["search", str(SPACES / "cells_digits.yaml"), "--out", str(run), *args]) == 0
    arch = yaml.safe_load((run / "arch.yaml").read_text())
    assert "reduction" not in arch["space"] and arch["space"]["reductions"] == []
    train = ["train", str(run / "arch.yaml"), "--out", str(tmp_path / "t"), "--quiet"]
    assert main([*train, "--set", "train.epochs=1"]) == 0


def test_with_reductions_both_cells_are_searched():
    for sets in ([], ["space.reductions=[2]"]):
        space = SearchSpace(load_config(SPACES / "asng_nas_cifar10.yaml", sets)[0])
        assert len(space.categories) == 40
        assert sum(p.startswith("space.reduction.") for p in space.paths) == 20


def test_a_reduction_cell_given_without_reductions_is_kept(tmp_path):
    cell = "  reduction:\n" + "    - {inputs: [0, 1], ops: [sep_conv3, identity]}\n" * 3
    text = CELLS.replace("  channels: 8\n", "  channels: 8\n  reductions: []\n" + cell)
    config, _ = load_config(_write(tmp_path, text))
    assert [n.ops for n in config.space.reduction] == [["sep_conv3", "identity"]] * 3
    assert len(SearchSpace(config).categories) == 3 * 4  # the normal cell's only


# ------------------------------------------------------------------- 2. where stages are named
def test_two_stages_of_one_name_are_refused_at_the_second_name(tmp_path, capsys):
    text = DIGITS.replace("    - name: s2", "    - name: s1")
    path = _write(tmp_path, text)
    assert _refused(path, capsys) == (
        f"{path}:{_line_of(text, 'name: s1', 2)}: space.stages.1.name: stages.0 and stages.1 are "
        "both named 's1'; rename one (names key choice paths such as space.stages.s1.width)"
    )


def test_a_stage_name_that_is_no_identifier_is_refused_at_its_line(tmp_path, capsys):
    text = DIGITS.replace("    - name: s2", "    - name: 2nd")
    path = _write(tmp_path, text)
    assert _refused(path, capsys) == (
        f"{path}:{_line_of(text, 'name: 2nd')}: space.stages.1.name: stage name '2nd' must be an "
        "identifier (letters, digits and _, not starting with a digit), e.g. s2"
    )


def test_a_stage_named_by_a_number_is_shown_by_its_index(tmp_path, capsys):
    """``name: 2`` on the first stage is stage 0, not ``space.stages.2``."""
    text = DIGITS.replace("    - name: s1", "    - name: 2")
    path = _write(tmp_path, text)
    assert _refused(path, capsys) == (
        f"{path}:{_line_of(text, 'name: 2')}: space.stages.0.name: expected text, got the "
        'number 2; quote it: name: "2"'
    )


def test_stages_with_names_of_their_own_are_shown_by_name(tmp_path, capsys):
    text = DIGITS.replace("      stride: 2\n", "      stride: 2\n      wdth: 3\n")
    path = _write(tmp_path, text)
    assert _refused(path, capsys) == (
        f"{path}:{_line_of(text, 'wdth')}: space.stages.s2.wdth: unknown key 'wdth'; did you "
        "mean 'width'?"
    )


# -------------------------------------------------------------- 3. an optimizer's boolean options
SEARCH_OPT = "  optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}\n"
TRAIN_OPT = "  optimizer: {name: adam, lr: 3.0e-3}\n"


@pytest.mark.parametrize(
    "old, new, where, expected",
    [
        (
            SEARCH_OPT,
            "  optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: 1}\n",
            "search.optimizer.nesterov",
            "expected true or false, got the number 1; write true",
        ),
        (
            TRAIN_OPT,
            "  optimizer: {name: adam, lr: 3.0e-3, amsgrad: 2}\n",
            "train.optimizer.amsgrad",
            "expected true or false, got the number 2",
        ),
        (
            TRAIN_OPT,
            '  optimizer: {name: adam, lr: 3.0e-3, foreach: "yes"}\n',
            "train.optimizer.foreach",
            "expected true, false or null, got the text 'yes'; write yes without quotes",
        ),
        (
            TRAIN_OPT,
            "  optimizer: {name: adamw, lr: 3.0e-3, maximize: null}\n",
            "train.optimizer.maximize",
            "expected true or false, got null",
        ),
        (  # a plugin's signature, annotated as text (from __future__ import annotations)
            SEARCH_OPT,
            "  optimizer: {name: sgd_gc, lr: 0.1, foreach: 0}\n",
            "search.optimizer.foreach",
            "expected true, false or null, got the number 0; write false",
        ),
    ],
    ids=["nesterov-1", "amsgrad-2", "foreach-text", "maximize-null", "plugin-foreach-0"],
)
def test_a_boolean_option_of_another_kind_is_refused_at_its_line(
    tmp_path, capsys, old, new, where, expected
):
    assert old in DIGITS
    text = DIGITS.replace(old, new)
    path = _write(tmp_path, text)
    key = where.rsplit(".", 1)[1]
    line = _line_of(text, f"{key}:")
    assert _refused(path, capsys) == f"{path}:{line}: {where}: {expected}"


@pytest.mark.parametrize(
    "options",
    [
        "nesterov: true, foreach: null, maximize: false",
        "foreach: false, fused: null, differentiable: false",
        "foreach: true",
    ],
)
def test_booleans_and_nulls_where_torch_takes_them_are_accepted(tmp_path, options):
    text = DIGITS.replace(
        SEARCH_OPT, f"  optimizer: {{name: sgd, lr: 0.1, momentum: 0.9, {options}}}\n"
    )
    config, _ = load_config(_write(tmp_path, text))
    assert config.search.optimizer.kwargs()["momentum"] == 0.9


def test_a_boolean_option_given_by_set_names_the_item(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(SPACES / "digits.yaml", ["train.optimizer.amsgrad=yes please"])
    (problem,) = e.value.problems
    assert str(problem) == (
        "--set train.optimizer.amsgrad=yes please: train.optimizer.amsgrad: expected true or "
        "false, got the text 'yes please'"
    )


@pytest.mark.parametrize(
    "override, name, lr",
    [
        ("train.optimizer={lr: 0.01}", "adam", 0.01),  # took the search's default, sgd
        ("train.optimizer={lr_schedule: constant}", "adam", 1e-3),
        ("train.optimizer={name: sgd, momentum: 0.9}", "sgd", 1e-3),
    ],
)
def test_a_partial_train_optimizer_keeps_the_training_defaults_key_by_key(override, name, lr):
    config, _ = load_config(SPACES / "mlp.yaml", ["train.optimizer=null", override])
    assert (config.train.optimizer.name, config.train.optimizer.lr) == (name, lr)
    search, _ = load_config(SPACES / "mlp.yaml", ["search.optimizer={lr: 0.01}"])
    assert search.search.optimizer.name == "sgd"  # the search's own default is unchanged
