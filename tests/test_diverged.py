"""A non-finite loss stops a run with the step and the architectures that produced it."""

from __future__ import annotations

import math
import re

import numpy as np
from conftest import SPACES

from nasframe import load_space
from nasframe.cli import main
from nasframe.search import _diverged

HUGE_LR = ["--set", "search.optimizer.lr=1e30", "--set", "train.optimizer.lr=1e30"]


def test_search_names_the_step_and_the_sampled_architectures(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--quiet", *HUGE_LR]
    args += ["--set", "search.grad_clip=null"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"non-finite loss at epoch 1, step \d+ \(iteration \d+\)", err), err
    assert "space.stages.s1.depth" in err and "search.optimizer.lr" in err
    assert not (out / "summary.json").exists()


def test_the_valid_architecture_named_is_the_one_whose_loss_is_not_finite():
    space = load_space(SPACES / "digits.yaml")
    rng = np.random.default_rng(0)
    archs = [space.random_sample(rng) for _ in range(2)]
    varchs = [space.random_sample(rng) for _ in range(2)]
    while space.decode(varchs[0]) == space.decode(varchs[1]):
        varchs[1] = space.random_sample(rng)
    text = _diverged(space, [0.5, math.nan, 0.7, 10.0, 20.0], archs, varchs)
    assert str(space.decode(varchs[1])) in text and str(space.decode(varchs[0])) not in text
    text = _diverged(space, [0.5, 0.6, math.inf, 10.0, 20.0], archs, varchs)
    assert text.startswith("mean train loss inf")
    assert all(str(space.decode(a)) in text for a in archs)


def test_training_names_the_first_non_finite_iteration(tmp_path, capsys):
    arch = tmp_path / "arch.yaml"
    text = (SPACES / "digits_prune.yaml").read_text()
    arch.write_text(
        text.replace("depth: {choices: [0, 1]}", "depth: 1")
        .replace("width: {choices: [256, 512]}", "width: 256")
        .replace("op: {choices: [dense, identity]}", "op: dense")
    )
    args = ["train", str(arch), "--out", str(tmp_path / "t"), "--quiet", *HUGE_LR]
    assert main([*args, "--set", "train.l2=0", "--set", "prune=null"]) == 2
    err = capsys.readouterr().err
    found = re.search(r"non-finite training loss at epoch 1, iteration (\d+);", err)
    assert found, err
    assert 1 <= int(found.group(1)) <= 650 // 64
