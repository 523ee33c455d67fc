"""Getting a dataset onto the device and cutting it into minibatches there.

Datasets that fit stay on the device as tensors; each epoch's order is a permutation drawn from a
generator seeded by (seed, epoch, stream), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import torch

from . import registry
from .augment import augment_batch
from .config import AugmentConfig, DataConfig
from .datasets import Dataset
from .errors import UserError

__all__ = [
    "load_dataset",
    "split_train_valid",
    "epoch_order",
    "batch_at",
    "augment_at",
    "check_augment",
]


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset named in the config, from the registry."""
    factory = registry.get("dataset", cfg.name)
    try:
        return factory(root=cfg.root, **cfg.options)
    except TypeError as e:
        raise UserError(f"data.options: {e}") from None
    except FileNotFoundError as e:
        raise UserError(f"data: {e}") from None


def split_train_valid(
    x: torch.Tensor, y: torch.Tensor, valid_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint train / valid parts of the training data (a seeded permutation)."""
    n = x.shape[0]
    n_valid = int(round(n * valid_fraction))
    if n_valid < 1 or n - n_valid < 1:
        raise UserError(
            f"data.valid_fraction: {valid_fraction} leaves an empty split of {n} samples"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, va = perm[n_valid:], perm[:n_valid]
    return x[tr], y[tr], x[va], y[va]


def epoch_order(n: int, seed: int, epoch: int, stream: int, device: torch.device) -> torch.Tensor:
    """The order of the samples in one epoch of one stream (0: train, 1: valid)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 7 + stream)
    return torch.randperm(n, generator=g).to(device)


def batch_at(x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, i: int, batch_size: int):
    """The i-th minibatch of an epoch (wrapping around when the order is too short)."""
    n = order.shape[0]
    start = (i * batch_size) % n
    idx = order[start : start + batch_size]
    if idx.shape[0] < batch_size and n >= batch_size:
        idx = torch.cat([idx, order[: batch_size - idx.shape[0]]])
    return x[idx], y[idx]


def check_augment(cfg: AugmentConfig | None, sample_shape: tuple[int, ...], where: str) -> None:
    """Refuse augmentation of data that are not images, before a run starts."""
    if cfg is not None and len(sample_shape) != 3:
        raise UserError(
            f"{where}: augmentation needs images (C, H, W) but the data's samples have shape "
            f"{tuple(sample_shape)}; remove {where}"
        )


def augment_at(
    x: torch.Tensor, cfg: AugmentConfig | None, seed: int, epoch: int, step: int, stream: int
) -> torch.Tensor:
    """The augmented batch of one step: its randomness depends only on (seed, epoch, step,
    stream), so a resumed run augments exactly as the uninterrupted one would have."""
    if cfg is None:
        return x
    g = torch.Generator(device=x.device)
    g.manual_seed((((seed * 1_000_003 + epoch) * 1_000_033 + step) * 7 + stream) % 2**63)
    return augment_batch(
        x, generator=g, crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout
    )
