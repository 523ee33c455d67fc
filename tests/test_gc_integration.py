"""GC optimizers by name in configs, and their listing by `nasframe plugins`."""

from __future__ import annotations

import json

import pytest
from conftest import SPACES, run_cli

from nasframe import load_config
from nasframe.cli import main

GC_NAMES = [
    "sgd_gc",
    "sgd_gcc",
    "sgdw",
    "sgdw_gc",
    "sgdw_gcc",
    "adam_gc",
    "adam_gcc",
    "adam_gc2",
    "adam_gcc2",
    "adamw_gc",
    "adamw_gcc",
    "adamw_gc2",
    "adamw_gcc2",
    "adagrad_gc",
    "adagrad_gcc",
    "gc",
]


def test_plugins_lists_every_gc_optimizer_with_its_distribution():
    res = run_cli("plugins")
    assert res.returncode == 0, res.stderr
    rows = {tuple(line.split()[:3]) for line in res.stdout.splitlines()}
    for name in GC_NAMES:
        assert ("optimizer", name, "nasframe") in rows, name


@pytest.mark.parametrize(
    "overrides",
    [
        ["search.optimizer={name: SGD_GC, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}"],
        ["search.optimizer={name: adamw, lr: 1.0e-3, gc: conv}"],
    ],
    ids=["sgd_gc", "adamw+gc_conv"],
)
def test_search_and_retrain_with_gc_optimizers(tmp_path, overrides):
    out = tmp_path / "search"
    fast = ["--set", "search.epochs=1", "--quiet", "--set", "log.tensorboard=false"]
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *fast, *sets]) == 0
    train = ["--set", "train.epochs=2", "--set", "train.optimizer={name: adam_gc, lr: 3.0e-3}"]
    assert main(["train", str(out / "arch.yaml"), "--out", str(tmp_path / "t"), *fast, *train]) == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["test_acc"] > 0.3


def test_gc_optimizer_keyword_typo_is_caught(tmp_path):
    from nasframe import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'momentum'"):
        load_config(
            SPACES / "digits.yaml", ["search.optimizer={name: sgd_gc, lr: 0.1, momentun: 0.9}"]
        )
