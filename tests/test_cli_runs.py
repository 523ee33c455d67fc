"""The CLI end to end on digits: search, export, retrain, resume after a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import (
    ROOT,
    SPACES,
    cli_command,
    interrupt_at_first_checkpoint,
    run_cli,
    signal_at_first_checkpoint,
)

from nasframe import SearchSpace, load_config
from nasframe.cli import main

FAST = ["--set", "search.epochs=2", "--set", "train.epochs=2", "--quiet"]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "search"
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *FAST]) == 0
    return out


def test_search_writes_a_complete_run_directory(search_run):
    names = {p.name for p in search_run.iterdir()}
    assert {"config.yaml", "checkpoint.pt", "arch.yaml", "summary.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    summary = json.loads((search_run / "summary.json").read_text())
    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    assert summary["categories"] == space.categories and summary["paths"] == space.paths
    theta = summary["theta"]
    assert len(theta) == len(space.categories)
    for row, c in zip(theta, space.categories, strict=True):
        assert abs(sum(row[:c]) - 1) < 1e-9 and all(v == 0 for v in row[c:])
    assert summary["iterations"] == 2 * (650 // 64)
    assert 0 <= summary["final"]["valid/acc"] <= 1


def test_arch_yaml_is_the_most_likely_architecture_and_trains(search_run, tmp_path, capsys):
    summary = json.loads((search_run / "summary.json").read_text())
    arch = yaml.safe_load((search_run / "arch.yaml").read_text())
    cfg, _ = load_config(search_run / "arch.yaml")
    assert cfg.space_hash == summary["space_hash"]
    s1 = arch["space"]["stages"][0]
    assert s1["depth"] == summary["most_likely"]["space.stages.s1.depth"]
    assert s1["width"] == summary["most_likely"]["space.stages.s1.width"]
    assert len(s1["layers"]) == s1["depth"]
    assert s1["layers"][0]["op"] == summary["most_likely"]["space.stages.s1.layer0.op"]
    assert main(["validate", str(search_run / "arch.yaml")]) == 0
    out = tmp_path / "train"
    assert main(["train", str(search_run / "arch.yaml"), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "summary.json").read_text())
    assert 0.2 < result["test_acc"] <= 1.0  # 2 epochs on digits: far above chance (0.1)
    assert (out / "weights.pt").exists()


def test_training_a_space_with_open_choices_is_refused(tmp_path, capsys):
    assert main(["train", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "open choices" in err
    line = next(
        i
        for i, text in enumerate((SPACES / "digits.yaml").read_text().splitlines(), 1)
        if text.strip().startswith("depth:")  # s1's depth, the first open choice
    )
    assert err.startswith(f"{SPACES / 'digits.yaml'}:{line}: space.stages.s1.depth: the config ")
    assert not (tmp_path / "t").exists()  # refused before a run directory was made


@pytest.mark.parametrize("space", ["digits.yaml", "cells_digits.yaml"])
def test_training_a_space_leaves_no_run_directory_behind(tmp_path, monkeypatch, capsys, space):
    monkeypatch.chdir(tmp_path)  # the default runs/NAME-train-TIME
    assert main(["train", str(SPACES / space), "--quiet"]) == 2
    assert "open choices" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_out_dir_holding_a_run_is_never_overwritten(search_run, capsys):
    before = (search_run / "checkpoint.pt").read_bytes()
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(search_run), *FAST]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (search_run / "checkpoint.pt").read_bytes() == before


def test_resume_refuses_a_checkpoint_from_another_space(search_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("[16, 32]", "[16, 48]"))
    assert main(["search", "--resume", str(run), "--quiet"]) == 2
    assert "different search space" in capsys.readouterr().err


def _copy_with_files(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}


def test_resume_with_another_config_is_refused_and_names_the_difference(
    search_run, tmp_path, capsys
):
    run, before = _copy_with_files(search_run, tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text((SPACES / "digits.yaml").read_text().replace("[16, 32]", "[16, 48]"))
    assert main(["search", str(other), "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{other}:20: space.stages.s2.width.choices.1: 48 here, but the run ")
    assert "without --resume" in err
    # With the run's own settings (the file plus the run's --set), it differs only in epochs.
    same_train = ["--set", "train.epochs=2", "--quiet"]
    assert main(["search", str(SPACES / "digits.yaml"), "--resume", str(run), *same_train]) == 2
    err = capsys.readouterr().err
    cfg, _ = load_config(SPACES / "digits.yaml")
    assert f": search.epochs: {cfg.search.epochs} here, but the run {run} has 2;" in err
    assert f"Resume with `nasframe search --resume {run} --set train.epochs=2`; " in err
    assert f"add --set search.epochs={cfg.search.epochs}" in err
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_resume_with_the_runs_own_config_goes_on(search_run, tmp_path, capsys):
    run, _ = _copy_with_files(search_run, tmp_path)
    sets = ["--set", "search.epochs=3", "--set", "train.epochs=2", "--quiet"]
    assert main(["search", str(SPACES / "digits.yaml"), "--resume", str(run), *sets]) == 0
    assert "resuming" in capsys.readouterr().err
    assert load_config(run / "config.yaml")[0].search.epochs == 3  # what the run went on with


def _search_cmd(out, *extra):
    return cli_command(
        "search",
        str(SPACES / "digits.yaml"),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "search.epochs=6",
        "--set",
        "search.checkpoint_every=3",
        *extra,
    )


_AUGMENT = ("search.augment.crop_padding=2", "search.augment.flip=true", "search.augment.cutout=4")


@pytest.mark.parametrize(
    "sig, extra",
    [
        (signal.SIGKILL, ()),
        (signal.SIGINT, tuple(x for kv in _AUGMENT for x in ("--set", kv))),  # with augmentation
        (signal.SIGKILL, ("--set", "space.stages.s1.width.ordinal=true")),  # a Gaussian in θ
    ],
)
def test_killed_search_resumes_to_exactly_the_same_result(tmp_path, sig, extra):
    ref = tmp_path / "ref"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # bit-for-bit needs the same thread count
    subprocess.run(_search_cmd(ref, *extra), check=True, capture_output=True, cwd=ROOT, env=env)
    run = tmp_path / "run"
    stopped = signal_at_first_checkpoint(_search_cmd(run, *extra), run, sig)
    if sig == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode == 130 and "--resume" in stopped.stderr
    resumed = run_cli("search", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((run / "summary.json").read_text())
    assert b["theta"] == a["theta"]
    assert b["final"] == a["final"]
    assert (run / "arch.yaml").read_text() == (ref / "arch.yaml").read_text()


def test_shipped_json_schema_is_up_to_date():
    from nasframe.config import json_schema

    shipped = json.loads((ROOT / "nasframe" / "schema" / "config.schema.json").read_text())
    assert shipped == json_schema(), (
        "regenerate with: nasframe schema --out nasframe/schema/config.schema.json"
    )


def test_config_reference_doc_is_up_to_date():
    from nasframe.reference_doc import config_reference

    doc = (ROOT / "docs" / "config.md").read_text()
    assert doc == config_reference(), (
        "regenerate with: python -m nasframe.reference_doc > docs/config.md"
    )


def test_tensorboard_shows_the_learning_rate_the_optimizer_holds(search_run):
    """No tag showed the learning rate: an optimizer that ignored it, or a schedule gone wrong
    on a resume, could not be seen."""
    import math

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(search_run))
    acc.Reload()
    steps = 650 // 64  # an epoch of digits.yaml's search; 2 epochs (FAST), cosine from 0.05
    got = [(e.step, e.value) for e in acc.Scalars("train/lr")]
    want = [(t, 0.05 * (1 + math.cos(math.pi * t / (2 * steps))) / 2) for t in (steps, 2 * steps)]
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-7)


@pytest.mark.parametrize("command", ["search", "train"])
def test_the_console_and_tensorboard_give_an_epochs_speed_alike(tmp_path, capsys, command):
    """The console's samples/s counted the epoch's test pass (and, in a search, TensorBoard's
    did too): two figures under one name."""
    import re

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(space.freeze([0] * len(space.choices))))
    source = str(SPACES / "digits.yaml") if command == "search" else str(arch)
    sets = ["--set", "search.epochs=2", "--set", "train.epochs=2"]
    assert main([command, source, "--out", str(tmp_path / "r"), *sets]) == 0
    console = [int(m) for m in re.findall(r"  (\d+) samples/s", capsys.readouterr().err)]
    acc = EventAccumulator(str(tmp_path / "r"))
    acc.Reload()
    logged = [e.value for e in acc.Scalars("sys/samples_per_s")]  # float32 there
    assert len(console) == len(logged) == 2
    assert all(abs(c - v) <= 1 for c, v in zip(console, logged, strict=True)), (console, logged)


def test_tensorboard_events_hold_the_basic_tags(search_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(search_run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in [
        "train/loss",
        "train/acc",
        "valid/loss",
        "valid/acc",
        "test/acc",
        "asng/delta",
        "asng/Delta",
        "asng/snr",
        "arch/theta/space.stages.s1.layer0.op/sep_conv3",
        "arch/entropy/space.stages.s2.width",
        "sys/step_time",
        "sys/samples_per_s",
    ]:
        assert tag in tags, tag
    summary = json.loads((search_run / "summary.json").read_text())
    k = summary["paths"].index("space.stages.s1.layer0.op")
    last = acc.Scalars("arch/theta/space.stages.s1.layer0.op/sep_conv3")[-1]
    assert last.step == summary["iterations"]
    assert abs(last.value - summary["theta"][k][1]) < 1e-6
    assert len(acc.Scalars("train/loss")) == 2  # one point per epoch
    assert "arch/theta" in acc.Tags()["images"]
    images = acc.Images("arch/theta")
    assert [i.step for i in images] == [e.step for e in acc.Scalars("train/loss")]  # 2 epochs
    assert images[-1].width > 200 and images[-1].height > 100
    assert "arch/most_likely/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("arch/most_likely/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "s1: conv3 -> " in text
    hparams = acc.PluginTagToContent("hparams")  # KeyError if none were written here
    assert "_hparams_/session_start_info" in hparams


def test_training_resume_refuses_another_architecture_of_the_same_space(search_run, tmp_path):
    arch = yaml.safe_load((search_run / "arch.yaml").read_text())
    out = tmp_path / "train"
    first = tmp_path / "a.yaml"
    first.write_text(yaml.safe_dump(arch))
    assert main(["train", str(first), "--out", str(out), "--set", "train.epochs=1", "--quiet"]) == 0
    layer = arch["space"]["stages"][0]["layers"][0]
    layer["op"] = "max_pool3" if layer["op"] != "max_pool3" else "identity"  # no weights either way
    other = tmp_path / "b.yaml"
    other.write_text(yaml.safe_dump(arch))
    done = run_cli("train", str(other), "--resume", str(out), "--set", "train.epochs=1")
    assert done.returncode == 2
    assert ": space.stages.s1." in done.stderr and "Traceback" not in done.stderr
    (out / "config.yaml").write_text(other.read_text())  # the run's own config edited
    done = run_cli("train", "--resume", str(out), "--set", "train.epochs=2")
    assert done.returncode == 2
    assert "a different architecture" in done.stderr and "Traceback" not in done.stderr


def test_training_logs_the_data_loss_speed_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    arch = tmp_path / "arch.yaml"
    text = (SPACES / "digits_prune.yaml").read_text()
    for old, new in [("{choices: [0, 1]}", "1"), ("{choices: [256, 512]}", "256")]:
        text = text.replace(old, new)
    arch.write_text(text.replace("op: {choices: [dense, identity]}", "op: dense"))
    out = tmp_path / "t"
    args = ["--set", "train.epochs=1", "--set", "train.l2=100", "--set", "prune=null", "--quiet"]
    assert main(["train", str(arch), "--out", str(out), *args]) == 0
    acc = EventAccumulator(str(out))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "test/acc", "sys/step_time", "sys/samples_per_s"} <= set(tags)
    # The penalty (l2/2 * sum of squares: thousands here) is not in the cross-entropy shown.
    assert acc.Scalars("train/loss")[-1].value < 10
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def test_search_stops_when_converged_and_a_resume_adds_nothing(tmp_path):
    out = tmp_path / "s"
    args = ["--set", "search.stop_when_converged=0.3", "--quiet"]  # reached within an epoch or two
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] < summary["epochs"] == 15
    assert summary["iterations"] == summary["epochs_run"] * (650 // 64)
    valid_d = sum(c > 1 for c in summary["categories"])
    cap = 1 - 1 / valid_d
    rows = zip(summary["theta"], summary["categories"], strict=True)
    assert min(max(row[:c]) for row, c in rows) >= 0.3 * cap
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == summary["iterations"]


def test_a_plugin_strategys_convergence_is_told_in_its_own_terms(tmp_path, capsys, plugin):
    """The message gave ASNG's meaning (every most likely option at that fraction of its cap)
    for any strategy's converged()."""
    from nasframe import RandomSearch

    class Settles(RandomSearch):
        def converged(self, fraction):
            return True

    plugin("strategy", "test_settles", Settles)
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "s")]
    sets = ["search.strategy=test_settles", "search.stop_when_converged=0.5", "log.progress=false"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    err = capsys.readouterr().err
    assert (
        "converged after epoch 1 of 15: strategy 'test_settles' says it converged at 0.5 "
        "(search.stop_when_converged)"
    ) in err, err


def test_a_run_resumed_after_an_epochs_checkpoint_keeps_every_epoch_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasframe", "search", str(SPACES / "digits.yaml"), "--out"]
    cmd += [str(run), "--quiet", "--set", "search.epochs=3"]
    signal_at_first_checkpoint(cmd, run, signal.SIGKILL)  # right after the first epoch's
    resumed = run_cli("search", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20, 30]  # 650 // 64 steps an epoch


def test_resuming_with_overrides_records_them_in_the_runs_config(search_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    assert main(["search", "--resume", str(run), "--set", "search.epochs=3", "--quiet"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["search"]["epochs"] == 3
    assert json.loads((run / "summary.json").read_text())["iterations"] == 3 * (650 // 64)


@pytest.mark.parametrize("more", [3, 4])
def test_resuming_with_more_epochs_anneals_the_cosine_schedule_over_the_new_length(
    search_run, tmp_path, capsys, more
):
    """The restored schedule reached 0 at the old end and rose again (cosine is periodic past
    its length): at 2x the old length a longer search ended at its full learning rate."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    steps = 650 // 64  # digits.yaml's batch of 64
    before = torch.load(run / "checkpoint.pt", weights_only=True)["schedule"]["T_max"]
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--set", f"search.epochs={more}"]) == 0
    said = capsys.readouterr()
    note = f"the cosine learning-rate schedule now anneals over {more * steps} steps (it was 20)"
    assert note in said.out + said.err
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert before < ckpt["schedule"]["T_max"] == more * steps
    assert ckpt["schedule"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-9)  # annealed, at its end
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_a_training_does_not_need_the_plugins_of_the_search_that_found_it(
    search_run, tmp_path, capsys
):
    """An arch.yaml keeps the search section of the search that found it: trained, exported or
    validated where that search's strategy and optimizer plugins are not installed, it was
    refused ('unknown strategy'), though a training uses neither."""
    text = (search_run / "arch.yaml").read_text()
    assert "strategy: asng" in text and "name: sgd" in text
    arch = tmp_path / "arch.yaml"
    arch.write_text(
        text.replace("strategy: asng", "strategy: acme_pbil").replace("name: sgd", "name: acme_sgd")
    )
    out = tmp_path / "t"
    assert main(["validate", str(arch)]) == 0
    assert main(["train", str(arch), "--out", str(out), *FAST]) == 0
    assert main(["train", "--resume", str(out), "--set", "train.epochs=3", "--quiet"]) == 0
    assert main(["export", str(out)]) == 0
    capsys.readouterr()
    search = tmp_path / "space.yaml"  # a search uses them: refused there, at their lines
    search.write_text(
        (SPACES / "digits.yaml").read_text().replace("strategy: asng", "strategy: acme_pbil")
    )
    assert main(["validate", str(search)]) == 2
    assert "search.strategy: unknown strategy 'acme_pbil'" in capsys.readouterr().err


def test_default_run_directories_are_never_shared(tmp_path, monkeypatch):
    from nasframe.run_dirs import new_run_dir

    first = new_run_dir(tmp_path / "runs" / "x-20261130-120000")
    second = new_run_dir(tmp_path / "runs" / "x-20261130-120000")  # the same second
    assert first.is_dir() and second == first.with_name("x-20261130-120000-2")
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(SPACES / "digits_prune.yaml"), "--set", "search.epochs=1"]) == 0
    (made,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("digits-mlp-prune")]
    assert (made / "summary.json").exists() and "-train-" not in made.name


def test_theta_images_are_drawn_at_evenly_spaced_epochs_only(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "search"
    args = ["--set", "search.epochs=3", "--set", "log.theta_images=1", "--quiet"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *args]) == 0
    acc = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    epochs = [e.step for e in acc.Scalars("train/loss")]
    assert len(epochs) == 3
    assert [i.step for i in acc.Images("arch/theta")] == epochs[-1:]


@pytest.mark.parametrize("count", [0, 1, 2, 7, 20, 40])
def test_evenly_due_spreads_count_epochs_and_ends_on_the_last(count):
    from nasframe.tblog import evenly_due

    for epochs in range(1, 45):
        due = [e for e in range(epochs) if evenly_due(e, epochs, count)]
        assert len(due) == min(count, epochs)
        if count:
            assert due[-1] == epochs - 1
            gaps = {b - a for a, b in zip([-1, *due], due, strict=False)}
            assert max(gaps) - min(gaps) <= 1


def test_test_accuracy_with_a_last_batch_of_one_sample(tmp_path):
    # digits' 497 test samples are 4 batches of 124 and one sample, which BatchNorm cannot
    # normalise with batch statistics alone: it joins the batch before.
    args = ["--set", "search.batch_size=124", "--set", "search.epochs=1", "--quiet"]
    assert main(["search", str(SPACES / "mlp.yaml"), "--out", str(tmp_path / "s"), *args]) == 0
    assert 0 <= json.loads((tmp_path / "s" / "summary.json").read_text())["final"]["test/acc"] <= 1


def test_show_prints_summary_and_architecture(search_run, capsys):
    assert main(["show", str(search_run)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((search_run / "summary.json").read_text())
    assert f"iterations: {summary['iterations']}" in out
    width = summary["most_likely"]["space.stages.s1.width"]
    assert f"s1: conv3 -> {width}, depth " in out
    assert main(["show", str(search_run.parent)]) == 2


def test_show_puts_several_runs_side_by_side(search_run, tmp_path, capsys):
    train = tmp_path / "train"
    assert main(["train", str(search_run / "arch.yaml"), "--out", str(train), *FAST]) == 0
    capsys.readouterr()
    missing = tmp_path / "nothing"
    assert main(["show", str(search_run), str(train), str(missing)]) == 2  # one unreadable
    out, err = capsys.readouterr()
    head, first, second = out.splitlines()
    assert head.split() == [
        "RUN", "KIND", "NAME", "STRATEGY", "EPOCHS", "VALID_ACC", "TEST_ACC", "PARAMS", "MACS",
        "WALL_S",
    ]  # fmt: skip
    found = json.loads((search_run / "summary.json").read_text())
    trained = json.loads((train / "summary.json").read_text())
    assert first.split()[:9] == [
        str(search_run), "search", "digits-cnn", "asng", "2",
        f"{found['final']['valid/acc']:.4f}", f"{found['final']['test/acc']:.4f}",
        str(found["most_likely_parameters"]), str(found["most_likely_macs"]),
    ]  # fmt: skip
    assert second.split()[:9] == [
        str(train), "train", "digits-cnn", "-", "2", "-", f"{trained['test_acc']:.4f}",
        str(trained["parameters"]), str(trained["macs"]),
    ]  # fmt: skip
    # the trained network is the search's most likely one: counted alike
    assert (trained["parameters"], trained["macs"]) == (
        found["most_likely_parameters"],
        found["most_likely_macs"],
    )
    assert err.strip() == f"{missing}: does not exist"


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):

    import torch

    from nasframe import run_train, validate_data

    cfg, _ = load_config(SPACES / "digits.yaml", ["train.epochs=4", "log.tensorboard=false"])
    space = SearchSpace(cfg)
    arch = validate_data(space.freeze([1] * len(space.paths)))
    ref = run_train(arch, tmp_path / "ref", progress=False)

    run = tmp_path / "run"
    interrupt_at_first_checkpoint(run, lambda: run_train(arch, run, progress=False))
    assert not (run / "summary.json").exists()
    resumed = run_train(arch, run, resume=True, progress=False)
    assert resumed["test_acc"] == ref["test_acc"]
    assert resumed["train_loss"] == ref["train_loss"]
    a = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)
    b = torch.load(run / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stop_after", [100, 135])  # steps; the second epoch's (81 an epoch)
def test_a_training_stopped_within_its_last_epoch_reports_the_same_train_loss(tmp_path, stop_after):
    """The stop moved the epoch's float32 running sums into the float64 meter and the resumed
    steps summed apart: the epoch's train_loss differed in its last bits (0.6158166226 against
    0.6158166108); the weights were the same."""
    import os

    import torch
    import torch.optim.optimizer as optimizers

    from nasframe import run_train, validate_data
    from nasframe.errors import Interrupted

    sets = ["train.epochs=2", "train.batch_size=16", "log.tensorboard=false"]
    cfg, _ = load_config(SPACES / "digits.yaml", sets)
    space = SearchSpace(cfg)
    arch = validate_data(space.freeze([1] * len(space.paths)))
    ref = run_train(arch, tmp_path / "ref", progress=False)
    steps = [0]

    def stop(optimizer, args, kwargs):
        steps[0] += 1
        if steps[0] == stop_after:
            os.kill(os.getpid(), signal.SIGINT)

    hook = optimizers.register_optimizer_step_post_hook(stop)
    try:
        with pytest.raises(Interrupted, match=f"after step {stop_after}"):
            run_train(arch, tmp_path / "run", progress=False)
    finally:
        hook.remove()
    resumed = run_train(arch, tmp_path / "run", resume=True, progress=False)
    assert resumed["train_loss"] == ref["train_loss"]
    assert resumed["train_acc"] == ref["train_acc"]
    a = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_output_cut_short_by_its_reader_is_not_an_error():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "nasframe", "plugins"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # like `nasframe plugins | head -0`: nobody reads
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and err == ""


def test_a_resume_whose_change_is_refused_leaves_the_runs_config_as_it_was(
    search_run, tmp_path, capsys
):
    run, before = _copy_with_files(search_run, tmp_path)
    sets = ["--set", "search.epochs=3", "--set", "data.options.test_size=0", "--quiet"]
    assert main(["search", "--resume", str(run), *sets]) == 2
    assert "test_size" in capsys.readouterr().err
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["search", "--resume", str(run), "--set", "search.epochs=3", "--quiet"]) == 0


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_run_refused_while_it_sets_up_leaves_no_directory(tmp_path, monkeypatch, capsys, command):
    """A mistake only the dataset finds (after the run directory is reserved) leaves nothing."""
    monkeypatch.chdir(tmp_path)
    source = SPACES / ("mlp.yaml" if command == "search" else "digits_prune.yaml")
    raw = yaml.safe_load(source.read_text())
    if command == "train":
        space = SearchSpace(load_config(source)[0])
        raw = space.freeze([0] * len(space.choices))
    raw["data"] = {"name": "digits", "options": {"test_size": 2000}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main([command, str(cfg), "--quiet"]) == 2
    assert "data.options.test_size" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nor the runs/ it made for the run
    (tmp_path / "runs").mkdir()
    assert main([command, str(cfg), "--quiet"]) == 2
    assert (tmp_path / "runs").is_dir() and list((tmp_path / "runs").iterdir()) == []
    assert main([command, str(cfg), "--quiet", "--out", str(tmp_path / "a" / "b" / "c")]) == 2
    assert not (tmp_path / "a").exists()
    out = tmp_path / "mine"
    out.mkdir()  # a directory the user made is kept, even empty
    assert main([command, str(cfg), "--quiet", "--out", str(out)]) == 2
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_run_interrupted_while_it_sets_up_leaves_no_directory(tmp_path, monkeypatch, command):
    """Ctrl-C (or a crash) before the run is set up: the directory it reserved goes too."""
    import nasframe.search
    import nasframe.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module = nasframe.search if command == "search" else nasframe.train
    monkeypatch.setattr(module, "load_dataset", interrupted)
    config = SPACES / "digits.yaml"
    if command == "train":
        space = SearchSpace(load_config(config)[0])
        config = tmp_path / "arch.yaml"
        config.write_text(yaml.safe_dump(space.freeze([0] * len(space.choices))))
    out = tmp_path / "out" / "run"
    assert main([command, str(config), "--quiet", "--out", str(out)]) == 130
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["search", "train"])
def test_log_progress_false_silences_the_epochs_as_quiet_does(tmp_path, capsys, command):
    config = SPACES / "digits.yaml"
    if command == "train":
        space = SearchSpace(load_config(config)[0])
        config = tmp_path / "arch.yaml"
        config.write_text(yaml.safe_dump(space.freeze([0] * len(space.choices))))
    fast = ["--set", "search.epochs=2", "--set", "train.epochs=2", "--set", "log.tensorboard=false"]
    for progress in ("true", "false"):
        out = tmp_path / progress
        args = [command, str(config), "--out", str(out), *fast, "--set", f"log.progress={progress}"]
        assert main(args) == 0
        printed = capsys.readouterr()
        lines = (printed.out + printed.err).splitlines()
        epochs = [line for line in lines if line.startswith("epoch 2/2")]
        assert len(epochs) == (1 if progress == "true" else 0), epochs
