"""Cell spaces end to end: search, export, retrain, resume; bad cell configs get one line each."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import SPACES, interrupt_at_first_checkpoint, write_cifar10

from nasframe import ConfigError, SearchSpace, load_config
from nasframe.cli import main

TINY = SPACES / "cells_digits.yaml"
FAST = ["--set", "search.epochs=2", "--set", "train.epochs=2", "--quiet"]


@pytest.fixture(scope="module")
def cell_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("cells") / "search"
    assert main(["search", str(TINY), "--out", str(out), *FAST]) == 0
    return out


def test_search_exports_a_fixed_cell_architecture_that_retrains(cell_search, tmp_path):
    summary = json.loads((cell_search / "summary.json").read_text())
    cfg, _ = load_config(TINY)
    space = SearchSpace(cfg)
    assert summary["categories"] == space.categories == [2, 2, 5, 5, 3, 3, 5, 5, 4, 4, 5, 5] * 2
    assert summary["iterations"] == 2 * (650 // 64)
    arch = yaml.safe_load((cell_search / "arch.yaml").read_text())
    mle = summary["most_likely"]
    for kind in ("normal", "reduction"):
        for i, node in enumerate(arch["space"][kind]):
            assert node["inputs"] == [mle[f"space.{kind}.node{i}.input{k}"] for k in (0, 1)]
            assert node["ops"] == [mle[f"space.{kind}.node{i}.op{k}"] for k in (0, 1)]
    assert main(["validate", str(cell_search / "arch.yaml")]) == 0
    out = tmp_path / "train"
    assert main(["train", str(cell_search / "arch.yaml"), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "summary.json").read_text())
    assert 0.3 < result["test_acc"] <= 1.0  # 2 epochs on digits: far above chance (0.1)
    r = cfg.space.retrain  # the width of the file, no budget
    assert (result["retrain_cells"], result["retrain_channels"]) == (r.cells, r.channels)
    assert result["retrain_channels_auto"] is False and result["param_budget"] is None
    assert (out / "weights.pt").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())


def test_show_describes_the_cells(cell_search, capsys):
    assert main(["show", str(cell_search)]) == 0
    out = capsys.readouterr().out
    assert "normal: n0 = " in out and "reduction: n0 = " in out and "out = cat(" in out


def test_tensorboard_tags_of_cell_choices(cell_search):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(cell_search))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "arch/theta/space.normal.node0.op0/sep_conv3" in tags
    assert "arch/entropy/space.reduction.node2.input1" in tags


def test_interrupted_cell_search_resumes_to_the_same_result(tmp_path):
    from nasframe import run_search

    cfg, _ = load_config(TINY, ["search.epochs=2", "log.tensorboard=false"])
    ref = run_search(cfg, tmp_path / "ref", progress=False)
    run = tmp_path / "run"
    interrupt_at_first_checkpoint(run, lambda: run_search(cfg, run, progress=False))
    resumed = run_search(cfg, run, resume=True, progress=False)
    assert resumed["theta"] == ref["theta"]
    assert resumed["final"] == ref["final"]


def _errors(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [str(p) for p in e.value.problems]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_unknown_cell_op_gets_line_and_suggestion(write_yaml):
    text = TINY.read_text().replace("max_pool3, sep_conv3", "max_pool3, sepconv3")
    p = write_yaml(text)
    (msg,) = _errors(p)
    assert msg.startswith(f"{p}:{_line(text, 'sepconv3')}: space.ops.3: unknown cell op 'sepconv3'")
    assert "did you mean 'sep_conv3'?" in msg


def test_input_out_of_range_in_an_arch_gets_its_line(cell_search, write_yaml):
    text = (cell_search / "arch.yaml").read_text()
    arch = yaml.safe_load(text)
    arch["space"]["reduction"][1]["inputs"] = [0, 3]
    text = yaml.safe_dump(arch, sort_keys=False, default_flow_style=None)
    p = write_yaml(text)
    (msg,) = _errors(p)
    line = _line(text, "inputs: [0, 3]")
    assert msg.startswith(f"{p}:{line}: space.reduction.1.inputs.1: input 3 out of range")
    assert "node 1 takes 0..2" in msg


@pytest.mark.parametrize(
    "old,new,where,what",
    [
        ("channels: 8", "channels: 0", "space.channels", "greater than 0"),
        (
            "type: cells",
            "type: cell",
            "space.type",
            "'type' must be 'chain' (the default) or 'cells'",
        ),
        ("cells: 3 ", "cells: 3\n  reductions: [1, 3]\n ", "space.reductions.1", "does not exist"),
        ("node_inputs: 2", "node_input: 2", "space.node_input", "did you mean 'node_inputs'?"),
    ],
)
def test_bad_cell_space_one_line(write_yaml, old, new, where, what):
    text = TINY.read_text().replace(old, new, 1)
    assert text != TINY.read_text()
    p = write_yaml(text)
    (msg,) = _errors(p)
    assert msg.startswith(f"{p}:") and f": {where}: " in msg and what in msg


def test_chain_spaces_need_no_type_key():
    cfg, raw = load_config(SPACES / "digits.yaml")
    assert "type" not in raw["space"] and cfg.space.type == "chain"


def test_cifar10_search_of_the_reference_space_runs_end_to_end(tmp_path):
    """The shipped CIFAR-10 space, scaled down, on a generated fixture in the official layout:
    search (with the paper's augmentation), export, retrain."""
    write_cifar10(tmp_path / "data", per_batch=8, n_test=8)
    small = ["space.cells=3", "space.channels=4", "search.batch_size=8", "train.batch_size=8"]
    small += ["space.retrain.cells=5", "space.retrain.channels=4", "log.tensorboard=false"]
    sets = [a for kv in small for a in ("--set", kv)]
    search = tmp_path / "search"
    args = ["search", str(SPACES / "asng_nas_cifar10.yaml"), "--out", str(search)]
    assert main([*args, "--set", f"data.root={tmp_path / 'data'}", *sets, *FAST]) == 0
    summary = json.loads((search / "summary.json").read_text())
    assert len(summary["categories"]) == 40
    assert summary["iterations"] == 2 * (20 // 8)  # 40 images: 20 train / 20 valid, batch 8
    arch = search / "arch.yaml"
    assert yaml.safe_load(arch.read_text())["data"]["name"] == "cifar10"
    out = tmp_path / "train"
    assert main(["train", str(arch), "--out", str(out), *sets, *FAST]) == 0
    result = json.loads((out / "summary.json").read_text())
    assert 0.0 <= result["test_acc"] <= 1.0
    assert (out / "weights.pt").exists()


def test_validate_data_refuses_a_retraining_auxiliary_head_the_images_cannot_feed(capsys):
    """It depends on the data and the layout alone: the search ran to its end and only
    `nasframe train` of what it found refused it."""
    args = ["validate", "--data", str(TINY), "--set", "space.retrain.auxiliary_weight=0.4"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "--set space.retrain.auxiliary_weight=0.4: space.retrain.auxiliary_weight: the auxiliary "
        "head needs feature maps of at least 8x8 after cell 2, these images give 2x2; set it to 0"
    )


def test_explicit_reductions_say_they_place_the_retraining_networks_too(capsys):
    """Written for the 8-cell search, [2, 5] placed the 20-cell retraining network's reductions
    as written (its default would be [6, 13]), silently."""
    cifar = SPACES / "asng_nas_cifar10.yaml"
    assert main(["validate", str(cifar), "--set", "space.reductions=[2, 5]"]) == 0
    assert capsys.readouterr().err.strip() == (
        "--set space.reductions=[2, 5]: warning: space.reductions: [2, 5] also place the "
        "reductions of the 20-cell retraining network (space.retrain.cells), where its size's "
        "default would be [6, 13]; remove reductions for each size's default"
    )
    sets = ["--set", "space.cells=6", "--set", "space.reductions=[1, 2, 3, 4]"]
    assert main(["validate", str(TINY), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "space.reductions.2: cell 3 does not exist in the 3-cell retraining network "
        "(space.retrain.cells): cells are numbered 0..2; explicit reductions place those of "
        "both networks: remove them for each size's default (n//3, 2n//3)"
    )


def test_show_of_a_cell_training_describes_the_network_it_trained(tmp_path, capsys):
    """It printed the search's size (cells, channels) over the retraining network's genotype."""
    space = SearchSpace(load_config(TINY)[0])
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(space.freeze([0] * len(space.choices))))
    sets = ["--set", "space.retrain.cells=4", "--set", "space.retrain.channels=6"]
    out = tmp_path / "t"
    assert (
        main(["train", str(arch), "--out", str(out), "--quiet", "--set", "train.epochs=1", *sets])
        == 0
    )
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "  cells: 4 (3 nodes), channels 6, reductions at [1, 2]\n" in shown, shown


@pytest.mark.parametrize(
    "sets, said",
    [
        (  # nothing used the normal cell's choices, yet they were searched and exported
            ["space.cells=2"],
            "--set space.cells=2: space.cells: every cell of the 2-cell search network is a "
            "reduction cell (at [0, 1]): the normal cell's choices would be searched with no "
            "network using them; use more cells or fewer reductions, or fix the normal cell "
            "(normal: ...)",
        ),
        (
            ["space.stages=[{width: 8}]"],  # README's --set example, on a cell space
            "--set space.stages=[{width: 8}]: space.stages: unknown key 'stages'; stages belong "
            "to a chain space (no type: cells); a cell space has cells, nodes and ops",
        ),
    ],
)
def test_cell_space_mistakes_are_told_in_cell_space_terms(capsys, sets, said):
    args = [x for s in sets for x in ("--set", s)]
    assert main(["validate", str(TINY), *args]) == 2
    assert capsys.readouterr().err.strip() == said


def test_an_unknown_kind_of_space_is_refused_at_its_type_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits}\nspace:\n  type: cell\n  nodes: 2\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{path}:3: space.type: unknown kind of space: 'type' must be 'chain' (the default) or "
        "'cells'; did you mean 'cells'?"
    )
    space = SearchSpace(load_config(TINY, ["space.nodes=1"])[0])
    assert space.describe([0] * len(space.choices)).startswith("cells: 3 (1 node), ")
