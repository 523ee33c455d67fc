"""Runs record what they ran on, and a run resumed on another set-up says so."""

from __future__ import annotations

import json

import torch
from conftest import SPACES

from nasframe.cli import main
from nasframe.environment import environment, resume_note


def _search(out, *extra: str) -> int:
    args = ["search", str(SPACES / "mlp.yaml"), "--out", str(out), "--quiet"]
    return main([*args, "--set", "search.epochs=1", *extra])


def test_summaries_record_versions_device_and_threads(tmp_path):
    assert _search(tmp_path / "s") == 0
    env = json.loads((tmp_path / "s" / "summary.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["threads"] == torch.get_num_threads() and env["python"].count(".") == 2
    assert (
        main(
            [
                "train",
                str(tmp_path / "s" / "arch.yaml"),
                "--out",
                str(tmp_path / "t"),
                "--quiet",
                "--set",
                "train.epochs=1",
            ]
        )
        == 0
    )
    trained = json.loads((tmp_path / "t" / "summary.json").read_text())["environment"]
    assert trained == env


def test_resuming_with_other_threads_is_noted_and_with_the_same_is_not(tmp_path, capsys):
    out = tmp_path / "s"
    assert _search(out) == 0
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--quiet", "--set", "search.epochs=2"]) == 0
    assert "note: resumed on another set-up" not in capsys.readouterr().err
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert main(["search", "--resume", str(out), "--quiet", "--set", "search.epochs=3"]) == 0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert f"note: resumed on another set-up than the checkpoint's (threads {threads} -> " in err


def test_a_checkpoint_without_an_environment_gets_no_note():
    now = environment(torch.device("cpu"))
    assert resume_note(None, now) is None and resume_note(dict(now), now) is None
    older = {**now, "torch": "2.0.0"}
    assert f"torch 2.0.0 -> {now['torch']}" in resume_note(older, now)
