"""GPU runs (skipped without CUDA): the search and retraining on the device."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SPACES

from nasframe.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_digits_search_and_train_on_cuda(tmp_path):
    out = tmp_path / "search"
    args = ["--set", "device=cuda", "--set", "search.epochs=2", "--quiet"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"].startswith("cuda")
    assert (
        main(
            [
                "train",
                str(out / "arch.yaml"),
                "--out",
                str(tmp_path / "t"),
                *args,
                "--set",
                "train.epochs=2",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert result["device"].startswith("cuda") and result["test_acc"] > 0.2


def test_search_iteration_synchronises_once(tmp_path):
    """Only the read of the valid losses may synchronise the host inside an iteration."""
    from nasframe import SearchSpace, Supernet, load_config

    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10).cuda()
    x = torch.randn(64, 1, 8, 8, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    sample = [0] * len(space.paths)
    net(x, sample).sum().backward()  # warm-up (lazy init may synchronise)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = torch.nn.functional.cross_entropy(net(x, sample), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], 5.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_whole_search_iteration_synchronises_exactly_once():
    """search_iteration as the search runs it (ASNG sampling, λ forwards and backwards, foreach
    clipping, the SGD step, the valid forwards): the one read of the losses is the only sync."""
    import warnings

    from nasframe import ASNG, SearchSpace, Supernet, load_config, search_iteration

    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10).cuda()
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=3e-4)
    asng = ASNG(space.categories, seed=0)
    batch = (torch.randn(64, 1, 8, 8, device="cuda"), torch.randint(0, 10, (64,), device="cuda"))
    for _ in range(2):  # warm-up: lazy initialisation and the optimizer's state may synchronise
        search_iteration(net, opt, asng, batch, batch, 2, 5.0, params)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            host, _, _ = search_iteration(net, opt, asng, batch, batch, 2, 5.0, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
    assert len(host) == 5
