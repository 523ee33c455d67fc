"""`nasframe train` with a `train.growth` section: grow a found CNN from a quarter of its widths."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SPACES

from nasframe import SearchSpace, load_config
from nasframe.cli import main
from nasframe.yaml_io import dump_yaml


def _arch(tmp_path, **growth):
    cfg, _ = load_config(SPACES / "digits.yaml", ["log.tensorboard=false"])
    space = SearchSpace(cfg)
    arch = space.freeze([1] * len(space.paths))  # depth 2, wider widths, sep_conv3 layers
    arch["train"]["epochs"] = 3
    arch["train"]["growth"] = {
        "strategy": "gradmax",
        "start_fraction": 0.25,
        "every": 5,
        "steps": 3,
        **growth,
    }
    path = tmp_path / "arch.yaml"
    dump_yaml(arch, path)
    return path


def test_growth_reaches_full_width_and_reports_the_baseline(tmp_path):
    out = tmp_path / "grown"
    assert main(["train", str(_arch(tmp_path, baseline=True)), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    g = summary["growth"]
    assert g["events"] == 3
    assert g["final_widths"] == g["target_widths"]
    assert all(g["start_widths"][k] < g["target_widths"][k] for k in g["target_widths"])
    assert summary["parameters"] == g["parameters_full_width"]
    # eval mode works on the grown units too (with (0, 1) BatchNorm statistics it was at chance)
    assert 0.3 < g["full_width_test_acc"] <= 1 and 0.3 < summary["test_acc"] <= 1
    weights = torch.load(out / "weights.pt", weights_only=True)
    full = torch.load(out / "full_width" / "weights.pt", weights_only=True)
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in full.items()}


def test_unknown_growth_layer_is_a_user_error(tmp_path, capsys):
    path = _arch(tmp_path, layers=["1->99"])
    assert main(["train", str(path), "--out", str(tmp_path / "g"), "--quiet"]) == 2
    assert "no growable pair named" in capsys.readouterr().err


def test_unknown_growth_strategy_is_a_config_error(tmp_path, capsys):
    path = _arch(tmp_path)
    text = path.read_text().replace("strategy: gradmax", "strategy: gradmx")
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    assert "did you mean 'gradmax'" in capsys.readouterr().err


def test_growth_events_that_do_not_fit_in_training_are_refused(tmp_path, capsys):
    # 3 epochs of digits take a few dozen optimizer steps, far fewer than 3 events x 1000
    path = _arch(tmp_path, every=1000)
    assert main(["train", str(path), "--out", str(tmp_path / "g"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train.growth: the last of 3 growth events comes after optimizer step 3000" in err
    assert "set train.growth.every to at most" in err
    assert not (tmp_path / "g" / "summary.json").exists()


@pytest.mark.parametrize(
    "change, where, was, now",
    [
        (  # ended below its target widths, exit 0; export and prune then refused its weights
            "train.growth.start_fraction=0.5",
            "train.growth.start_fraction",
            "0.25",
            "0.5",
        ),
        ("train.growth.strategy=random", "train.growth.strategy", "gradmax", "random"),
        ("train.growth.layers=[0->3]", "train.growth.layers", "null", "['0->3']"),
        ("train.growth=null", "train.growth", "on", "off"),  # was 'checkpoint damaged'
    ],
)
def test_a_resume_cannot_change_what_the_growth_made(tmp_path, capsys, change, where, was, now):
    out = tmp_path / "run"
    arch = _arch(tmp_path)
    assert main(["train", str(arch), "--out", str(out), "--quiet", "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", change, "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"--set {change}: the run {out} was made with {where} {was}, and its checkpoint holds "
        f"the state that made, which {now} cannot continue from; start a new run for {now} "
        "(without --resume)"
    )


def test_a_schedule_already_one_step_apart_is_told_to_have_fewer_events(tmp_path, capsys):
    """It said 'set train.growth.every to at most 1' with every already 1."""
    arch = _arch(tmp_path, every=1, steps=1000)
    assert main(["validate", "--data", str(arch)]) == 2
    err = capsys.readouterr().err.strip()
    assert "the network would end below its width: set train.growth.steps to at most " in err, err
    assert main(["validate", str(arch), "--set", "train.growth.layers=[]"]) == 2
    assert capsys.readouterr().err.strip() == (
        "--set train.growth.layers=[]: train.growth.layers: no pair to grow; omit layers for "
        "every growable pair"
    )
