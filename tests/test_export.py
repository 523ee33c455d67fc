"""`nasframe export`: a trained network as a .pt2 file that PyTorch alone loads and runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SPACES

from nasframe import SearchSpace, build_network, load_config
from nasframe.cli import main
from nasframe.yaml_io import dump_yaml


def _trained(tmp_path, spec: str, seed: int) -> tuple:
    """A random architecture of ``spec``, trained for one epoch: its run directory and network."""
    config, _ = load_config(SPACES / spec)
    space = SearchSpace(config)
    arch = tmp_path / "arch.yaml"
    dump_yaml(space.freeze(space.random_sample(np.random.default_rng(seed))), arch)
    run = tmp_path / "train"
    args = ["train", str(arch), "--out", str(run), "--quiet", "--set", "train.epochs=1"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    trained, _ = load_config(run / "config.yaml")
    net = build_network(trained, summary["sample_shape"], summary["num_classes"])
    net.load_state_dict(torch.load(run / "weights.pt", weights_only=True))
    return run, net.eval(), summary["sample_shape"]


@pytest.mark.parametrize("spec", ["digits.yaml", "cells_digits.yaml"])
def test_the_exported_program_computes_what_the_network_does(spec, tmp_path, capsys):
    run, net, shape = _trained(tmp_path, spec, seed=4)
    assert main(["export", str(run)]) == 0
    assert f"exported {run / 'model.pt2'}: input (batch, {', '.join(map(str, shape))})" in (
        capsys.readouterr().out
    )
    program = torch.export.load(run / "model.pt2").module()
    for n in (1, 5):
        x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            assert torch.allclose(program(x), net(x), atol=1e-6)


def test_the_exported_file_needs_only_pytorch(tmp_path):
    run, net, shape = _trained(tmp_path, "digits.yaml", seed=1)
    assert main(["export", str(run), "--out", str(tmp_path / "m.pt2")]) == 0
    code = (
        "import sys, torch\n"
        f"m = torch.export.load({str(tmp_path / 'm.pt2')!r}).module()\n"
        f"print(m(torch.zeros(3, *{tuple(shape)!r})).sum().item())\n"
        "assert not any(k.startswith('nasframe') for k in sys.modules), 'nasframe was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = net(torch.zeros(3, *shape)).sum().item()
    assert float(done.stdout) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_a_run_from_before_shapes_were_recorded_reads_its_data(tmp_path):
    run, net, shape = _trained(tmp_path, "digits.yaml", seed=2)
    summary = json.loads((run / "summary.json").read_text())
    del summary["sample_shape"], summary["num_classes"]
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["export", str(run)]) == 0
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(torch.export.load(run / "model.pt2").module()(x), net(x), atol=1e-6)


def test_what_cannot_be_exported_is_one_clear_line(tmp_path, capsys):
    run, _, _ = _trained(tmp_path, "digits.yaml", seed=3)
    assert main(["export", str(tmp_path)]) == 2
    assert "no weights.pt and config.yaml here; export a finished `nasframe train` run" in (
        capsys.readouterr().err
    )
    other = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    dump_yaml(other.freeze(other.random_sample(np.random.default_rng(99))), run / "config.yaml")
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{run / 'weights.pt'}: these weights do not fit the architecture")


def test_a_pruned_network_exports_from_its_own_directory(tmp_path):
    run, _, shape = _trained(tmp_path, "digits.yaml", seed=5)
    assert main(["prune", str(run), "--threshold", "0.5"]) == 0
    pruned = run / "pruned"
    assert main(["export", str(pruned)]) == 0
    summary = json.loads((pruned / "summary.json").read_text())
    arch, _ = load_config(pruned / "arch.yaml")
    net = build_network(arch, summary["sample_shape"], summary["num_classes"]).eval()
    net.load_state_dict(torch.load(pruned / "weights.pt", weights_only=True))
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.allclose(
            torch.export.load(pruned / "model.pt2").module()(x), net(x), atol=1e-6
        )
    assert summary["params_after"] == sum(p.numel() for p in net.parameters())
