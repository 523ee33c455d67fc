"""What a stopped write or pruning leaves behind is cleaned up or redone: temporary files of killed
writers go on the next write of their file, a pruning's events are written before the summary that
marks it complete (and a pruning done again replaces the partial events of the stopped one), and a
`nasframe prune --out OUT` stopped before its summary.json is pruned again on the same command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SPACES

from nasframe import SearchSpace, load_config, prune_run
from nasframe.checkpoint import atomic_write, remove_stale_temps, write_json
from nasframe.cli import main
from nasframe.yaml_io import dump_yaml

PRUNE_TAGS = {
    "prune/removed_fraction",
    "prune/removed_units",
    "prune/params_before",
    "prune/params_after",
    "prune/macs_before",
    "prune/macs_after",
    "prune/acc_before",
    "prune/acc_after",
}


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- killtest F1: temporary files of killed writers ---------------------------------------------


def test_a_killed_writers_temporary_file_goes_on_the_next_write(tmp_path):
    target = tmp_path / "weights.pt"
    dead = tmp_path / f".weights.pt.{_dead_pid()}.tmp"
    dead.write_bytes(b"half a checkpoint")
    other = tmp_path / f".summary.json.{_dead_pid()}.tmp"  # another file's: not this write's
    other.write_bytes(b"{")
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert not dead.exists() and other.exists()
    write_json({"a": 1}, tmp_path / "summary.json")
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "weights.pt"]


def test_a_live_processs_temporary_file_is_never_touched(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = tmp_path / f".weights.pt.{sleeper.pid}.tmp"  # another writer, still writing
        live.write_bytes(b"in progress")
        parent = tmp_path / f".weights.pt.{os.getppid()}.tmp"
        parent.write_bytes(b"in progress")
        odd = [tmp_path / ".weights.pt.abc.tmp", tmp_path / ".weights.pt.12.bak"]
        for path in odd:  # not the name of a temporary file of ours: left alone
            path.write_bytes(b"x")
        atomic_write(tmp_path / "weights.pt", lambda f: f.write(b"new"))
        assert live.read_bytes() == b"in progress" and parent.exists()
        assert all(path.exists() for path in odd)
        assert remove_stale_temps(tmp_path / "weights.pt") == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_directory_named_like_a_temporary_file_is_left(tmp_path):
    folder = tmp_path / f".weights.pt.{_dead_pid()}.tmp"
    folder.mkdir()
    atomic_write(tmp_path / "weights.pt", lambda f: f.write(b"new"))
    assert folder.is_dir()


# --- prune runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A one-epoch training of digits_prune's MLP with its `prune:` step, and one without."""
    root = tmp_path_factory.mktemp("prune_resume")
    cfg, _ = load_config(SPACES / "digits_prune.yaml")
    space = SearchSpace(cfg)
    arch = space.freeze([0] * len(space.paths))
    arch["train"]["epochs"] = 1
    path = root / "arch.yaml"
    dump_yaml(arch, path)
    runs = {"prunes": root / "prunes", "plain": root / "plain"}
    assert main(["train", str(path), "--out", str(runs["prunes"]), "--quiet"]) == 0
    no_prune = ["--set", "prune=null"]
    assert main(["train", str(path), "--out", str(runs["plain"]), "--quiet", *no_prune]) == 0
    return runs


def _copy(trained: dict[str, Path], tmp_path: Path, kind: str) -> Path:
    run = tmp_path / kind
    shutil.copytree(trained[kind], run)
    return run


def _points(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of ``directory``'s events as TensorBoard loads it: (step, value) each."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _events(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("events.out.tfevents"))


class _Stop(Exception):
    """Stands for a kill at one point of a pruning."""


def test_a_pruning_writes_its_events_before_its_summary(trained, tmp_path, monkeypatch):
    """A stop right before summary.json (which marks the pruning complete) has the events."""
    run = _copy(trained, tmp_path, "plain")
    out = tmp_path / "out"

    def stop(data, path):
        raise _Stop

    monkeypatch.setattr(prune_run, "write_json", stop)
    with pytest.raises(_Stop):
        prune_run.run_prune(run, threshold=0.01, out=out)
    assert not (out / "summary.json").exists()
    points = _points(out)
    assert PRUNE_TAGS <= set(points) and all(len(points[t]) == 1 for t in PRUNE_TAGS)


def _without_prune_entry(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("prune")
    (run / "summary.json").write_text(json.dumps(summary))


def test_a_trainings_pruning_done_again_replaces_the_partial_events(trained, tmp_path):
    """killtest F4: a training stopped in its `prune:` step, after part of pruned/'s events and
    before pruned/summary.json, prunes again on --resume: every prune/* point once."""
    from torch.utils.tensorboard import SummaryWriter

    run = _copy(trained, tmp_path, "prunes")
    pruned = run / "pruned"
    complete = _points(pruned)
    assert PRUNE_TAGS <= set(complete)
    (pruned / "summary.json").unlink()
    for events in _events(pruned):
        events.unlink()
    writer = SummaryWriter(str(pruned))  # the stopped try: one tag of its events written
    writer.add_scalar("prune/removed_fraction", 0.123, 0)
    writer.close()
    _without_prune_entry(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["prune"]["removed_units"] >= 0
    assert _points(pruned) == complete and len(_events(pruned)) == 1


def test_a_trainings_finished_pruning_is_kept_with_its_events(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path, "prunes")
    before = {p.name: p.read_bytes() for p in (run / "pruned").iterdir()}
    _without_prune_entry(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "(written before the stop)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (run / "pruned").iterdir()} == before


def _stopped_pruning(run: Path, out: Path) -> None:
    """``out`` as a `nasframe prune RUN --out OUT` killed before its summary.json leaves it:
    arch.yaml, weights.pt, partial events, temporary files of killed writes."""
    assert main(["prune", str(run), "--threshold", "0.01", "--out", str(out)]) == 0
    (out / "summary.json").unlink()
    for name in ("summary.json", "arch.yaml"):
        (out / f".{name}.{_dead_pid()}.tmp").write_text("half")


def test_a_standalone_pruning_stopped_before_its_summary_is_pruned_again(trained, tmp_path, capsys):
    """killtest F6: the same command again prunes again (it was refused as already pruned)."""
    run = _copy(trained, tmp_path, "plain")
    out = tmp_path / "out"
    _stopped_pruning(run, out)
    complete = _points(out)
    capsys.readouterr()
    assert main(["prune", str(run), "--threshold", "0.01", "--out", str(out)]) == 0
    said = capsys.readouterr().err
    assert (
        f"--out {out}: an earlier pruning stopped before it finished (no summary.json); "
        "pruning again"
    ) in said
    assert json.loads((out / "summary.json").read_text())["kind"] == "prune"
    assert _points(out) == complete and len(_events(out)) == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("events.")) == [
        "arch.yaml",
        "summary.json",
        "weights.pt",
    ]  # the killed writes' temporary files are gone too


@pytest.mark.parametrize("change", ["user file", "no prune entry", "another name", "no arch"])
def test_a_directory_with_anything_else_is_still_refused(trained, tmp_path, capsys, change):
    run = _copy(trained, tmp_path, "plain")
    out = tmp_path / "out"
    _stopped_pruning(run, out)
    arch = out / "arch.yaml"
    if change == "user file":
        (out / "notes.txt").write_text("mine")
    elif change == "no prune entry":
        arch.write_text(arch.read_text().replace("prune:", "# prune:"))
    elif change == "another name":
        arch.write_text(arch.read_text().replace("name: ", "name: mine-", 1))
    else:
        arch.unlink()  # a weights.pt alone: not what a pruning leaves
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["prune", str(run), "--threshold", "0.01", "--out", str(out)]) == 2
    assert f"--out {out}: already holds a pruned network" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_default_out_is_not_called_an_option_the_user_gave(trained, tmp_path, capsys):
    """walk14 F13: `nasframe prune RUN` without --out, RUN/pruned already there."""
    run = _copy(trained, tmp_path, "plain")
    assert main(["prune", str(run), "--threshold", "0.01"]) == 0
    capsys.readouterr()
    assert main(["prune", str(run), "--threshold", "0.02"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{run / 'pruned'} (the default --out): already holds a pruned network")
    assert "--out " + str(run / "pruned") not in err


def test_yaml_files_are_written_the_same_way(tmp_path):
    from nasframe.yaml_io import dump_yaml

    dead = tmp_path / f".config.yaml.{_dead_pid()}.tmp"
    dead.write_text("version: 1\nna")  # cut short by a kill
    dump_yaml({"version": 1}, tmp_path / "config.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
