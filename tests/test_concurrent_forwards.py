"""search_iteration with a thread pool: the λ forward passes in threads compute exactly what one
thread does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import SPACES

from nasframe import ASNG, SearchSpace, load_config, make_supernet, search_iteration
from nasframe.optim import build_optimizer


def _iterations(spec: str, shape: tuple[int, ...], pool: ThreadPoolExecutor | None, lam: int):
    config, _ = load_config(SPACES / spec)
    space = SearchSpace(config)
    torch.manual_seed(0)
    net = make_supernet(space, shape, 10)
    params = list(net.parameters())
    opt = build_optimizer(params, config.search.optimizer)
    asng = ASNG(space.categories, lam=lam, seed=0)
    gen = torch.Generator().manual_seed(1)
    hosts = []
    for _ in range(3):
        batch = (torch.randn(16, *shape, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        valid = (torch.randn(16, *shape, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        host, _, varchs = search_iteration(
            net, opt, asng, batch, valid, lam, 5.0, params, pool=pool
        )
        asng.update(varchs, host[:lam])
        hosts.append(host)
    return hosts, [p.detach().clone() for p in params], asng.theta.copy()


@pytest.mark.parametrize(
    "spec, shape, lam",
    [("digits.yaml", (1, 8, 8), 2), ("cells_digits.yaml", (1, 8, 8), 4), ("mlp.yaml", (64,), 3)],
)
def test_concurrent_forwards_give_bitwise_the_same_iteration(spec, shape, lam):
    one = _iterations(spec, shape, None, lam)
    with ThreadPoolExecutor(lam) as pool:
        many = _iterations(spec, shape, pool, lam)
    assert one[0] == many[0]  # losses and counts, exactly
    assert all(torch.equal(a, b) for a, b in zip(one[1], many[1], strict=True))
    assert np.array_equal(one[2], many[2])
