"""Search under torchrun: two CPU processes (gloo) search exactly as one process does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SPACES, signal_at_first_checkpoint

from nasframe.cli import main
from nasframe.distributed import Group, join_group

# A BatchNorm-free space: with BatchNorm, each process would normalise its own shard.
SPACE = str(SPACES / "digits_prune.yaml")
ARGS = ["--quiet", "--set", "search.epochs=3", "--set", "search.checkpoint_every=5"]
ARGS += ["--set", "search.select.candidates=6", "--set", "search.select.batches=2"]


def torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "nasframe",
        *args,
    ]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("torchrun") / "search"
    done = run(torchrun("search", SPACE, "--out", str(out), *ARGS))
    assert done.returncode == 0, done.stderr
    return out, done


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_two_processes_search_as_one_does(two_process_run, tmp_path):
    out, done = two_process_run
    assert main(["search", SPACE, "--out", str(tmp_path / "one"), *ARGS]) == 0
    one, two = summary(tmp_path / "one"), summary(out)
    assert two["processes"] == 2 and one["processes"] == 1
    # The same architectures sampled, the same ranking, the same θ.
    assert np.abs(np.array(two["theta"]) - np.array(one["theta"])).max() < 1e-9
    for key, value in one["final"].items():
        assert two["final"][key] == pytest.approx(value, abs=1e-5), key
    # The same candidates scored alike (each process scores its half of every valid batch).
    assert two["selection"]["candidates"] == one["selection"]["candidates"]
    assert two["selection"]["valid_losses"] == pytest.approx(one["selection"]["valid_losses"])
    assert (out / "arch.yaml").read_text() == (tmp_path / "one" / "arch.yaml").read_text()
    # Rank 0 alone prints and writes.
    assert done.stderr.count("found architecture") == 1
    assert "(x2 processes)" in done.stderr
    assert len(list(out.glob("events.out.tfevents.*"))) == len(
        list((tmp_path / "one").glob("events.out.tfevents.*"))
    )


def test_torchrun_search_stopped_by_sigterm_resumes_exactly(two_process_run, tmp_path):
    ref, _ = two_process_run
    out = tmp_path / "run"
    stopped = signal_at_first_checkpoint(
        torchrun("search", SPACE, "--out", str(out), *ARGS), out, signal.SIGTERM
    )
    assert stopped.returncode != 0
    # both processes stopped after the same iteration, rank 0 saved
    assert "--resume" in stopped.stderr
    resumed = run(torchrun("search", "--resume", str(out), "--quiet"))
    assert resumed.returncode == 0, resumed.stderr
    assert summary(out)["theta"] == summary(ref)["theta"]
    assert summary(out)["final"] == summary(ref)["final"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    out = tmp_path / "run"
    done = run(torchrun("search", SPACE, "--out", str(out), "--set", "search.batch_size=63"))
    assert done.returncode != 0
    assert "search.batch_size: a batch of 63 does not split evenly over the 2 processes" in (
        done.stderr
    )
    assert "use a multiple of 2" in done.stderr
    assert not (out / "summary.json").exists()


def test_training_under_torchrun_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(SPACES / "digits_prune.yaml"), "--out", str(tmp_path)]) == 2
    assert "only `nasframe search` runs on several processes" in capsys.readouterr().err


def test_one_named_gpu_under_torchrun_is_refused(monkeypatch):
    from nasframe import UserError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match="use device: cuda"):
        join_group("cuda:1")


def test_a_single_process_group_changes_nothing():
    import torch

    group, device = join_group("cpu")
    assert (group.world, group.main, group.distributed, device) == (1, True, False, "cpu")
    x = torch.arange(6.0)
    assert group.shard(x)[0] is x
    host = torch.tensor([1.0, 2.0, 3.0])
    assert group.reduce(host, means=1, stop=True) is host and group.stopping
    group.check_batch(63, "search.batch_size")  # any size splits over one process
    assert Group(rank=1, world=2).shard(x)[0].tolist() == [3.0, 4.0, 5.0]


def test_under_torchrun_the_first_process_times_latency_for_all(tmp_path):
    out = tmp_path / "latency"
    args = [*ARGS, "--set", "search.cost=latency", "--set", "search.cost_penalty=50"]
    done = run(torchrun("search", SPACE, "--out", str(out), *args))
    # Each process checks after every epoch that θ and the weights are the same everywhere: with
    # times of their own, the penalty would rank differently on each.
    assert done.returncode == 0, done.stderr
    table = json.loads((out / "latency.json").read_text())
    assert table["entries"] and summary(out)["most_likely_latency_ms"] > 0
    assert not list(out.glob(".latency.json.*"))  # one writer: no stray temporary files
