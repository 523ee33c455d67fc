"""One process at a time in a run directory: a second run there is refused by name, and a run
that died (however it died) never leaves it locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SPACES, cli_command

from nasframe.cli import main
from nasframe.run_lock import LOCK, RunLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are not locked on Windows")

QUICK = ["--quiet", "--set", "search.epochs=1", "--set", "log.tensorboard=false"]
QUICK_50 = ["--quiet", "--set", "search.epochs=50", "--set", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A search of 2 epochs stopped after its first (its checkpoint written)."""
    run = tmp_path_factory.mktemp("lock") / "run"
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *QUICK]) == 0
    (run / "summary.json").unlink()
    return run


def test_a_second_process_in_a_run_directory_is_refused_naming_the_first(stopped_run, capsys):
    held = RunLock.acquire(stopped_run)
    try:
        args = ["search", "--resume", str(stopped_run), "--set", "search.epochs=2", "--quiet"]
        before = (stopped_run / "checkpoint.pt").read_bytes()
        assert main(args) == 2
        assert capsys.readouterr().err.strip() == (
            f"{stopped_run}: another nasframe process (pid {os.getpid()}) is running in this "
            "directory; wait for it to end, or stop it, first"
        )
        assert (stopped_run / "checkpoint.pt").read_bytes() == before
        out = stopped_run.parent / "new"
        out.mkdir()
        held_new = RunLock.acquire(out)  # a new run setting up there: --out is refused too
        try:
            assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *QUICK]) == 2
            assert "another nasframe process" in capsys.readouterr().err
        finally:
            held_new.release()
    finally:
        held.release()
    assert not (stopped_run / LOCK).exists()


def test_a_run_holds_the_lock_while_it_runs_and_removes_it_when_it_ends(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        cli_command("search", str(SPACES / "digits.yaml"), "--out", str(run), *QUICK_50),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (run / "config.yaml").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (run / LOCK).read_text() == str(proc.pid)
        with pytest.raises(Exception, match=f"pid {proc.pid}"):
            RunLock.acquire(run)
    finally:
        proc.send_signal(signal.SIGKILL)  # dies without releasing anything itself
        proc.wait()
    assert (run / LOCK).exists()  # the file stays, but the lock died with the process
    RunLock.acquire(run).release()
    assert not (run / LOCK).exists()


def test_the_lock_is_gone_after_a_run_ends_or_finds_nothing_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *QUICK]) == 0
    assert not (run / LOCK).exists()
    assert main(["search", "--resume", str(run)]) == 0  # finished: says so, writes nothing
    assert "this search has finished" in capsys.readouterr().err
    assert not (run / LOCK).exists()


def test_a_file_system_without_locks_runs_unlocked_and_says_so(tmp_path, monkeypatch, capsys):
    import errno

    from nasframe import run_lock

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    run = tmp_path / "run"
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *QUICK]) == 0
    assert f"note: {run}: runs here cannot be locked (No locks available)" in (
        capsys.readouterr().err
    )
    assert (run / "arch.yaml").exists() and not (run / LOCK).exists()


@pytest.mark.parametrize("command", ["export", "prune"])
def test_export_and_prune_wait_for_a_run_in_their_directory(stopped_run, capsys, command):
    held = RunLock.acquire(stopped_run)
    try:
        assert main([command, str(stopped_run)]) == 2
    finally:
        held.release()
    assert capsys.readouterr().err.strip() == (
        f"{stopped_run}: a nasframe process (pid {os.getpid()}) is running in this directory; "
        f"{command} it once that run has ended"
    )


@pytest.mark.parametrize("name", ["config.yaml", "summary.json", "weights.pt", "arch.yaml"])
def test_out_never_overwrites_a_runs_or_the_users_files(tmp_path, capsys, name):
    out = tmp_path / "project"
    out.mkdir()
    (out / name).write_text("# the user's own\n")
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), *QUICK]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"--out {out}: holds {name}, which a run there would overwrite; choose another "
        f"directory (or continue a run stopped there with --resume {out})"
    )
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_text() == "# the user's own\n"


def test_runs_started_from_python_hold_the_lock_too(tmp_path, monkeypatch):
    """run_search and run_train took no lock: a script and a command line could run in one
    directory at once."""
    from nasframe import load_config, run_search, run_train, search, train
    from nasframe.errors import UserError

    cfg, _ = load_config(SPACES / "digits.yaml", ["search.epochs=1", "log.tensorboard=false"])
    run = tmp_path / "run"
    seen = []

    def holds_the_lock(original):
        def epoch(self, stop):
            with pytest.raises(UserError, match="another nasframe process"):
                RunLock.acquire(self.run_dir)  # what a command line in the same directory meets
            seen.append((self.run_dir / LOCK).read_text())
            return original(self, stop)

        return epoch

    monkeypatch.setattr(search._SearchRun, "epoch", holds_the_lock(search._SearchRun.epoch))
    monkeypatch.setattr(train._TrainRun, "epoch", holds_the_lock(train._TrainRun.epoch))
    run_search(cfg, run, progress=False)
    arch, _ = load_config(run / "arch.yaml", ["train.epochs=1", "log.tensorboard=false"])
    run_train(arch, tmp_path / "trained", progress=False)
    assert seen == [str(os.getpid())] * 2
    assert not (run / LOCK).exists() and not (tmp_path / "trained" / LOCK).exists()
    holder = subprocess.Popen(  # another process holds it: a Python run there is refused
        [
            sys.executable,
            "-c",
            "import sys, time; from nasframe.run_lock import RunLock; "
            f"RunLock.acquire({str(run)!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"another nasframe process \(pid {holder.pid}\)"):
            run_search(cfg, run, resume=True, progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_show_says_when_a_finished_run_is_going_on_again(tmp_path, capsys):
    """A finished search resumed to search longer: `show` printed its old summary and
    architecture as the run's result, with nothing to say a run was going on."""
    run = tmp_path / "run"
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *QUICK]) == 0
    capsys.readouterr()
    held = RunLock.acquire(run)  # as `nasframe search --resume run --set search.epochs=40`
    try:
        assert main(["show", str(run)]) == 0
    finally:
        held.release()
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        f"note: a nasframe process (pid {os.getpid()}) is running in {run} (a resumed run); "
        "below is what it wrote when it ended before"
    )
    assert main(["show", str(run)]) == 0
    assert not capsys.readouterr().out.startswith("note:")
