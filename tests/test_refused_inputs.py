"""Inputs an adversarial pass found slipping through: each now gets one located message, exit 2."""

from __future__ import annotations

import os

import pytest
from conftest import SPACES

from nasframe import ConfigError, load_config
from nasframe.cli import main

GOOD = (SPACES / "digits.yaml").read_text()


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("name", ['"../escaped"', '"/tmp/abs"', '""', '"a\\nb"', '".hidden"'])
def test_a_name_that_is_not_a_plain_directory_name_is_refused(name, write_yaml):
    p = write_yaml(GOOD.replace("name: digits-cnn", f"name: {name}"))
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:3: name: ") and "cannot name run directories" in msg


@pytest.mark.parametrize(
    "old, new, where",
    [
        ("  lam: 2", "  lam: 2\n  cost_penalty: .inf", "search.cost_penalty"),
        ("lr: 0.05", "lr: .inf", "search.optimizer.lr"),
        ("  lam: 2", "  lam: 2\n  grad_clip: .inf", "search.grad_clip"),
        ("  lam: 2", "  lam: 100000", "search.lam"),
    ],
)
def test_infinite_or_absurd_numbers_are_refused_at_their_line(old, new, where, write_yaml):
    text = GOOD.replace(old, new, 1)
    p = write_yaml(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if where.split(".")[-1] + ":" in l)
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:{line}: {where}: ")


def test_too_many_cell_nodes_are_refused_at_once(write_yaml):
    p = write_yaml("version: 1\ndata: {name: digits}\nspace: {type: cells, nodes: 100000}\n")
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:3: space.nodes: ") and "32" in msg


def test_deeply_nested_yaml_is_refused_without_a_traceback(write_yaml):
    p = write_yaml("version: 1\nspace: " + "{a: " * 500 + "1" + "}" * 500 + "\n")
    (msg,) = problems(p)
    assert "nested too deeply" in msg


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    (msg,) = problems(fifo)
    assert msg == f"{fifo}: not a regular file, expected a YAML file"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", ""], "--out: empty; give a directory"),
        (["--set", "search..epochs=3"], "--set search..epochs=3: an empty key in"),
        (["--set", "sea\udcffrch.epochs=1"], "not valid UTF-8"),
        (["--out", "run\udcff"], "not valid UTF-8"),
    ],
)
def test_bad_command_line_paths_and_keys_are_refused(args, message, capsys):
    assert main(["search", str(SPACES / "digits.yaml"), *args]) == 2
    assert message in capsys.readouterr().err


def test_running_out_of_memory_is_one_message_not_a_traceback(monkeypatch, capsys):
    def allocate(*_):
        raise RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 1 TB")

    monkeypatch.setattr("nasframe.cli._cmd_validate", allocate)
    assert main(["validate", str(SPACES / "digits.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("out of memory (") and "smaller widths" in err


def test_other_runtime_errors_are_not_mistaken_for_memory(monkeypatch):
    def broken(*_):
        raise RuntimeError("a bug")

    monkeypatch.setattr("nasframe.cli._cmd_validate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["validate", str(SPACES / "digits.yaml")])


def test_a_search_whose_epochs_are_all_warm_up_says_so(tmp_path, capsys):
    args = ["--set", "search.epochs=1", "--set", "search.warmup_epochs=1"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r"), *args]) == 0
    assert "all 1 epochs are warm-up" in capsys.readouterr().err
