"""A damaged, tampered or foreign checkpoint.pt under `--resume`: one clear line and exit 2.

One real search and one real training are made once; each case copies one, changes one field of
its checkpoint and resumes it. Values no run writes (NaN, negative, out of range, the wrong type)
must be refused, never resumed into a silently wrong run or a traceback.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe import ASNG
from nasframe.cli import main
from nasframe.errors import UserError
from nasframe.random_search import RandomSearch
from nasframe.runstate import RunState
from nasframe.strategy_common import DamagedState

DAMAGED = "this checkpoint is damaged"


def _resume(
    digits_runs, tmp_path, capsys, kind: str, tamper: Callable[[dict, Path], object]
) -> str:
    """Copy the ``kind`` run, save ``tamper(checkpoint, run)`` (or the checkpoint it changed in
    place, when it returns None) as its checkpoint, resume it and return its one-line refusal."""
    run = tmp_path / kind
    shutil.copytree(digits_runs[kind], run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    replaced = tamper(ckpt, run)
    torch.save(ckpt if replaced is None else replaced, run / "checkpoint.pt")
    capsys.readouterr()
    assert main([kind, "--resume", str(run), "--quiet", "--set", f"{kind}.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{run / 'checkpoint.pt'}: " in err, err
    return err


def _set(*keys: str | int, value: object) -> Callable[[dict, Path], None]:
    """A tamper that sets ``ckpt[keys[0]]...[keys[-1]] = value``."""

    def tamper(ckpt: dict, run: Path) -> None:
        for key in keys[:-1]:
            ckpt = ckpt[key]
        ckpt[keys[-1]] = value

    return tamper


def _rows(value: Callable[[list[float]], list[float]]) -> Callable[[dict, Path], None]:
    """A tamper that replaces every row of ASNG's theta by ``value(row)``."""

    def tamper(ckpt: dict, run: Path) -> None:
        ckpt["strategy"]["theta"] = [value(row) for row in ckpt["strategy"]["theta"]]

    return tamper


def _first_row(ckpt: dict, run: Path) -> None:
    """Row 0 (a choice of 2 options) no longer sums to 1."""
    ckpt["strategy"]["theta"][0][0] = 0.9
    ckpt["strategy"]["theta"][0][1] = 0.9


NAN = math.nan


def _poison(part: str, value: float, suffix: str = ".weight") -> Callable[[dict, Path], None]:
    """A tamper that puts ``value`` into a floating tensor of the checkpoint's ``part``: for the
    model one whose name ends in ``suffix`` (buffers may hold infinity by design, NaN never)."""

    def tamper(ckpt: dict, run: Path) -> None:
        tensors = []
        state = ckpt[part]
        if part == "model":
            state = {k: v for k, v in state.items() if k.endswith(suffix)}
        stack = [state]
        while stack:  # every tensor of the nested state, in no particular order
            item = stack.pop()
            if isinstance(item, torch.Tensor) and item.is_floating_point() and item.numel():
                tensors.append(item)
            elif isinstance(item, dict):
                stack.extend(item.values())
        tensors[-1].view(-1)[0] = value

    return tamper


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (_set("environment", value="linux"), "(environment is a str, not a mapping)"),
        (_set("environment", value=[1, 2]), "(environment is a list, not a mapping)"),
        (_rows(lambda row: [NAN] * len(row)), "theta holds values that are not finite numbers"),
        (_rows(lambda row: [-1.0] * len(row)), "theta holds probabilities outside [0, 1]"),
        (_rows(lambda row: [p + 1.0 for p in row]), "theta holds probabilities outside [0, 1]"),
        (_first_row, "theta's row 0 sums to 1.8, not 1"),
        (_set("strategy", "theta", 0, value=[1.0, 0.0, 0.0, 0.0]), "gives one of its options"),
        (_set("strategy", "Delta", value=NAN), "Delta is nan, not a positive number"),
        (_set("strategy", "Delta", value=math.inf), "Delta is inf, not a positive number"),
        (_set("strategy", "Delta", value=0.0), "Delta is 0.0, not a positive number"),
        (_set("strategy", "Delta", value=-1.0), "Delta is -1.0, not a positive number"),
        (_set("strategy", "Delta", value=1e-12), "too small for any update to take a step"),
        (_set("strategy", "init_delta", value=0.0), "init_delta is 0.0, not a positive number"),
        (_set("strategy", "gamma", value=NAN), "gamma is nan, not within [0, 1]"),
        (_set("strategy", "s", value=[NAN]), "s is not 14 finite numbers"),
        (_set("strategy", "rng", "pos", value=10**6), "rng position 1000000 is not a whole"),
        (_set("pos", "epoch", value=-1), "position epoch is -1, not a count"),
        (_set("pos", "epoch", value=10**30), f"position epoch is {10**30}, not a count"),
        (_set("pos", "step", value=-5), "position step is -5, not a count"),
        (_set("pos", "global_step", value=0), "exceed global_step 0"),
        (_set("pos", "wall_s", value=NAN), "position wall_s is nan"),
        (_set("meter", "sums", value={"train/loss": "low"}), "meter sums: 'train/loss' is"),
        (_set("metrics", value={"test/acc": "high"}), "metrics are not all names of numbers"),
        (_poison("model", NAN), "holds NaN or infinity"),
        (_poison("optimizer", math.inf), "holds NaN or infinity"),
    ],
)
def test_a_damaged_search_checkpoint_is_refused(digits_runs, tmp_path, capsys, tamper, expected):
    err = _resume(digits_runs, tmp_path, capsys, "search", tamper)
    assert DAMAGED in err and expected in err, err
    assert "restore it from a copy or start the run again" in err


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (_set("environment", value="linux"), "(environment is a str, not a mapping)"),
        (_set("pos", "epoch", value=-1), "position epoch is -1, not a count"),
        (_set("pos", "epoch", value=10**30), f"position epoch is {10**30}, not a count"),
        (_set("pos", "global_step", value=-3), "position global_step is -3, not a count"),
        (_set("pos", "step", value=1.5), "position step is 1.5, not a count"),
        (_poison("model", -math.inf), "holds NaN or infinity"),
        (_poison("optimizer", NAN), "holds NaN or infinity"),
        (_poison("model", NAN, ".running_var"), "running_var holds NaN or infinity"),
    ],
)
def test_a_damaged_training_checkpoint_is_refused(digits_runs, tmp_path, capsys, tamper, expected):
    err = _resume(digits_runs, tmp_path, capsys, "train", tamper)
    assert DAMAGED in err and expected in err, err


def test_a_number_no_float_holds_is_refused(digits_runs, tmp_path, capsys):
    err = _resume(digits_runs, tmp_path, capsys, "search", _set("strategy", "Delta", value=10**400))
    assert "does not fit this search: its strategy (OverflowError: int too large to convert" in err


def _weights(ckpt: dict, run: Path) -> object:
    return torch.load(run / "weights.pt", weights_only=True)


@pytest.mark.parametrize(
    "kind, tamper, expected",
    [
        ("search", lambda c, r: {"a": 1}, "not a nasframe checkpoint (it names no kind of run"),
        ("train", lambda c, r: {"a": 1}, "not a nasframe checkpoint (it names no kind of run"),
        ("train", _weights, "not a nasframe checkpoint but a model's weights"),
        (
            "search",
            _set("kind", value="train"),
            "the checkpoint of a training run, not of a search",
        ),
        ("search", _set("kind", value="prune"), "not a nasframe checkpoint of a search"),
        (
            "train",
            _set("kind", value="search"),
            "the checkpoint of a search run, not of a training",
        ),
    ],
)
def test_a_foreign_checkpoint_says_what_it_is(
    digits_runs, tmp_path, capsys, kind, tamper, expected
):
    err = _resume(digits_runs, tmp_path, capsys, kind, tamper)
    assert expected in err and "different search space" not in err, err
    assert "hash None" not in err


def test_a_search_checkpoint_in_a_training_directory(digits_runs, tmp_path, capsys):
    search = torch.load(digits_runs["search"] / "checkpoint.pt", weights_only=True)
    err = _resume(digits_runs, tmp_path, capsys, "train", lambda ckpt, run: search)
    assert "the checkpoint of a search run, not of a training" in err
    assert "resume it with `nasframe search --resume`" in err


@pytest.mark.parametrize("kind", ["search", "train"])
def test_a_genuine_checkpoint_still_resumes(digits_runs, tmp_path, kind):
    run = tmp_path / kind
    shutil.copytree(digits_runs[kind], run)
    assert main([kind, "--resume", str(run), "--quiet", "--set", f"{kind}.epochs=1"]) == 0


def test_a_damaged_strategy_state_leaves_the_strategy_as_it_was():
    a = ASNG([3, 4, 2], seed=0)
    for _ in range(5):
        x = a.sample()
        a.update(x, (x != [2, 3, 1]).sum(1))
    state = a.state_dict()
    b = ASNG([3, 4, 2], seed=1)
    before = b.state_dict()
    for key, value in (("Delta", -1.0), ("theta", [[NAN] * 4] * 3), ("lam", 1)):
        with pytest.raises(DamagedState):
            b.load_state_dict({**state, key: value})
        assert b.state_dict() == before
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.sample(4), b.sample(4))


def test_a_damaged_ordinal_state_is_refused():
    a = ASNG([3, 5], seed=0, ordinal=[1])
    state = a.state_dict()
    for theta_int in ([[2.0], [3.0]], [[7.0], [60.0]], [[NAN], [4.0]]):  # no variance, mean 7, NaN
        with pytest.raises(DamagedState, match="theta_int"):
            ASNG([3, 5], ordinal=[1]).load_state_dict({**state, "theta_int": theta_int})
    theta = [list(row) for row in state["theta"]]
    theta[1] = [0.2] * 5  # a distribution, but not the one theta_int gives
    with pytest.raises(DamagedState, match="row 1 is not the distribution"):
        ASNG([3, 5], ordinal=[1]).load_state_dict({**state, "theta": theta})


def test_an_initial_theta_that_is_no_distribution_is_refused():
    with pytest.raises(ValueError, match="sums to"):
        ASNG([2, 2], theta=[[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="probability 0"):
        ASNG([2, 2], theta=[[1.0, 0.0], [0.5, 0.5]])


def test_a_damaged_random_search_state_is_refused():
    r = RandomSearch([3, 4], seed=0)
    state = r.state_dict()
    with pytest.raises(DamagedState, match="updates"):
        RandomSearch([3, 4]).load_state_dict({**state, "updates": -1})
    with pytest.raises(DamagedState, match="rng position"):
        RandomSearch([3, 4]).load_state_dict({**state, "rng": {**state["rng"], "pos": -5}})
    with pytest.raises(DamagedState, match="rng keys"):
        RandomSearch([3, 4]).load_state_dict({**state, "rng": {**state["rng"], "keys": [1]}})


class _PluginPart:
    """A part from outside nasframe (as a plugin strategy is) that cannot load its state."""

    def state_dict(self) -> dict:
        return {"step": 1}

    def load_state_dict(self, state: dict) -> None:
        raise ValueError(f"no field {sorted(state)[0]!r} in this version")


def test_a_part_that_cannot_load_is_named_with_its_plugin_class(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = {"model": model, "optimizer": optimizer, "strategy": _PluginPart()}
    RunState("search", "h", tmp_path, **parts).save()
    with pytest.raises(UserError) as e:
        RunState("search", "h", tmp_path, **parts).resume()
    assert str(e.value) == (
        f"{tmp_path / 'checkpoint.pt'}: this checkpoint does not fit this search: its strategy "
        "(ValueError: no field 'step' in this version); it may be damaged or from another "
        f"version, or _PluginPart (from {__name__}) cannot load it"
    )


def test_a_model_that_does_not_fit_says_which_tensor_and_shapes(tmp_path):
    model = torch.nn.Linear(2, 2)
    RunState(
        "train", "h", tmp_path, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)
    ).save()
    other = torch.nn.Linear(2, 3)
    state = RunState(
        "train", "h", tmp_path, model=other, optimizer=torch.optim.SGD(other.parameters(), lr=0.1)
    )
    with pytest.raises(UserError) as e:
        state.resume()
    assert (
        "does not fit this training: its model (RuntimeError: Error(s) in loading state_dict for Linear: size mismatch for weight:"
        in str(e.value)
    )


def test_a_run_resumed_with_another_kind_of_optimizer_is_refused_in_one_line(
    digits_runs, tmp_path, capsys
):
    """A run from before train.optimizer's own defaults (adam) whose config.yaml says
    `optimizer: {lr: 0.01}` trained with sgd; read now as adam, its SGD state loaded into Adam
    and the first step failed with a traceback (KeyError: 'betas'). Here the other way round:
    an Adam run whose config.yaml was edited to sgd."""
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(digits_runs["train"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["optimizer"]["name"] == "adam"
    config["train"]["optimizer"] = {"name": "sgd", "lr": 0.01}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"{run / 'checkpoint.pt'}: its optimizer state is not a SGD's (it has "
    ), err
    assert "write the one it trained with in train.optimizer.name of its config.yaml" in err
