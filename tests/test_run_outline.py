"""Resuming a run that has finished (no epoch left, its results written) does nothing but say
so: a user's edit of arch.yaml survives, no TensorBoard events file is added, no file changes.
A resume with epochs left, or of a run whose results were not (all) written, goes on as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import SPACES

from nasframe.cli import main
from nasframe.train import written_summary

ONE_EPOCH = ["--quiet", "--set", "search.epochs=1", "--set", "train.epochs=1"]
STEPS = 650 // 64  # iterations an epoch of digits' search


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A finished search of one epoch, its training with pruning, and one without."""
    root = tmp_path_factory.mktemp("finished")
    made = {"search": root / "search", "prunes": root / "prunes", "train": root / "train"}
    space = str(SPACES / "digits_prune.yaml")
    assert main(["search", space, "--out", str(made["search"]), *ONE_EPOCH]) == 0
    arch = str(made["search"] / "arch.yaml")
    assert main(["train", arch, "--out", str(made["prunes"]), *ONE_EPOCH]) == 0
    no_prune = ["--set", "prune=null"]
    assert main(["train", arch, "--out", str(made["train"]), *ONE_EPOCH, *no_prune]) == 0
    return made


def _copy(runs: dict[str, Path], tmp_path: Path, kind: str) -> Path:
    run = tmp_path / kind
    shutil.copytree(runs[kind], run)
    return run


def _files(run: Path) -> dict[str, bytes]:
    """Every file under ``run`` by its relative path, with its bytes."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def _events(run: Path) -> int:
    return sum(1 for p in run.iterdir() if p.name.startswith("events.out.tfevents"))


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("sets", [[], ["--set", "search.epochs=1", "--set", "log.theta_images=3"]])
def test_resuming_a_finished_search_says_so_in_one_line_and_writes_nothing(
    runs, tmp_path, capsys, sets
):
    run = _copy(runs, tmp_path, "search")
    edited = (run / "arch.yaml").read_text() + "# my own note\n"
    (run / "arch.yaml").write_text(edited)
    before = _files(run)
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--quiet", *sets]) == 0
    assert capsys.readouterr().err == (
        f"{run}: this search has finished (1 of 1 epochs); nothing to resume (to search longer: "
        "--set search.epochs=N, N above 1)\n"
    )
    assert _files(run) == before  # config.yaml too: a --set is not recorded for a run not run
    assert (run / "arch.yaml").read_text() == edited


@pytest.mark.parametrize("kind", ["prunes", "train"])
def test_resuming_a_finished_training_says_so_in_one_line_and_writes_nothing(
    runs, tmp_path, capsys, kind
):
    run = _copy(runs, tmp_path, kind)
    before = _files(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert capsys.readouterr().err == (
        f"{run}: this training has finished (1 of 1 epochs); nothing to resume (to train longer: "
        "--set train.epochs=N, N above 1)\n"
    )
    assert _files(run) == before  # weights.pt, summary.json (its pruning), pruned/, events


def test_the_python_api_returns_a_finished_runs_summary(runs, tmp_path, capsys):
    from nasframe import load_config
    from nasframe.search import run_search
    from nasframe.train import run_train

    for kind, run_fn in (("search", run_search), ("train", run_train)):
        run = _copy(runs, tmp_path, kind)
        config, _ = load_config(run / "config.yaml")
        before = _files(run)
        assert run_fn(config, run, resume=True, progress=False) == _summary(run)
        assert _files(run) == before


def test_a_search_resumed_with_more_epochs_goes_on_and_then_has_finished(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "search")
    (run / "arch.yaml").write_text((run / "arch.yaml").read_text() + "# my own note\n")
    events = _events(run)
    assert main(["search", "--resume", str(run), "--quiet", "--set", "search.epochs=2"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert _summary(run)["iterations"] == 2 * STEPS
    assert yaml.safe_load((run / "config.yaml").read_text())["search"]["epochs"] == 2
    assert "# my own note" not in (run / "arch.yaml").read_text()  # the longer search's result
    assert _events(run) > events
    before = _files(run)
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert "has finished (2 of 2 epochs)" in capsys.readouterr().err
    assert _files(run) == before


def test_a_training_resumed_with_more_epochs_goes_on(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "train")
    weights = (run / "weights.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.epochs=2"]) == 0
    assert "has finished" not in capsys.readouterr().err
    assert _summary(run)["epochs"] == 2 and (run / "weights.pt").read_bytes() != weights
    before = _files(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "has finished (2 of 2 epochs)" in capsys.readouterr().err
    assert _files(run) == before


def _no_summary(run: Path) -> None:
    (run / "summary.json").unlink()  # as if stopped during the final selection


def _no_arch(run: Path) -> None:
    (run / "arch.yaml").unlink()


def _stale_summary(run: Path) -> None:
    """As if stopped during the final selection of a resume with more epochs: the summary.json
    left is that of the earlier end."""
    summary = _summary(run)
    summary["iterations"] -= STEPS
    (run / "summary.json").write_text(json.dumps(summary))


def _not_json(run: Path) -> None:
    (run / "summary.json").write_text("{")


@pytest.mark.parametrize("unwritten", [_no_summary, _no_arch, _stale_summary, _not_json])
def test_a_search_whose_results_were_not_written_finishes_on_resume(runs, tmp_path, unwritten):
    run = _copy(runs, tmp_path, "search")
    expected = (run / "arch.yaml").read_text(), _summary(run)
    unwritten(run)
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert (run / "arch.yaml").read_text() == expected[0]
    assert _summary(run)["iterations"] == expected[1]["iterations"] == STEPS
    assert _summary(run)["theta"] == expected[1]["theta"]
    assert not (run / "arch.previous.yaml").exists()  # the same architecture: nothing to keep


def test_an_edited_arch_yaml_is_kept_when_a_resume_writes_the_results_again(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "search")
    found = (run / "arch.yaml").read_text()
    edited = found + "# my own choice\n"
    (run / "arch.yaml").write_text(edited)
    _no_summary(run)
    assert main(["search", "--resume", str(run)]) == 0
    assert (run / "arch.yaml").read_text() == found
    assert (run / "arch.previous.yaml").read_text() == edited
    said = capsys.readouterr().err  # the console's lines go to stderr
    assert (
        "kept the earlier arch.yaml, which differs from this search's, as arch.previous.yaml"
        in said
    )
    (run / "arch.yaml").write_text(edited)  # once more: the earlier copy is not overwritten
    _no_summary(run)
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert (run / "arch.previous-2.yaml").read_text() == edited


def test_a_training_whose_pruning_was_not_written_prunes_on_resume(runs, tmp_path):
    run = _copy(runs, tmp_path, "prunes")
    summary = _summary(run)
    shutil.rmtree(run / "pruned")
    (run / "summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "prune"})
    )
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    pruning = {k: v for k, v in _summary(run)["prune"].items() if k != "source"}
    assert pruning == {k: v for k, v in summary["prune"].items() if k != "source"}
    assert (run / "pruned" / "weights.pt").exists()


def test_a_search_that_converged_says_so_when_resumed(tmp_path, capsys):
    run = tmp_path / "s"
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(run), "--quiet"]
    assert main([*args, "--set", "search.stop_when_converged=0.3"]) == 0  # within an epoch or two
    done = _summary(run)["epochs_run"]
    assert 0 < done < 15
    before = _files(run)
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--quiet", "--set", "search.epochs=20"]) == 0
    said = capsys.readouterr().err
    assert said.startswith(
        f"{run}: this search has finished (converged after {done} of 20 epochs); nothing to "
        "resume (to search longer: --set search.stop_when_converged=null, or above "
    )
    above = float(said.rsplit("above ", 1)[1].rstrip(")\n"))
    assert 0.3 <= above < 1
    assert _files(run) == before
    # the threshold it names is where θ stands: just below, still converged; above, it goes on
    below = ["--set", "search.epochs=20", "--set", f"search.stop_when_converged={above - 0.001}"]
    assert main(["search", "--resume", str(run), "--quiet", *below]) == 0
    assert "this search has finished" in capsys.readouterr().err and _files(run) == before
    higher = ["--set", "search.epochs=20", "--set", f"search.stop_when_converged={above}"]
    assert main(["search", "--resume", str(run), "--quiet", *higher]) == 0
    assert _summary(run)["epochs_run"] > done


def test_written_summary_needs_every_result_and_its_kind(runs, tmp_path):
    run = _copy(runs, tmp_path, "search")
    assert written_summary(run, "search", ("arch.yaml",)) == _summary(run)
    assert written_summary(run, "train", ("arch.yaml",)) is None
    assert written_summary(run, "search", ("weights.pt",)) is None
    (run / "summary.json").write_text("[1, 2]")
    assert written_summary(run, "search", ()) is None


def _without_prune_entry(run: Path, summary: dict) -> None:
    """A training stopped after its pruning was written, before its summary had the entry."""
    (run / "summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "prune"})
    )


def _timeless(summary: dict) -> dict:
    """``summary`` without its wall time, and without the source path of a pruning (a copied
    run's pruning names the directory it was copied from)."""
    kept = {k: v for k, v in summary.items() if k != "wall_time_s"}
    if "prune" in kept:
        kept["prune"] = {k: v for k, v in kept["prune"].items() if k != "source"}
    return kept


def test_a_training_stopped_after_its_pruning_was_written_finishes_on_resume(runs, tmp_path):
    run = _copy(runs, tmp_path, "prunes")
    summary, pruned = _summary(run), _files(run / "pruned")
    _without_prune_entry(run, summary)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert _timeless(_summary(run)) == _timeless(summary)
    assert _files(run / "pruned") == pruned  # the pruning is the one written before the stop
    # Stopped while pruned/ was written (its summary.json comes last): it prunes again.
    (run / "pruned" / "summary.json").unlink()
    _without_prune_entry(run, summary)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert _timeless(_summary(run)) == _timeless(summary)
    assert (run / "pruned" / "weights.pt").read_bytes() == pruned["weights.pt"]


def test_a_pruning_of_another_threshold_is_not_taken_for_the_trainings_own(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "prunes")
    summary = _summary(run)
    pruning = _summary(run / "pruned")
    pruning["threshold"] /= 2  # what `nasframe prune RUN --threshold` of another value writes
    (run / "pruned" / "summary.json").write_text(json.dumps(pruning))
    _without_prune_entry(run, summary)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "kept the earlier pruning, of other weights or settings, as " in capsys.readouterr().err
    assert _summary(run / "pruned.previous") == pruning  # kept as it was
    assert _summary(run / "pruned")["threshold"] == summary["prune"]["threshold"]
    assert _timeless(_summary(run)) == _timeless(summary)


def test_a_training_resumed_to_train_longer_prunes_its_final_weights(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "prunes")
    before = _files(run / "pruned")
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.epochs=2"]) == 0
    summary = _summary(run)
    assert summary["epochs"] == 2
    assert summary["prune"]["acc_before"] == summary["test_acc"]  # pruned what it ends with
    assert _files(run / "pruned.previous") == before  # the earlier weights' pruning, kept
    assert (run / "pruned" / "weights.pt").read_bytes() != before["weights.pt"]


@pytest.mark.parametrize("kind", ["search", "train"])
def test_sigterm_while_the_results_are_written_says_how_to_finish_them(
    runs, tmp_path, capsys, monkeypatch, kind
):
    import os
    import signal

    from nasframe import search, train

    run = _copy(runs, tmp_path, kind)
    expected = _timeless(_summary(run))
    _no_summary(run)
    cls = search._SearchRun if kind == "search" else train._TrainRun
    monkeypatch.setattr(cls, "write_results", lambda *a: os.kill(os.getpid(), signal.SIGTERM))
    assert main([kind, "--resume", str(run), "--quiet"]) == 128 + signal.SIGTERM
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said == (
        "terminated (SIGTERM) while writing the results; the checkpoint is written: finish with "
        f"nasframe {kind} --resume {run}"
    )
    monkeypatch.undo()
    assert main([kind, "--resume", str(run)]) == 0
    assert _timeless(_summary(run)) == expected
    assert f"resuming {run} after its last epoch: writing its results" in capsys.readouterr().err


def _growth_arch(path: Path, epochs: int) -> None:
    """A digits architecture trained with growth and its full-width baseline, written to
    ``path``."""
    from nasframe import SearchSpace, load_config
    from nasframe.yaml_io import dump_yaml

    cfg, _ = load_config(SPACES / "digits.yaml", ["log.tensorboard=false"])
    space = SearchSpace(cfg)
    arch = space.freeze([0] * len(space.paths))
    arch["train"]["epochs"] = epochs
    arch["train"]["growth"] = {
        "strategy": "random",
        "start_fraction": 0.5,
        "every": 5,
        "steps": 1,
        "baseline": True,
    }
    dump_yaml(arch, path)


def test_a_stop_in_the_growth_baseline_is_resumed_from_the_run_itself(
    tmp_path, capsys, monkeypatch
):
    import signal

    from nasframe import train

    _growth_arch(tmp_path / "arch.yaml", epochs=2)
    run = tmp_path / "grown"
    epoch = train._TrainRun.epoch

    def stopped_in_the_baseline(self, stop):
        if self.run_dir.name == "full_width":
            stop.signal = signal.SIGTERM
        return epoch(self, stop)

    monkeypatch.setattr(train._TrainRun, "epoch", stopped_in_the_baseline)
    assert main(["train", str(tmp_path / "arch.yaml"), "--out", str(run), "--quiet"]) == 130
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.endswith(f"continue with: nasframe train --resume {run}"), said
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert 0 <= _summary(run)["growth"]["full_width_test_acc"] <= 1


@pytest.mark.parametrize(
    "kind, change, where, ran, asked",
    [
        ("search", "search.strategy=random", "search.strategy", "asng", "random"),
        (
            "search",
            "search.optimizer={name: adam, lr: 0.01}",
            "search.optimizer.name",
            "sgd",
            "adam",
        ),
        ("train", "train.optimizer={name: sgd, lr: 0.01}", "train.optimizer.name", "adam", "sgd"),
    ],
)
def test_a_resume_that_changes_a_setting_the_checkpoint_holds_is_refused_by_name(
    runs, tmp_path, capsys, kind, change, where, ran, asked
):
    run = _copy(runs, tmp_path, kind)
    before = _files(run)
    more = "search.epochs=2" if kind == "search" else "train.epochs=2"
    assert main([kind, "--resume", str(run), "--set", more, "--set", change]) == 2
    assert capsys.readouterr().err.strip() == (
        f"--set {change}: the run {run} was made with {where} {ran}, and its checkpoint holds "
        f"the state that made, which {asked} cannot continue from; start a new run for {asked} "
        "(without --resume)"
    )
    assert _files(run) == before


@pytest.mark.parametrize("kind", ["search", "train"])
def test_a_second_ctrl_c_says_no_checkpoint_was_written_and_how_to_continue(
    runs, tmp_path, capsys, monkeypatch, kind
):
    from nasframe import search, train

    run = _copy(runs, tmp_path, kind)

    def second_ctrl_c(self, stop):  # what stop_on_signals raises on a second SIGINT
        raise KeyboardInterrupt

    cls = search._SearchRun if kind == "search" else train._TrainRun
    monkeypatch.setattr(cls, "epoch", second_ctrl_c)
    more = "search.epochs=2" if kind == "search" else "train.epochs=2"
    assert main([kind, "--resume", str(run), "--set", more, "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted again: stopped without a checkpoint; continue from the last one with: "
        f"nasframe {kind} --resume {run}"
    )


def _points(run: Path) -> dict[str, list[int]]:
    """The steps of every scalar as TensorBoard shows the run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _twice(points: dict[str, list[int]]) -> dict[str, list[int]]:
    return {tag: steps for tag, steps in points.items() if len(steps) != len(set(steps))}


def test_a_search_stopped_between_an_epochs_logs_and_its_checkpoint_logs_them_once(
    tmp_path, monkeypatch
):
    from nasframe import search
    from nasframe.runstate import RunState

    run = tmp_path / "s"
    args = ["--quiet", "--set", "search.epochs=2", "--set", f"search.checkpoint_every={STEPS}"]
    saved: list[dict] = []
    save = RunState.save
    monkeypatch.setattr(RunState, "save", lambda self: (saved.append(dict(self.pos)), save(self)))
    log_epoch = search._SearchRun._log_epoch

    def killed_after_the_second_epochs_logs(self, epoch, *rest):
        log_epoch(self, epoch, *rest)
        if epoch == 1:
            raise KeyboardInterrupt  # as a kill there: no checkpoint of the epoch's end

    monkeypatch.setattr(search._SearchRun, "_log_epoch", killed_after_the_second_epochs_logs)
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(run), *args]) == 130
    # every epoch's own checkpoint comes after its logs; none at its last iteration before them
    assert [(p["epoch"], p["global_step"]) for p in saved] == [(1, STEPS)]
    monkeypatch.undo()
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    points = _points(run)
    assert points["train/loss"] == [STEPS, 2 * STEPS] and not _twice(points)


def test_a_run_restarted_from_its_beginning_shows_its_curves_once(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path, "search")
    expected = _points(run)
    for name in ("checkpoint.pt", "summary.json", "arch.yaml"):  # killed before its checkpoint
        (run / name).unlink()
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert "starting it from the beginning" in capsys.readouterr().err
    assert _points(run) == expected


def test_a_resume_that_ends_a_run_again_logs_its_hparams_once(runs, tmp_path):
    run = _copy(runs, tmp_path, "search")
    _no_summary(run)
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert main(["search", "--resume", str(run), "--quiet", "--set", "search.epochs=2"]) == 0
    points = _points(run)
    hparams = {tag: steps for tag, steps in points.items() if tag.startswith("hparam/")}
    assert hparams and all(steps == [0] for steps in hparams.values()) and not _twice(points)


def _signal_in(monkeypatch, cls: type, method: str, when) -> None:
    """Send this process a SIGTERM at the start of ``cls.method`` when ``when(self)`` holds, as a
    scheduler would (the run's own handler takes it)."""
    import os
    import signal

    original = getattr(cls, method)

    def signalled(self, *args, **kwargs):
        if when(self):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, signalled)


def test_a_signal_during_the_last_epochs_end_stops_the_search_before_its_results(
    runs, tmp_path, capsys, monkeypatch
):
    """It was taken and ignored: the run went on to its results and ended with status 0."""
    from nasframe import search

    run = tmp_path / "s"
    _signal_in(monkeypatch, search._SearchRun, "_end_epoch", lambda self: True)
    space = str(SPACES / "digits_prune.yaml")
    assert main(["search", space, "--out", str(run), *ONE_EPOCH]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "stopped by signal 15 after epoch 1 of 1; checkpoint written; continue with: "
        f"nasframe search --resume {run}"
    )
    assert not (run / "summary.json").exists() and not (run / "arch.yaml").exists()
    monkeypatch.undo()
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    assert (run / "arch.yaml").read_text() == (runs["search"] / "arch.yaml").read_text()
    assert _timeless(_summary(run)) == _timeless(_summary(runs["search"]))
    assert not _twice(_points(run))


def test_a_signal_before_the_growth_baseline_stops_the_training_there(
    tmp_path, capsys, monkeypatch
):
    """The baseline is a second training: a scheduler's SIGTERM just before it was ignored for
    all of it."""
    from nasframe import train

    _growth_arch(tmp_path / "arch.yaml", epochs=1)
    run = tmp_path / "grown"
    _signal_in(monkeypatch, train._TrainRun, "_end_epoch", lambda self: self.run_dir == run)
    assert main(["train", str(tmp_path / "arch.yaml"), "--out", str(run), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "stopped by signal 15 after epoch 1 of 1; checkpoint written; continue with: "
        f"nasframe train --resume {run}"
    )
    assert not (run / "full_width").exists() and not (run / "summary.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert 0 <= _summary(run)["growth"]["full_width_test_acc"] <= 1


@pytest.mark.parametrize("kind", ["search", "train"])
def test_a_stop_at_an_epochs_last_step_ends_that_epoch_first(tmp_path, capsys, monkeypatch, kind):
    """It stopped before the epoch's end, which the resume then ran with no step: its speed
    points were lost, and the resume said "at epoch 1, step 10" of 10."""
    from nasframe import search, train

    two = ["--quiet", "--set", f"{kind}.epochs=2"]
    source = str(SPACES / "digits.yaml")
    if kind == "train":
        assert main(["search", source, "--out", str(tmp_path / "s"), *ONE_EPOCH]) == 0
        source = str(tmp_path / "s" / "arch.yaml")
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main([kind, source, "--out", str(ref), *two]) == 0
    cls, method = (
        (search._SearchRun, "_iteration") if kind == "search" else (train._TrainRun, "_step")
    )
    last = lambda self: self.pos["epoch"] == 0 and self.pos["step"] == self.steps - 1  # noqa: E731
    _signal_in(monkeypatch, cls, method, last)
    capsys.readouterr()
    assert main([kind, source, "--out", str(run), *two]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "stopped by signal 15 after epoch 1 of 2; checkpoint written; continue with: "
        f"nasframe {kind} --resume {run}"
    )
    monkeypatch.undo()
    assert main([kind, "--resume", str(run)]) == 0
    assert f"resuming {run} at epoch 2, step 0" in capsys.readouterr().err
    assert _points(run).keys() == _points(ref).keys()
    assert _points(run) == _points(ref)  # sys/step_time and sys/samples_per_s too
    assert _timeless(_summary(run)) == _timeless(_summary(ref))


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_a_search_stopped_after_its_selection_keeps_it_and_logs_it_once(
    tmp_path, capsys, monkeypatch, method
):
    """A stop between the logged selection and summary.json selected again on resume and logged
    select/* (and an evolution's select/best_score_by_generation) a second time at the same
    steps; the checkpoint now holds the selection made."""
    from nasframe import search

    sets = ["search.select.candidates=12", f"search.select.method={method}"]
    if method == "evolution":
        sets.append("search.select.population=4")
    args = [*ONE_EPOCH, *[x for kv in sets for x in ("--set", kv)]]
    space = str(SPACES / "digits.yaml")
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["search", space, "--out", str(ref), *args]) == 0

    def killed(self):  # as a kill once the selection is logged: nothing after it
        raise KeyboardInterrupt

    monkeypatch.setattr(search._SearchRun, "log_hparams", killed)
    assert main(["search", space, "--out", str(run), *args]) == 130
    assert not (run / "summary.json").exists()
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            "while writing the results; the checkpoint is written: finish with nasframe search "
            f"--resume {run}"
        )
    )  # it said "before a run's loop started; no checkpoint written"
    monkeypatch.undo()

    def not_again(*args, **kwargs):
        raise AssertionError("selected again")

    monkeypatch.setattr(search, "run_selection", not_again)
    capsys.readouterr()
    assert main(["search", "--resume", str(run)]) == 0
    assert "final selection: made and logged before the stop; kept" in capsys.readouterr().err
    assert (run / "arch.yaml").read_text() == (ref / "arch.yaml").read_text()
    assert _timeless(_summary(run)) == _timeless(_summary(ref))
    points = _points(run)
    assert points == _points(ref) and not _twice(points)
    assert "select/valid_loss" in points
    if method == "evolution":  # one point a generation, as in the uninterrupted run
        assert len(points["select/best_score_by_generation"]) > 1
    # a resume with other selection settings selects again, drawing as a new run with them
    # would (the checkpoint holds the strategy as it was before the first selection's draws)
    monkeypatch.undo()
    (run / "summary.json").unlink()
    other = ["--set", "search.select.candidates=8"]
    assert main(["search", "--resume", str(run), *other]) == 0
    assert "made and logged before the stop" not in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert main(["search", space, "--out", str(fresh), *args, *other]) == 0
    assert (run / "arch.yaml").read_text() == (fresh / "arch.yaml").read_text()
    assert _summary(run)["selection"] == _summary(fresh)["selection"]
    # so does one with another seed (the selection draws with it)
    (run / "summary.json").unlink()
    assert main(["search", "--resume", str(run), *other, "--set", "seed=1"]) == 0
    assert "made and logged before the stop" not in capsys.readouterr().err


def test_the_stop_messages_say_when_and_how_to_go_on():
    from nasframe.interrupt import StopFlag, stopped

    flag = StopFlag()
    flag.signal = 15
    assert str(stopped(flag, "after step 7", "train", "runs/t")) == (
        "stopped by signal 15 after step 7; checkpoint written; continue with: nasframe train "
        "--resume runs/t"
    )
    flag.signal = None  # another torchrun process was signalled
    when = "during the final selection (the search itself is checkpointed)"
    assert str(stopped(flag, when, "search", "runs/s", then="select again with")) == (
        "stopped by signal on another process during the final selection (the search itself is "
        "checkpointed); select again with: nasframe search --resume runs/s"
    )
