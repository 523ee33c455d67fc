"""Damaged run directories, impossible output paths and a broken environment: one clear line, exit 2."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from conftest import SPACES, run_cli

from nasframe.cli import main

FAST = ["--set", "search.epochs=1", "--quiet"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "search"
    assert main(["search", str(SPACES / "mlp.yaml"), "--out", str(out), *FAST]) == 0
    return out


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload, expected",
    [
        ([1, 2, 3], "not a nasframe checkpoint (no mapping of its parts)"),
        ("parts", "this checkpoint does not fit this search: its position (KeyError: 'pos')"),
        ("pos", "this checkpoint does not fit this search: its position (ValueError"),
        ("evil", "holds Python objects other than tensors and plain containers, refused"),
    ],
)
def test_a_damaged_checkpoint_is_one_clear_line(finished_run, tmp_path, payload, expected):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    if payload == "parts":
        payload = {"kind": "search", "space_hash": ckpt["space_hash"]}
    elif payload == "pos":
        payload = {**ckpt, "pos": {**ckpt["pos"], "epoch": "x"}}
    elif payload == "evil":
        payload = Evil()
    torch.save(payload, run / "checkpoint.pt")
    done = run_cli("search", "--resume", str(run), "--set", "search.epochs=2", "--quiet")
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "pwned" not in done.stdout
    assert "weights_only set to False" not in done.stderr  # torch's advice is not ours to give
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "summary, expected",
    [("{not json", "cannot read it as JSON"), ("[1, 2]", "expected a JSON object, got list")],
)
def test_show_of_a_damaged_summary(finished_run, tmp_path, summary, expected, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "summary.json").write_text(summary)
    assert main(["show", str(run)]) == 2
    assert expected in capsys.readouterr().err


def test_output_paths_that_cannot_be_directories(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["search", str(SPACES / "mlp.yaml"), "--out", str(blocker / "sub"), *FAST]
    assert main(args) == 2
    assert "cannot make this directory" in capsys.readouterr().err
    assert main(["schema", "--out", str(tmp_path)]) == 2
    assert "cannot write the schema" in capsys.readouterr().err


def test_a_broken_torchrun_environment(tmp_path):
    done = run_cli(
        "search", str(SPACES / "mlp.yaml"), "--out", str(tmp_path / "r"), env={"WORLD_SIZE": "abc"}
    )
    assert done.returncode == 2 and "WORLD_SIZE='abc' should be an integer" in done.stderr


def test_an_op_plugin_that_is_not_an_op(tmp_path, capsys, plugin):
    plugin("op", "not_an_op_test", "just a string")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (SPACES / "mlp.yaml").read_text().replace("[linear, identity]", "[not_an_op_test]")
    )
    assert main(["search", str(cfg), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "not an Op class with a build() classmethod" in capsys.readouterr().err


def test_resume_refuses_a_different_out(finished_run, tmp_path, capsys):
    args = ["search", "--resume", str(finished_run), "--out", str(tmp_path / "elsewhere")]
    assert main(args) == 2
    assert "a resumed run continues in its own directory; drop --out" in capsys.readouterr().err
