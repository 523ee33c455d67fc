"""What a user test found: an export that overwrote any file, a write that failed with a
traceback and left its temporary file, a run stopped before its first checkpoint that could not be
resumed, a resume of the wrong kind of run, a run directory given as a config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, SPACES, run_cli

from nasframe.checkpoint import CannotWrite, save_checkpoint, write_json
from nasframe.cli import main
from nasframe.errors import UserError
from nasframe.yaml_io import dump_yaml


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def _leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


# 1. export --out


def test_export_writes_only_a_pt2_file(digits_runs, tmp_path, capsys):
    run = digits_runs["train"]
    precious = tmp_path / "precious.yaml"
    precious.write_text("mine\n")
    own = (run / "config.yaml").read_text()
    assert main(["export", str(run), "--out", str(precious)]) == 2
    assert _err(capsys) == (
        f"--out {precious}: an export is a .pt2 file; write --out {tmp_path / 'precious.pt2'}"
    )
    assert main(["export", str(run), "--out", str(run / "config.yaml")]) == 2
    assert f"write --out {run / 'config.pt2'}" in _err(capsys)
    assert main(["export", str(run), "--out", str(tmp_path)]) == 2
    assert _err(capsys) == (
        f"--out {tmp_path}: a directory; an export is a .pt2 file; "
        f"write --out {tmp_path / 'model.pt2'}"
    )
    assert precious.read_text() == "mine\n" and (run / "config.yaml").read_text() == own
    assert not (tmp_path / "precious.pt2").exists()
    # a .pt2 is written, and written again (a re-export), without torch's warning
    out = tmp_path / "net.pt2"
    for _ in range(2):
        assert main(["export", str(run), "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert "must be a buffer or a file ending in .pt2" not in err
    assert torch.export.load(out).module()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert _leftovers(tmp_path) == []


def test_export_names_only_what_is_missing(digits_runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(digits_runs["train"] / "config.yaml", run)
    assert main(["export", str(run)]) == 2
    assert _err(capsys) == (
        f"{run}: no weights.pt here; export a finished `nasframe train` run "
        "(or its pruned/ directory)"
    )
    search = digits_runs["search"]
    assert main(["export", str(search)]) == 2
    err = _err(capsys)
    assert err.startswith(f"{search}: no weights.pt here;"), err
    assert err.endswith(
        f"this is a search run: train its architecture first with nasframe train {search / 'arch.yaml'}"
    )


def test_export_to_a_default_target_that_is_a_directory(digits_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_runs["train"], run)
    (run / "model.pt2").mkdir()
    assert main(["export", str(run)]) == 2
    err = _err(capsys)
    assert err == (
        f"{run / 'model.pt2'}: a directory is in the way; export elsewhere with --out FILE.pt2"
    )
    assert "--out " + str(run) not in err and (run / "model.pt2").is_dir()


# 2. writes that fail


def test_writes_that_fail_name_the_file_and_leave_no_temporary_file(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    with pytest.raises(UserError) as e:
        dump_yaml({"a": 1}, blocked)
    assert str(e.value) == f"{blocked}: cannot write it (Is a directory)"
    with pytest.raises(CannotWrite) as e:
        write_json({"a": 1}, blocked)
    assert str(e.value) == f"{blocked}: cannot write it (Is a directory)"
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(CannotWrite, match=r"cannot write it \((File exists|Not a directory)\)"):
        save_checkpoint({"x": torch.zeros(1)}, file / "checkpoint.pt")
    assert _leftovers(tmp_path) == [] and _leftovers(blocked) == []
    assert file.read_text() == ""


def test_a_resumed_search_whose_arch_yaml_is_a_directory(digits_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_runs["search"], run)
    (run / "arch.yaml").unlink()
    (run / "arch.yaml").mkdir()
    done = run_cli("search", "--resume", str(run), "--set", "search.epochs=2", "--quiet")
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"{run / 'arch.yaml'}: cannot write it (Is a directory)"
    )
    assert "Traceback" not in done.stderr
    assert _leftovers(run) == [] and (run / "arch.yaml").is_dir()


# 3. a run stopped before its first checkpoint


def _config_only(source, run):
    run.mkdir()
    shutil.copy(source / "config.yaml", run)
    return run


def test_a_search_killed_before_its_first_checkpoint_resumes_from_the_beginning(
    digits_runs, tmp_path, capsys
):
    """Killed (-9) once config.yaml is written: --resume starts it over, exactly."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasframe", "search", str(SPACES / "digits.yaml")]
    cmd += ["--out", str(run), "--quiet", "--set", "search.epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if (run / "checkpoint.pt").exists():
        pytest.skip("the run wrote its first checkpoint before it was killed")
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        f"{run}: no checkpoint yet (the run stopped before its first); starting it from the "
        "beginning"
    )
    ref = digits_runs["search"]
    assert (run / "arch.yaml").read_text() == (ref / "arch.yaml").read_text()
    theta = [json.loads((d / "summary.json").read_text())["theta"] for d in (run, ref)]
    assert theta[0] == theta[1]


def test_a_training_stopped_before_its_first_checkpoint_resumes_from_the_beginning(
    digits_runs, tmp_path, capsys
):
    ref = digits_runs["train"]
    run = _config_only(ref, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "starting it from the beginning" in capsys.readouterr().err
    mine, theirs = (torch.load(d / "weights.pt", weights_only=True) for d in (run, ref))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_what_cannot_start_over_is_refused(digits_runs, tmp_path, capsys):
    set_up = tmp_path / "set_up"  # a run killed while it set up: its lock, a temporary file
    set_up.mkdir()
    (set_up / ".lock").write_text("")
    (set_up / ".config.yaml.123.tmp").write_text("version: 1\n")
    (set_up / "latency.json").write_text("{}")  # measured as a search.cost: latency sets up
    for command in ("search", "train"):
        assert main([command, "--resume", str(set_up)]) == 2
        assert _err(capsys) == (
            f"--resume {set_up}: no config.yaml here, so nothing to resume (a run stopped while "
            f"it set up leaves its directory so); start the run again with: nasframe {command} "
            f"CONFIG --out {set_up}"
        )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["search", "--resume", str(other)]) == 2
    assert _err(capsys) == f"--resume {other}: no config.yaml here; is it a run directory?"
    assert main(["search", "--resume", str(tmp_path / "nowhere")]) == 2
    assert _err(capsys) == f"--resume {tmp_path / 'nowhere'}: no such directory"
    assert main(["search", "--resume", str(other / "notes.txt")]) == 2
    assert _err(capsys) == f"--resume {other / 'notes.txt'}: not a directory"
    finished = tmp_path / "finished"  # its results would be overwritten
    shutil.copytree(digits_runs["train"], finished)
    (finished / "checkpoint.pt").unlink()
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    assert main(["train", "--resume", str(finished)]) == 2
    assert _err(capsys) == (
        f"--resume {finished}: no checkpoint.pt here, but the run's results are "
        "(summary.json, weights.pt); nothing to resume"
    )
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_a_torchrun_search_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    space = str(SPACES / "digits_prune.yaml")  # BatchNorm-free: two processes search as one
    args = ["--quiet", "--set", "search.epochs=1"]
    ref = tmp_path / "one"
    assert main(["search", space, "--out", str(ref), *args]) == 0
    run = _config_only(ref, tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, "-m", "nasframe", "search", "--resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("starting it from the beginning") == 1  # rank 0 alone says it
    theta = [json.loads((d / "summary.json").read_text())["theta"] for d in (run, ref)]
    assert (
        max(abs(a - b) for x, y in zip(*theta, strict=True) for a, b in zip(x, y, strict=True))
        < 1e-9
    )
    assert (run / "arch.yaml").read_text() == (ref / "arch.yaml").read_text()


# 4. resuming the other kind of run


def test_resuming_a_run_with_the_other_command(digits_runs, tmp_path, capsys):
    search, train = digits_runs["search"], digits_runs["train"]
    assert main(["train", "--resume", str(search)]) == 2
    assert _err(capsys) == (
        f"{search}: this is a search run; resume it with nasframe search --resume {search}"
    )
    assert main(["search", "--resume", str(train), "--set", "search.epochs=2"]) == 2
    assert _err(capsys) == (
        f"{train}: this is a training run; resume it with nasframe train --resume {train}"
    )
    # stopped before their first checkpoint: their configs tell
    s = _config_only(search, tmp_path / "s")
    t = _config_only(train, tmp_path / "t")
    assert main(["train", "--resume", str(s)]) == 2
    assert _err(capsys) == f"{s}: this is a search run; resume it with nasframe search --resume {s}"
    assert main(["search", "--resume", str(t)]) == 2
    assert _err(capsys) == (
        f"{t}: this is a training run; resume it with nasframe train --resume {t}"
    )
    assert sorted(p.name for p in s.iterdir()) == ["config.yaml"]


# 5. a run directory given as a config


def test_a_run_directory_given_as_a_config(digits_runs, capsys):
    search, train = digits_runs["search"], digits_runs["train"]
    assert main(["train", str(search)]) == 2
    assert _err(capsys) == (
        f"{search}: is a directory, expected a YAML file; did you mean {search / 'arch.yaml'}?"
    )
    assert main(["train", str(train)]) == 2  # a training's own config trains it again
    assert _err(capsys).endswith(f"did you mean {train / 'config.yaml'}?")
    assert main(["search", str(search)]) == 2
    assert _err(capsys) == (
        f"{search}: is a directory, expected a YAML file; did you mean {search / 'config.yaml'}? "
        f"(a new search with that run's config), or nasframe search --resume {search}"
    )
    assert main(["search", str(train)]) == 2  # its config.yaml would be refused by search
    assert _err(capsys) == (
        f"{train}: is a training run's directory, not a search space; continue it with "
        f"nasframe train --resume {train}, or search with a config that has choices"
    )
    assert main(["validate", str(search)]) == 2
    assert _err(capsys).endswith(f"did you mean {search / 'arch.yaml'}?")
    assert main(["train", str(SPACES.parent / "docs")]) == 2
    assert _err(capsys) == f"{SPACES.parent / 'docs'}: is a directory, expected a YAML file"


def test_a_data_cache_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    from nasframe import datasets

    (tmp_path / "mnist1d-v1.npz").mkdir()  # a directory in the cache file's way
    monkeypatch.setenv("NASFRAME_CACHE", str(tmp_path))
    datasets._mnist1d_arrays.cache_clear()
    try:
        arrays = datasets._mnist1d_arrays()
    finally:
        datasets._mnist1d_arrays.cache_clear()
    assert arrays["x"].shape == (4000, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist1d-v1.npz"]


def test_a_sigterm_is_no_failure_that_a_check_could_swallow(tmp_path, capsys, plugin):
    """SIGTERM's exception was an Exception: the trial forward of an op's check, which leaves
    unchecked what cannot run, swallowed it and the run went on; loading a plugin reported it
    as the plugin's failure ("failed to load: _Terminated")."""
    from torch import nn

    from nasframe import cli
    from nasframe.op_checks import trial_output

    class Stopped(nn.Module):
        def forward(self, x):
            raise cli._Terminated  # what the SIGTERM handler raises, here mid-forward

    with pytest.raises(cli._Terminated):
        trial_output(Stopped(), (1, 3, 4))

    def terminated_while_loading(**options):
        raise cli._Terminated

    plugin("dataset", "test_slow", terminated_while_loading)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (SPACES / "digits.yaml").read_text().replace("name: digits,", "name: test_slow,")
    )
    assert main(["search", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 143
    assert capsys.readouterr().err.strip() == (
        "terminated (SIGTERM) before a run's loop started; no checkpoint written"
    )
