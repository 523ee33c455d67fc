"""Ordinal choices through the CLI: a search on digits with an ordinal width and depth, what it
records, and strategies that do not model ordinal choices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SPACES

from nasframe import SearchSpace, load_config
from nasframe.cli import main

ORDINAL = [
    "--set",
    "space.stages.s1.width.ordinal=true",
    "--set",
    "space.stages.s2.depth.ordinal=true",
]
PATHS = ["space.stages.s1.width", "space.stages.s2.depth"]


@pytest.fixture(scope="module")
def ordinal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ordinal"
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--quiet", *ORDINAL]
    assert main([*args, "--set", "search.epochs=2"]) == 0
    return out


def test_the_space_marks_exactly_the_ordinal_choices():
    cfg, _ = load_config(SPACES / "digits.yaml", [kv for kv in ORDINAL if kv != "--set"])
    space = SearchSpace(cfg)
    assert [space.paths[k] for k in space.ordinal] == PATHS
    plain = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    assert plain.ordinal == [] and plain.hash != space.hash  # a checkpoint cannot cross them


def test_summary_records_each_ordinal_gaussian_and_its_probabilities(ordinal_run):
    summary = json.loads((ordinal_run / "summary.json").read_text())
    assert sorted(summary["ordinal"]) == sorted(PATHS)
    for path in PATHS:
        k = summary["paths"].index(path)
        size = summary["categories"][k]
        row = np.array(summary["theta"][k][:size])
        assert abs(row.sum() - 1) < 1e-12 and (row >= 0).all()
        mean, std = summary["ordinal"][path]["mean"], summary["ordinal"][path]["std"]
        assert 0 <= mean <= size - 1 and 0.25 - 1e-12 <= std <= (size - 1) / 2 + 1e-12
        chosen = summary["most_likely"][path]
        options = [8, 16] if path.endswith("width") else [1, 2]
        assert options.index(chosen) == round(mean)


def test_tensorboard_holds_the_mean_and_spread_of_each_ordinal_choice(ordinal_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(ordinal_run))
    acc.Reload()
    summary = json.loads((ordinal_run / "summary.json").read_text())
    for path in PATHS:
        last = acc.Scalars(f"arch/ordinal_mean/{path}")[-1]
        assert abs(last.value - summary["ordinal"][path]["mean"]) < 1e-6
        assert f"arch/ordinal_std/{path}" in acc.Tags()["scalars"]
        assert f"arch/theta/{path}/{summary['most_likely'][path]}" in acc.Tags()["scalars"]


class _CategoricalOnly:
    """A strategy plugin written before ordinal choices existed."""

    def __init__(self, categories, *, lam=2, seed=None):
        self.categories = categories


def test_a_strategy_without_ordinal_support_is_refused_at_the_first_ordinal_choice(
    tmp_path, capsys, plugin
):
    plugin("strategy", "test_only_categorical", _CategoricalOnly)
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r"), "--quiet"]
    rc = main([*args, *ORDINAL, "--set", "search.strategy=test_only_categorical"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (
        "space.stages.s1.width: ordinal: strategy 'test_only_categorical' models every choice "
        "as categorical; remove 'ordinal: true' or use asng"
    ) in err
    assert "Traceback" not in err
