"""Plugin options, op/layout mismatches, pruning, latency tables, data and cell spaces: bad input
gets one located line (``file:line: where: what``) and exit status 2, never a traceback."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from conftest import SPACES

from nasframe import registry
from nasframe.cell_ops import FactorizedReduce
from nasframe.cells import CellSupernet
from nasframe.cli import main
from nasframe.config import DataConfig, LatencyConfig
from nasframe.config_load import load_config
from nasframe.data import check_root, load_dataset, split_train_valid
from nasframe.errors import ConfigError, UserError
from nasframe.latency import LatencyTable, latency_device
from nasframe.network import build_network
from nasframe.space import SearchSpace
from nasframe.yaml_io import dump_yaml

# A fixed chain (no choices): `nasframe train` takes it as it is.
ARCH = """\
version: 1
name: fixed
data: {name: digits}
space:
  layout: conv2d
  stem: {op: conv3, channels: 8}
  stages:
    - name: s1
      transition: conv3
      depth: 1
      width: 8
      layer: {op: conv3}
train:
  epochs: 1
  batch_size: 64
log: {tensorboard: false, progress: false}
"""


def _line(text: str, needle: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)


def _one_line(args: list[str], capsys) -> str:
    """The one line of stderr of a refused command (exit status 2, no traceback)."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- growth options
def _with_growth(options: str, strategy: str = "gradmax") -> str:
    return ARCH.replace(
        "train:\n",
        f"train:\n  growth:\n    strategy: {strategy}\n    every: 1\n    steps: 1\n"
        f"    options:\n{options}",
    )


@pytest.mark.parametrize(
    "strategy, option, expected",
    [
        ("gradmax", "nope: 1", "strategy 'gradmax' takes no option 'nope' (it takes "),
        ("gradmax", "scal: 2.0", "did you mean 'scale'?"),
        ("gradmax", "scale: big", "expected a number, got 'big'"),
        ("random", "check_activations: 'no'", "expected true or false, got 'no'"),
        ("gradmax_opt", "steps: 2.5", "expected a whole number, got 2.5"),
        ("firefly", "epsilon: [1]", "expected a number, got [1]"),
    ],
)
def test_growth_options_are_checked_at_their_line(tmp_path, capsys, strategy, option, expected):
    text = _with_growth(f"      {option}\n", strategy)
    path = _write(tmp_path, text)
    key = option.split(":")[0]
    line = _one_line(["validate", str(path)], capsys)
    assert line.startswith(f"{path}:{_line(text, option)}: train.growth.options.{key}: ")
    assert expected in line and "unexpected keyword" not in line


def test_an_unknown_growth_option_lists_those_the_strategy_takes(tmp_path, capsys):
    path = _write(tmp_path, _with_growth("      nope: 1\n", "firefly"))
    line = _one_line(["validate", str(path)], capsys)
    taken = line.split("(it takes ")[1].split(")")[0].split(", ")
    # the base class's options and Firefly's own, passed on through **kwargs
    assert {"scale", "seed", "check_activations", "steps", "lr", "epsilon"} <= set(taken)


def test_a_bad_growth_option_stops_training_before_it_starts(tmp_path, capsys):
    path = _write(tmp_path, _with_growth("      scale: big\n"))
    out = tmp_path / "run"
    line = _one_line(["train", str(path), "--out", str(out), "--quiet"], capsys)
    assert line.startswith(f"{path}:") and "scale" in line and "expected a number" in line
    assert not (out / "summary.json").exists()


def test_growth_options_written_as_text_numbers_are_read_as_numbers():
    from nasframe_growth import Firefly, OptionError, make_strategy

    strategy = make_strategy("firefly", lr="1e-3", steps=3)
    assert strategy.lr == pytest.approx(1e-3) and strategy.steps == 3
    with pytest.raises(OptionError) as e:
        Firefly(lr=-1.0)
    assert e.value.key == "lr"


def test_a_plugin_strategy_s_own_options_are_accepted_with_the_base_ones():
    from nasframe_growth import GrowthStrategy, OptionError

    class Mine(GrowthStrategy):
        name = "mine"

        def __init__(self, scale: float = 1.0, *, my_option: int = 3, **kwargs):
            super().__init__(scale, **kwargs)
            self.my_option = my_option

    assert Mine.checked_options({"my_option": 4, "seed": 1}) == {"my_option": 4, "seed": 1}
    with pytest.raises(OptionError, match="did you mean 'my_option'"):
        Mine.checked_options({"my_optoin": 4})


# --------------------------------------------------------------------------- ops against layout
@pytest.mark.parametrize(
    "old, new, needle, where, expected",
    [
        (
            "layout: conv2d",
            "layout: linear",
            "stem: {op: conv3",
            "space.stem.op",
            "op 'conv3' does not support layout 'linear' (it supports conv1d, conv2d)",
        ),
        (
            "layer: {op: conv3}",
            "layer: {op: dense}",
            "layer: {op: dense}",
            "space.stages.s1.layer.op",
            "op 'dense' does not support layout 'conv2d'",
        ),
        (
            "layer: {op: conv3}",
            "layers: [{op: dense}]",
            "layers: [{op: dense}]",
            "space.stages.s1.layers.0.op",
            "op 'dense' does not support layout 'conv2d'",
        ),
        (
            "transition: conv3",
            "transition: linear",
            "transition: linear",
            "space.stages.s1.transition",
            "op 'linear' does not support layout 'conv2d'",
        ),
        (
            "layer: {op: conv3}",
            "layer:\n        op:\n          choices:\n            - conv3\n            - dense",
            "- dense",
            "space.stages.s1.layer.op.choices.1",
            "op 'dense' does not support layout 'conv2d'",
        ),
    ],
)
def test_an_op_the_layout_does_not_take_is_refused_at_its_line(
    tmp_path, capsys, old, new, needle, where, expected
):
    text = ARCH.replace(old, new, 1)
    assert text != ARCH
    path = _write(tmp_path, text)
    assert main(["validate", str(path)]) == 2  # no data needed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{path}:{_line(text, needle)}: {where}: {expected}")
    # every op the layout refuses, one line each: conv3 is the stem, transition and layer op
    assert len(lines) == (3 if new == "layout: linear" else 1), err


def test_a_layout_set_on_the_command_line_points_at_the_op(tmp_path, capsys):
    path = _write(tmp_path, ARCH)
    out = tmp_path / "run"
    args = ["train", str(path), "--out", str(out), "--set", "space.layout=linear", "--quiet"]
    line = _one_line(args, capsys)
    stem = _line(ARCH, "stem: {op: conv3")
    assert line.startswith(f"{path}:{stem}: space.stem.op: op 'conv3' does not support layout")
    assert "ops for 'linear': " in line and "dense" in line.split("ops for 'linear': ")[1]


def test_a_channel_keeping_stem_is_refused_at_the_stem_op(tmp_path, capsys):
    text = ARCH.replace("stem: {op: conv3, channels: 8}", "stem: {op: identity, channels: 8}")
    path = _write(tmp_path, text)
    line = _one_line(["validate", "--data", str(path)], capsys)
    assert line.startswith(f"{path}:{_line(text, 'stem:')}: space.stem.op: op 'identity' keeps")


# ------------------------------------------------------------------------------------- pruning
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "0"])
def test_every_bad_threshold_gets_the_same_message(tmp_path, capsys, value):
    line = _one_line(["prune", str(tmp_path), f"--threshold={value}"], capsys)
    assert re.fullmatch(r"--threshold \S+: must be a positive number", line), line
    assert float(line.split()[1].rstrip(":")) == pytest.approx(float(value), nan_ok=True)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A digits MLP trained one epoch, and its pruned directory."""
    tmp = tmp_path_factory.mktemp("pruned")
    cfg, _ = load_config(SPACES / "digits_prune.yaml", ["log.tensorboard=false"])
    space = SearchSpace(cfg)
    arch = space.freeze([0] * len(space.paths))
    arch["train"]["epochs"] = 1
    arch.pop("prune")
    dump_yaml(arch, tmp / "arch.yaml")
    trained = tmp / "train"
    assert main(["train", str(tmp / "arch.yaml"), "--out", str(trained), "--quiet"]) == 0
    pruned = tmp / "pruned"
    args = ["prune", str(trained), "--threshold", "1e-12", "--out", str(pruned)]
    assert main(args) == 0
    return trained, pruned


def test_a_pruned_directory_is_not_pruned_again(pruned_run, capsys):
    trained, pruned = pruned_run
    line = _one_line(["prune", str(pruned)], capsys)
    assert line.startswith(f"{pruned}: already pruned (from {trained}); prune {trained} again")
    assert "file not found" not in line


def test_a_directory_with_weights_but_no_config_says_so(pruned_run, tmp_path, capsys):
    (tmp_path / "weights.pt").write_bytes((pruned_run[1] / "weights.pt").read_bytes())
    line = _one_line(["prune", str(tmp_path)], capsys)
    assert line == f"{tmp_path}: no config.yaml here; prune a finished `nasframe train` run"


# ------------------------------------------------------------------------------------- latency
def _table(tmp_path, header: dict, entries: dict | None = None):
    path = tmp_path / "latency.json"
    path.write_text(
        json.dumps({**header, "entries": {"part": 0.5} if entries is None else entries})
    )
    return path


@pytest.mark.parametrize("batch", ["x", 0, -2, 2.5, True, None])
def test_a_damaged_table_header_suggests_no_invalid_batch_size(tmp_path, batch):
    path = _table(tmp_path, {"batch_size": batch})
    with pytest.raises(UserError) as e:
        LatencyTable.read(path, "search.latency.table", 1)
    text = str(e.value)
    assert text.startswith(f"search.latency.table: {path}: the table's header is damaged")
    assert "set search.latency.batch_size" not in text


def test_a_table_timed_at_another_batch_suggests_its_batch_size(tmp_path):
    path = _table(tmp_path, {"batch_size": 3})
    with pytest.raises(UserError, match="set search.latency.batch_size: 3$"):
        LatencyTable.read(path, "search.latency.table", 1)
    LatencyConfig(batch_size=3)  # what it suggests is a valid value


def test_a_table_without_entries_is_not_a_table(tmp_path):
    path = _table(tmp_path, {"batch_size": 1}, {"part": -1})
    with pytest.raises(UserError, match="not a latency table"):
        LatencyTable.read(path)


def test_latency_on_cuda_without_cuda_suggests_documented_values(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError) as e:
        latency_device(LatencyConfig(device="cuda"), torch.device("cpu"))
    text = str(e.value)
    assert text.startswith("search.latency.device: 'cuda' was requested but CUDA is not available")
    assert "device: auto" not in text
    suggested = re.findall(r"search\.latency\.device: (\w+)", text)
    assert suggested == ["cpu"]
    docs = (SPACES.parent / "docs" / "latency.md").read_text()
    comment = next(t for t in docs.splitlines() if t.strip().startswith("device:"))
    for value in [*suggested, "auto", "cuda:N", "null"]:  # what the config takes
        assert value in comment
        if value not in ("cuda:N", "null"):
            LatencyConfig(device=value)


# ---------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("name", ["digits", "synthetic", "mnist1d"])
def test_a_root_for_a_built_in_dataset_is_refused_at_its_line(tmp_path, capsys, name):
    text = ARCH.replace("data: {name: digits}", f"data:\n  name: {name}\n  root: /data")
    path = _write(tmp_path, text)
    line = _one_line(["validate", str(path)], capsys)
    assert line == (
        f"{path}:{_line(text, 'root:')}: data.root: {name} is built in and reads no files; "
        "remove data.root"
    )


def test_datasets_that_read_files_keep_their_root():
    for name in ("cifar10", "cifar100", "image_folder"):
        check_root(DataConfig(name=name, root="/data"))
    with pytest.raises(UserError, match="^data.root: synthetic is built in"):
        load_dataset(DataConfig(name="synthetic", root="x", options={"n_train": 2}))


def test_a_dataset_plugin_refusing_the_users_root_is_the_users_mistake(plugin):
    """It was reported as the plugin's bug ("root ... must hold train.npz")."""

    def npz(root=None, split=0.5):
        raise ValueError(f"root {root} must hold train.npz")

    plugin("dataset", "test_npz", npz)
    with pytest.raises(UserError) as e:
        load_dataset(DataConfig(name="test_npz", root="emptyroot"))
    assert str(e.value) == "data.root: root emptyroot must hold train.npz"

    def broken(root=None):
        raise ValueError("could not broadcast input array from shape (3,) into shape (2,)")

    plugin("dataset", "test_broken", broken)
    with pytest.raises(registry.PluginFailure):  # its own bug, though the user set a root
        load_dataset(DataConfig(name="test_broken", root="somewhere"))


def test_no_shipped_space_sets_a_root_its_dataset_ignores():
    for path in sorted(SPACES.glob("*.yaml")):
        check_root(load_config(path)[0].data)


def test_too_few_training_samples_blame_the_dataset_not_the_fraction():
    x, y = torch.zeros(1, 3), torch.zeros(1, dtype=torch.int64)
    with pytest.raises(UserError, match=r"^data.options: the dataset gives 1 training sample"):
        split_train_valid(x, y, 0.5, 0)
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(UserError) as e:
        split_train_valid(x, y, 0.9, 0)
    assert str(e.value).startswith("data.valid_fraction: 0.9 of the 4 training samples leaves 0 ")
    parts = split_train_valid(x, y, 0.5, 0)
    assert [p.shape[0] for p in parts] == [2, 2, 2, 2]


# ---------------------------------------------------------------------------------- cell spaces
CELLS = (SPACES / "cells_digits.yaml").read_text()


def test_a_reduction_listed_twice_is_refused_at_its_line(tmp_path):
    text = CELLS.replace("  channels: 8\n", "  channels: 8\n  reductions:\n    - 1\n    - 1\n")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    (problem,) = e.value.problems
    second = text.splitlines().index("  reductions:") + 3  # 1-based line of the second item
    assert str(problem) == (
        f"{path}:{second}: space.reductions.1: cell 1 is listed twice; keep one (a cell reduces "
        "once)"
    )


@pytest.mark.parametrize("reductions", [None, [0], [0, 1], [1, 2], []])  # [0, 1, 2]: no normal
def test_odd_channels_search_as_they_retrain(tmp_path, reductions):
    """Factorized reductions split channels in two halves: they only ever get the (even) channels
    of reduction cells, so an odd C works in the search as in retraining."""
    sets = ["space.channels=5", "space.retrain.channels=3", f"space.reductions={reductions}"]
    if reductions is None:
        sets.pop()
    cfg, _ = load_config(SPACES / "cells_digits.yaml", sets)
    space = SearchSpace(cfg)
    net = CellSupernet(space, (1, 8, 8), 10)
    halves = [m for m in net.modules() if isinstance(m, FactorizedReduce)]
    assert all(m.bn.num_features == 2 * m.conv_1.out_channels for m in halves)
    torch.manual_seed(0)
    for _ in range(5):
        sample = [int(torch.randint(c, ())) for c in space.categories]
        net(torch.randn(2, 1, 8, 8), sample).sum().backward()
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(space.freeze([0] * len(space.paths)), sort_keys=False))
    fixed, _ = load_config(arch)
    out = build_network(fixed, (1, 8, 8), 10)(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)


UNNAMED = """version: 1
data: {name: digits}
space:
  stem: {op: conv3, channels: 8}
  stages:
  - stride: 1
    width: 8
    layer: {op: conv3}
  - stride: 2
    width: {choices: [8, 16]}
    layer:
      op: dense
"""


def test_stages_without_names_are_located_by_their_default_names(tmp_path, capsys):
    path = _write(tmp_path, UNNAMED)
    line = _one_line(["validate", str(path)], capsys)
    assert line.startswith(f"{path}:{_line(UNNAMED, 'op: dense')}: space.stages.s2.layer.op: ")


@pytest.mark.parametrize("strategy", ["gradmax_opt", "firefly"])
def test_a_strategys_own_steps_option_is_not_the_schedules(tmp_path, capsys, strategy):
    """train.growth.steps counts growth events; GradMaxOpt's and Firefly's `steps` option counts
    their refinement steps: both reach their owner (the option used to collide with the schedule's
    keyword and fail at the start of training)."""
    text = _with_growth("      steps: 1\n      lr: 5e-1\n", strategy)
    path = _write(tmp_path, text)
    assert main(["validate", str(path)]) == 0
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "strategy, option, expected",
    [
        ("gradmax", "scale: -1", "must be >= 0"),
        ("gradmax_opt", "lr: 0", "must be > 0"),
        ("firefly", "epsilon: -0.5", "must be >= 0"),
    ],
)
def test_validate_refuses_option_values_training_would_refuse(
    tmp_path, capsys, strategy, option, expected
):
    text = _with_growth(f"      {option}\n", strategy)
    path = _write(tmp_path, text)
    key = option.split(":")[0]
    line = _one_line(["validate", str(path)], capsys)
    assert line.startswith(f"{path}:{_line(text, option)}: train.growth.options.{key}: ")
    assert expected in line
