"""`nasframe show` and `nasframe export` on runs that are unfinished, damaged or foreign.

`show` must never present a config's first options, or a truncated arch.yaml, as the run's
architecture; `export` must refuse weights that are not finite or do not fit, naming the first
bad tensor; unreadable checkpoints get one short line saying what the file is.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SPACES

from nasframe import SearchSpace, load_config
from nasframe.cli import main
from nasframe.export import largest_difference
from nasframe.yaml_io import dump_yaml


def _copy(digits_runs, tmp_path: Path, kind: str, *remove: str) -> Path:
    """A copy of the ``kind`` run without the files named in ``remove``."""
    run = tmp_path / kind
    shutil.copytree(digits_runs[kind], run)
    for name in remove:
        (run / name).unlink()
    return run


def _space(run: Path) -> SearchSpace:
    return SearchSpace(load_config(run / "config.yaml")[0])


def _open(space: SearchSpace) -> int:
    return sum(c.size > 1 for c in space.choices)


def _show(run: Path, capsys) -> tuple[str, str]:
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return out, err


def _architecture_lines(space: SearchSpace, sample) -> list[str]:
    return ["  " + line for line in space.describe(sample).splitlines()]


# ---- show ----------------------------------------------------------------------------------


def test_show_of_a_stopped_search_gives_what_it_would_export_now(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "search", "arch.yaml", "summary.json")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["search"]["epochs"] = 40  # a run stopped after 1 of 40 epochs (the space is the same)
    dump_yaml(raw, run / "config.yaml")
    space = _space(run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    theta = ckpt["strategy"]["theta"]
    for row, c in zip(theta, space.categories, strict=True):
        row[:c] = row[:c][::-1]  # still a distribution, most likely no longer the first options
    torch.save(ckpt, run / "checkpoint.pt")
    expected = [int(np.argmax(row[:c])) for row, c in zip(theta, space.categories, strict=True)]
    assert any(expected)
    out, err = _show(run, capsys)
    assert "most likely so far (checkpoint at epoch 1 of 40):" in out
    lines = out.splitlines()
    for line in _architecture_lines(space, expected):
        assert line in lines, out
    width = space.decode(expected)["space.stages.s1.width"]
    assert f"s1: conv3 -> {width}, depth " in out
    assert "architecture (config.yaml)" not in out and not err


def test_show_of_a_search_without_arch_yaml_gives_the_found_one(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "search", "arch.yaml")
    found = yaml.safe_load((run / "summary.json").read_text())["most_likely"]
    space = _space(run)
    out, _ = _show(run, capsys)
    assert "most likely so far (checkpoint at epoch 1 of 1):" in out
    for line in _architecture_lines(space, space.encode(found)):
        assert line in out.splitlines()


def test_show_of_a_stopped_random_search_says_it_ends_by_selection(tmp_path, capsys):
    run = tmp_path / "random"
    args = ["--quiet", "--set", "search.epochs=1", "--set", "search.strategy=random"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *args]) == 0
    (run / "arch.yaml").unlink()
    (run / "summary.json").unlink()
    out, err = _show(run, capsys)
    assert "no architecture yet: strategy 'random' has no most likely one" in out, out
    assert "(checkpoint at epoch 1 of 1)" in out and "stride" not in out and not err


def test_show_of_a_search_without_checkpoint_says_there_is_no_architecture(
    digits_runs, tmp_path, capsys
):
    run = _copy(digits_runs, tmp_path, "search", "arch.yaml", "summary.json", "checkpoint.pt")
    out, _ = _show(run, capsys)
    assert f"no architecture yet: config.yaml has {_open(_space(run))} open choices" in out
    assert "architecture (" not in out and "stride" not in out


def test_show_of_a_train_run_whose_config_is_a_space(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "train")
    shutil.copy(digits_runs["search"] / "config.yaml", run / "config.yaml")
    out, _ = _show(run, capsys)
    assert f"no architecture: config.yaml has {_open(_space(run))} open choices" in out
    assert "architecture (" not in out and "stride" not in out


def test_show_of_an_intact_arch_yaml_has_no_warning(digits_runs, capsys):
    out, err = _show(digits_runs["search"], capsys)
    assert "architecture (arch.yaml):" in out and not err


@pytest.mark.parametrize("damage", ["truncated", "other space"])
def test_show_flags_an_arch_yaml_that_is_not_the_runs(digits_runs, tmp_path, capsys, damage):
    run = _copy(digits_runs, tmp_path, "search")
    arch = run / "arch.yaml"
    text = arch.read_bytes()
    if damage == "truncated":
        arch.write_bytes(text[:200])
        assert isinstance(yaml.safe_load(text[:200]), dict)  # still YAML, but without its end
        expected = f"warning: {arch}: it has no space_hash"
    else:
        arch.write_text(text.decode().replace("space_hash: ", "space_hash: 0000"))
        expected = f"warning: {arch}: its space_hash 0000"
    out, err = _show(run, capsys)
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err
    assert "architecture (arch.yaml)" not in out
    found = yaml.safe_load((run / "summary.json").read_text())["most_likely"]
    space = _space(run)
    for line in _architecture_lines(space, space.encode(found)):
        assert line in out.splitlines()


# ---- export --------------------------------------------------------------------------------


def _refused(command: str, run: Path, capsys, output: str) -> str:
    """``nasframe COMMAND RUN``: expect exit 2 and one line on stderr, and no ``output`` written
    into ``run``; return the line."""
    capsys.readouterr()
    assert main([command, str(run)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (run / output).exists()
    return err.strip()


def _export_refused(run: Path, capsys) -> str:
    return _refused("export", run, capsys, "model.pt2")


@pytest.mark.parametrize("value, what", [(float("nan"), "NaN"), (float("inf"), "infinite values")])
def test_export_refuses_weights_that_are_not_finite(digits_runs, tmp_path, capsys, value, what):
    run = _copy(digits_runs, tmp_path, "train")
    state = torch.load(run / "weights.pt", weights_only=True)
    floats = [k for k, v in state.items() if v.is_floating_point()]
    first, later = floats[2], floats[-1]
    state[later].fill_(float("nan"))
    state[first].view(-1)[0] = value
    torch.save(state, run / "weights.pt")
    assert _export_refused(run, capsys) == (
        f"{run / 'weights.pt'}: {first} holds {what}; the training diverged, nothing to export"
    )


def test_export_refuses_nan_in_a_running_statistic(digits_runs, tmp_path, capsys):
    """NaN in a BatchNorm's running mean (a buffer) exported a network that outputs only NaN,
    with 'largest difference 0'; buffers may hold infinity by design (a mask), NaN never."""
    run = _copy(digits_runs, tmp_path, "train")
    state = torch.load(run / "weights.pt", weights_only=True)
    (mean, *_) = [k for k in state if k.endswith("running_mean")]
    state[mean].view(-1)[0] = float("nan")
    torch.save(state, run / "weights.pt")
    assert _export_refused(run, capsys) == (
        f"{run / 'weights.pt'}: {mean} holds NaN; the training diverged, nothing to export"
    )


def test_the_difference_check_sees_nan():
    a = torch.tensor([1.0, 2.0, float("nan"), float("inf")])
    assert largest_difference(a, a.clone()) == 0.0
    assert largest_difference(a, torch.tensor([1.0, 2.5, float("nan"), float("inf")])) == 0.5
    assert largest_difference(a, torch.tensor([1.0, 2.0, 3.0, float("inf")])) == float("inf")
    assert largest_difference(torch.full((3,), float("nan")), torch.zeros(3)) == float("inf")


def _foreign(state: dict) -> tuple[object, str]:
    return {"fc.weight": torch.ones(2, 2)}, f"no tensor for {next(iter(state))} (and "


def _as_list(state: dict) -> tuple[object, str]:
    return list(state.values()), "the file holds a list, not a mapping of names to tensors"


def _wider(state: dict) -> tuple[object, str]:
    key = next(k for k, v in state.items() if v.dim() == 4)
    old = tuple(state[key].shape)
    state[key] = torch.cat([state[key], state[key]])
    return state, f"{key} has shape {(2 * old[0], *old[1:])}, the network {old}"


def _extra(state: dict) -> tuple[object, str]:
    return {**state, "extra.weight": torch.ones(1)}, "unexpected extra.weight"


@pytest.mark.parametrize("change", [_foreign, _as_list, _wider, _extra])
def test_export_names_the_first_misfit_of_foreign_weights(digits_runs, tmp_path, capsys, change):
    run = _copy(digits_runs, tmp_path, "train")
    state, expected = change(torch.load(run / "weights.pt", weights_only=True))
    torch.save(state, run / "weights.pt")
    err = _export_refused(run, capsys)
    assert err.startswith(
        f"{run / 'weights.pt'}: these weights do not fit the architecture of "
        f"{run / 'config.yaml'}: {expected}"
    ), err
    assert "growth" not in err


@pytest.mark.parametrize("narrower", [True, False])
def test_the_growth_hint_only_for_narrower_weights_of_a_growth_run(
    digits_runs, tmp_path, capsys, narrower
):
    run = _copy(digits_runs, tmp_path, "train")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["train"]["growth"] = {"strategy": "gradmax", "start_fraction": 0.25, "every": 5}
    dump_yaml(raw, run / "config.yaml")
    state = torch.load(run / "weights.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.dim() == 4)
    state[key] = state[key][:2] if narrower else torch.cat([state[key], state[key]])
    torch.save(state, run / "weights.pt")
    err = _export_refused(run, capsys)
    assert f": {key} has shape" in err
    assert ("(a growth run that did not reach its full widths?)" in err) == narrower, err


def test_export_of_a_train_run_whose_config_is_a_space_names_the_file(
    digits_runs, tmp_path, capsys
):
    run = _copy(digits_runs, tmp_path, "train")
    shutil.copy(digits_runs["search"] / "config.yaml", run / "config.yaml")
    first = _space(run).choices[0].path
    err = _export_refused(run, capsys)
    assert err.startswith(f"{run / 'config.yaml'}:") and f": {first}: the config still has" in err


# ---- unreadable checkpoints ------------------------------------------------------------------


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _text(data: bytes) -> bytes:
    return b"hello, these are not weights\n"


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _head(data: bytes) -> bytes:
    return data[:100]


def _pickled_list(data: bytes) -> bytes:
    return pickle.dumps([1, 2, 3], protocol=2)


def _evil(data: bytes) -> bytes:
    return pickle.dumps(Evil(), protocol=4)


def _empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_text, "not a PyTorch file (it holds text: 'hello, these are not wei')"),
        (_half, "truncated or damaged (its zip archive has lost its end)"),
        (_head, "truncated or damaged (its zip archive has lost its end)"),
        (_pickled_list, "not a PyTorch file (a plain Python pickle)"),
        (_evil, "it holds Python objects other than tensors and plain containers, refused"),
        (_empty, "the file is empty"),
    ],
)
def test_an_unreadable_weights_file_is_one_short_line(
    digits_runs, tmp_path, capsys, damage, expected
):
    run = _copy(digits_runs, tmp_path, "train")
    weights = run / "weights.pt"
    weights.write_bytes(damage(weights.read_bytes()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = _export_refused(run, capsys)
    assert err == f"{weights}: not a readable nasframe checkpoint: {expected}"
    assert not [w for w in caught if "pickle protocol" in str(w.message)]  # one message, not two


def test_a_truncated_search_checkpoint_is_one_short_line(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "search")
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(_half(ckpt.read_bytes()))
    capsys.readouterr()
    args = ["search", "--resume", str(run), "--quiet", "--set", "search.epochs=2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{ckpt}: not a readable nasframe checkpoint: truncated or damaged (its zip archive has "
        "lost its end)"
    )


def _prune_refused(run: Path, capsys) -> str:
    return _refused("prune", run, capsys, "pruned")


def test_prune_of_a_train_run_whose_config_is_a_space_names_the_file(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "train")
    shutil.copy(digits_runs["search"] / "config.yaml", run / "config.yaml")
    first = _space(run).choices[0].path
    err = _prune_refused(run, capsys)
    assert err.startswith(f"{run / 'config.yaml'}:") and f": {first}: the config still has" in err


def test_prune_refuses_weights_that_are_not_finite_or_do_not_fit(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "train")
    state = torch.load(run / "weights.pt", weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    torch.save(state, run / "weights.pt")
    assert _prune_refused(run, capsys) == (
        f"{run / 'weights.pt'}: {first} holds NaN; the training diverged, nothing to prune"
    )
    torch.save(_extra(state)[0], run / "weights.pt")
    assert "unexpected extra.weight" in _prune_refused(run, capsys)


def test_prune_points_at_the_config_line_of_a_data_problem(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "train")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["data"]["root"] = str(tmp_path)  # digits is built in: a root is refused
    dump_yaml(raw, run / "config.yaml")
    line = next(
        i
        for i, text in enumerate((run / "config.yaml").read_text().splitlines(), 1)
        if text.strip().startswith("root:")
    )
    err = _prune_refused(run, capsys)
    assert err.startswith(f"{run / 'config.yaml'}:{line}: data.root: "), err


def test_show_of_several_runs_lists_an_unfinished_one(digits_runs, tmp_path, capsys):
    run = _copy(digits_runs, tmp_path, "search")
    (run / "summary.json").unlink()  # as a run killed before its end leaves it
    capsys.readouterr()
    assert main(["show", str(digits_runs["search"]), str(run), str(digits_runs["train"])]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4 and rows[2].split()[:2] == [str(run), "unfinished"]


def test_show_says_what_a_search_s_metrics_are_of(digits_runs, tmp_path, capsys):
    """A search's last-epoch metrics came right above the selected architecture, unlabelled: a
    reader took the most likely architecture's test accuracy for the selected one's."""
    import json

    from nasframe.show import SEARCH_METRICS, shown

    run = _copy(digits_runs, tmp_path, "search")
    summary = json.loads((run / "summary.json").read_text())
    summary["selection"] = {
        "chosen_index": 2,
        "candidates": [[0], [1], [2]],
        "valid_loss": 0.5,
        "valid_acc": 0.8,
        "samples": 640,
        "test_acc": 0.75,
        "parameters": 100,
        "macs": 2000,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "selection: candidate 3 of 3, valid loss 0.5000, valid acc 0.8000 on 640 samples, test "
        "acc 0.7500, 100 parameters, 2000 MACs"
    ) in lines
    at = lines.index(f"last epoch ({SEARCH_METRICS}):")
    assert lines[at + 1 : at + 6] == [
        f"  {key}: {shown(summary['final'][key])}"
        for key in ("train/loss", "train/acc", "valid/loss", "valid/acc", "test/acc")
    ]
    assert main(["show", str(digits_runs["train"])]) == 0
    assert "last epoch" not in capsys.readouterr().out  # a training's are its network's
    del summary["final"]["test/acc"]  # random search: no most likely architecture to test
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(run)]) == 0
    assert (
        "last epoch (train and valid: means over the sampled architectures):"
        in capsys.readouterr().out.splitlines()
    )
