"""search.precision / train.precision: bf16 autocast of the forward passes, fp32 everything else."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from conftest import SPACES
from torch import nn

from nasframe import ASNG, SearchSpace, load_config
from nasframe.cli import main
from nasframe.network import make_supernet
from nasframe.search_step import search_iteration


def _iteration(precision: str) -> tuple[list[float], set[torch.dtype], nn.Module]:
    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    torch.manual_seed(0)
    net = make_supernet(space, (1, 8, 8), 10)
    seen: set[torch.dtype] = set()
    forward = net.forward

    def recording_forward(*args):
        out = forward(*args)
        seen.add(out.dtype)
        return out

    net.forward = recording_forward
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    strategy = ASNG(space.categories, lam=2, seed=0)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))
    valid = (torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))
    params = list(net.parameters())
    host, _, _ = search_iteration(net, opt, strategy, batch, valid, 2, 5.0, params, precision)
    return host, seen, net


def test_bf16_runs_the_layers_in_bfloat16_and_keeps_weights_float32():
    host32, seen32, net32 = _iteration("fp32")
    host16, seen16, net16 = _iteration("bf16")
    assert seen32 == {torch.float32}
    assert torch.bfloat16 in seen16
    assert all(p.dtype == torch.float32 for p in net16.parameters())
    # the same iteration, at lower precision: close but not identical losses
    assert host16[:3] != host32[:3]
    np.testing.assert_allclose(host16[:3], host32[:3], rtol=0.05)
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(net32.parameters(), net16.parameters(), strict=True)
        if a.grad is not None
    ]
    assert moved and max(moved) < 1e-2  # one SGD step apart by rounding only


def test_bf16_search_and_retrain_from_the_cli(tmp_path):
    out = tmp_path / "search"
    sets = ["--set", "search.epochs=1", "--set", "train.epochs=2", "--quiet"]
    bf16 = ["--set", "search.precision=bf16", "--set", "train.precision=bf16"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *sets, *bf16]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert all(math.isfinite(v) for v in summary["final"].values())
    arch = out / "arch.yaml"
    cfg, _ = load_config(arch)
    assert cfg.search.precision == "bf16" and cfg.train.precision == "bf16"
    train = tmp_path / "train"
    assert main(["train", str(arch), "--out", str(train), *sets]) == 0
    assert json.loads((train / "summary.json").read_text())["test_acc"] > 0.5


def test_unknown_precision_is_one_clear_error(write_yaml, capsys):
    text = (SPACES / "digits.yaml").read_text()
    path = write_yaml(text.replace("search:\n", "search:\n  precision: fp16\n", 1))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "search.precision" in err and "'fp32'" in err and "'bf16'" in err
    assert "Traceback" not in err


def test_precision_does_not_change_the_space_hash():
    a, _ = load_config(SPACES / "digits.yaml")
    b, _ = load_config(SPACES / "digits.yaml", ["search.precision=bf16"])
    assert SearchSpace(a).hash == SearchSpace(b).hash
    assert b.search.precision == "bf16"
