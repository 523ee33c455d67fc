"""One search iteration, the reference protocol of ASNG-NAS (Akimoto et al., 2019).

Sample λ architectures, forward them on the same train minibatch, backward the mean loss, clip,
one optimizer step; then sample λ fresh architectures and evaluate them on the same valid
minibatch without gradients. Their losses are what the strategy ranks (:mod:`nasframe.search`
updates it). The only host synchronisation of an iteration is the one read of those losses,
together with the logging metrics (:class:`ReadBack`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import Group
from .precision import autocast
from .strategy import Strategy

__all__ = ["search_iteration", "ReadBack"]


def search_iteration(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    strategy: Strategy,
    train_batch: tuple[torch.Tensor, torch.Tensor],
    valid_batch: tuple[torch.Tensor, torch.Tensor],
    lam: int,
    grad_clip: float | None,
    params: list[torch.nn.Parameter],
    precision: str = "fp32",
    group: Group | None = None,
    stop: bool = False,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """One iteration of the reference protocol, up to the ranking (the strategy is not updated).

    λ architectures forward the train batch, the mean loss is backpropagated, the gradients that
    exist are clipped, one optimizer step; λ fresh architectures are evaluated on the valid batch.
    Returns the values read in the iteration's one host synchronisation — the λ valid losses, the
    mean train loss, the train and the valid correct counts — and both samples. ``precision``
    ``bf16`` runs the forward passes under bfloat16 autocast. Under torchrun, ``group`` averages the
    gradients of the ranks' shards before clipping and reduces the read values (losses averaged,
    counts summed) together with each rank's ``stop`` request. With a ``pool`` of threads, the λ
    forward passes of each half run concurrently (an experiment for overhead-bound devices: the
    backward passes stay in order, so the numbers are bitwise the same, but the train step holds
    λ graphs at once; ``benchmarks/search_speed.py --concurrent-forwards``).
    """
    group = group or Group()
    xb, yb = train_batch
    xv, yv = valid_batch
    archs = strategy.sample(lam)
    optimizer.zero_grad(set_to_none=True)
    train_loss = torch.zeros((), device=xb.device)
    train_correct = torch.zeros((), device=xb.device)
    if pool is None:  # one graph at a time: forward, backward, then the next architecture
        passes = (_forward(net, xb, yb, a, precision, True) for a in archs)
    else:  # every forward at once, each in a thread; the backward passes below stay in order
        passes = list(pool.map(lambda a: _forward(net, xb, yb, a, precision, True), archs))
    for out, loss in passes:
        (loss / lam).backward()
        train_loss += loss.detach()
        train_correct += (out.argmax(1) == yb).sum()
    group.average_gradients(params)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
    optimizer.step()
    varchs = strategy.sample(lam)
    evaluate = map if pool is None else pool.map
    valid = list(evaluate(lambda a: _forward(net, xv, yv, a, precision, False), varchs))
    vlosses = [loss for _, loss in valid]
    vcorrect = sum((out.argmax(1) == yv).sum() for out, _ in valid)
    host = torch.stack([*vlosses, train_loss / lam, train_correct, vcorrect.float()])
    host = group.reduce(host, means=lam + 1, stop=stop).tolist()
    return host, archs, varchs


def _forward(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    arch: Any,
    precision: str,
    grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and cross-entropy of one architecture (grad mode and autocast are per thread, so
    both are set here)."""
    with torch.set_grad_enabled(grad), autocast(x.device, precision):
        out = net(x, arch)
        return out, F.cross_entropy(out, y)


class ReadBack(NamedTuple):
    """An iteration's values read back from the device (:func:`search_iteration`'s first result;
    under torchrun the losses are averaged over the ranks and the counts summed)."""

    valid_losses: list[float]  # one per valid architecture (λ)
    train_loss: float  # the mean of the λ train architectures' losses
    train_correct: float  # correct predictions of the λ train architectures, together
    valid_correct: float  # correct predictions of the λ valid architectures, together

    @classmethod
    def of(cls, host: list[float], lam: int) -> ReadBack:
        return cls(host[:lam], host[lam], host[lam + 1], host[lam + 2])

    def losses_finite(self) -> bool:
        return all(math.isfinite(v) for v in (*self.valid_losses, self.train_loss))
