"""`nasframe validate`: the strategy check it always does, and `--data`, which sets up each run
(dataset, networks, optimizer) without running or writing anything."""

from __future__ import annotations

import os

from conftest import SPACES

from nasframe.cli import main


def _line_of(path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


def test_a_strategy_option_typo_is_caught_without_running(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    text = (SPACES / "digits.yaml").read_text()
    cfg.write_text(text.replace("  lam: 2\n", "  lam: 2\n  strategy_options: {alhpa: 2}\n"))
    assert main(["validate", str(cfg), str(SPACES / "mlp.yaml")]) == 2
    out, err = capsys.readouterr()
    line = _line_of(cfg, "alhpa")
    assert err.strip() == (
        f"{cfg}:{line}: search.strategy_options.alhpa: strategy 'asng' takes no option 'alhpa' "
        "(it takes alpha, delta_max, init_delta, theta, theta_int); did you mean 'alpha'?"
    )
    assert out == f"{SPACES / 'mlp.yaml'}: ok (search config)\n"


def test_data_checks_what_only_the_data_can_tell(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    # digits are 8x8 images: a 1-D layout fits the schema but not the data
    cfg.write_text((SPACES / "digits.yaml").read_text().replace("layout: conv2d", "layout: conv1d"))
    assert main(["validate", str(cfg)]) == 0
    assert main(["validate", "--data", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = _line_of(cfg, "layout:")
    assert len(err) == 1 and err[0].startswith(f"{cfg}:{line}: space.layout: 'conv1d' needs ")


def test_missing_dataset_files_are_found_by_data_only(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    text = (SPACES / "asng_nas_cifar10.yaml").read_text()
    cfg.write_text(text.replace("root: data", f"root: {tmp_path / 'nowhere'}"))
    assert main(["validate", str(cfg)]) == 0
    assert main(["validate", "--data", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{cfg}:{_line_of(cfg, str(tmp_path / 'nowhere'))}: data.root: " in err
        and "is not a directory" in err
    )


def test_data_sets_up_searches_and_trainings_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arch = tmp_path / "arch.yaml"
    assert (
        main(
            [
                "search",
                str(SPACES / "mlp.yaml"),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                "--set",
                "search.epochs=1",
            ]
        )
        == 0
    )
    arch.write_text((tmp_path / "r" / "arch.yaml").read_text())
    before = sorted(os.listdir(tmp_path))
    assert main(["validate", "--data", str(SPACES / "digits.yaml"), str(arch)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"{SPACES / 'digits.yaml'}: ok (search set up: digits, 650 train / 650 valid)"
    assert out[-1].startswith(f"{arch}: ok (training set up: digits, ")
    assert sorted(os.listdir(tmp_path)) == before


def test_a_retraining_budget_no_width_fits_is_found_by_data(tmp_path, capsys):
    import numpy as np

    from nasframe import SearchSpace, load_config
    from nasframe.yaml_io import dump_yaml

    space = SearchSpace(load_config(SPACES / "cells_digits.yaml")[0])
    arch = space.freeze(space.random_sample(np.random.default_rng(0)))
    arch["space"]["retrain"] = {"param_budget": 100}
    cfg = tmp_path / "arch.yaml"
    dump_yaml(arch, cfg)
    assert main(["validate", str(cfg)]) == 0
    assert main(["validate", "--data", str(cfg)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{cfg}:") and ": space.retrain.channels: 3 cells of " in line
    assert "over space.retrain.param_budget of 100; no width fits it" in line


def test_optimizer_options_a_run_would_refuse_are_caught_without_data(tmp_path, capsys):
    text = (SPACES / "digits.yaml").read_text()
    search = "{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}"
    train = "{name: adam, lr: 3.0e-3}"
    assert search in text and train in text
    cases = [
        (
            search,
            "{name: sgd, lr: 0.05, momentum: abc}",
            "search.optimizer.momentum: expected a number, got 'abc'",
        ),
        (
            search,
            "{name: sgd, lr: 0.05, momentum: -0.5}",
            "search.optimizer.momentum: optimizer 'sgd': Invalid momentum value: -0.5",
        ),
        (
            train,
            "{name: adam, lr: 3.0e-3, betas: [2, 0.9]}",
            "train.optimizer.betas: optimizer 'adam': Invalid beta parameter at index 0: 2",
        ),
    ]
    for i, (old, new, said) in enumerate(cases):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(text.replace(old, new))
        assert main(["validate", str(cfg)]) == 2
        line = _line_of(cfg, new)
        assert capsys.readouterr().err.strip() == f"{cfg}:{line}: {said}"
    fused = tmp_path / "fused.yaml"  # device-dependent: left to the run, on its device
    fused.write_text(text.replace(train, "{name: adam, lr: 3.0e-3, fused: true}"))
    assert main(["validate", str(fused)]) == 0


def test_validate_takes_set_as_the_runs_do(tmp_path, capsys):
    assert main(["validate", str(SPACES / "digits.yaml"), "--set", "search.lam=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("--set search.lam=1: search.lam: ") and "2" in err
    args = ["validate", str(SPACES / "digits.yaml"), str(SPACES / "mlp.yaml")]
    assert main([*args, "--set", "search.epochs=3"]) == 0
    assert capsys.readouterr().out.count(": ok (search config)") == 2


def test_checking_torchs_optimizers_imports_no_compiler(tmp_path):
    """torch's optimizers are checked without parameters: their first parameter group would
    import torch._dynamo, seconds of a validate that builds nothing else."""
    import subprocess
    import sys

    code = (
        "import sys; from nasframe.cli import main; "
        f"rc = main(['validate', {str(SPACES / 'digits.yaml')!r}]); "
        "print(rc, 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "0 False"


def test_a_gradient_centralized_optimizer_validates(tmp_path, capsys):
    text = (SPACES / "digits.yaml").read_text()
    old = "{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}"
    cfg = tmp_path / "gc.yaml"
    cfg.write_text(text.replace(old, "{name: sgd, lr: 0.05, momentum: 0.9, gc: conv}"))
    assert main(["validate", str(cfg)]) == 0
    cfg.write_text(text.replace(old, "{name: sgd, lr: 0.05, momentum: -0.9, gc: conv}"))
    assert main(["validate", str(cfg)]) == 2
    assert "search.optimizer.momentum: " in capsys.readouterr().err


def test_optimizer_options_a_run_cannot_use_are_refused_at_their_key(tmp_path, capsys):
    text = (SPACES / "digits.yaml").read_text()
    old = "{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}"
    cases = [
        (
            "{name: sgd, lr: 0.05, momentum: 0.9, differentiable: true}",
            "search.optimizer.differentiable: not supported",
        ),
        (
            "{name: sgd_gc, lr: 0.05, gc: conv}",
            "search.optimizer.gc: unsupported base 'sgd_gc': SGD_GC already applies",
        ),
    ]
    for i, (new, said) in enumerate(cases):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(text.replace(old, new))
        assert main(["validate", str(cfg)]) == 2
        line = _line_of(cfg, new)
        assert capsys.readouterr().err.strip().startswith(f"{cfg}:{line}: {said}")
    cfg = tmp_path / "capturable.yaml"  # a CPU run: refused where the run builds it
    cfg.write_text(text.replace(old, "{name: adam, lr: 0.001, capturable: true}"))
    assert main(["validate", "--data", str(cfg), "--set", "device=cpu"]) == 2
    assert (
        "search.optimizer.capturable: needs the parameters on a CUDA device, these are on cpu"
        in (capsys.readouterr().err)
    )


def test_a_run_whose_output_pipe_closes_stops_with_a_failing_status(tmp_path):
    import subprocess

    from conftest import cli_command

    cmd = cli_command("search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "run"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.readline()  # the first line, then the reader goes away (`| head -1`)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
