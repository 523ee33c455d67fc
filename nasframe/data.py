"""Getting a dataset onto the device and cutting it into minibatches there.

Datasets that fit stay on the device as tensors; each epoch's order is a permutation drawn from a
generator seeded by (seed, epoch, stream), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from . import registry
from .augment import augment_batch, check_augment_fits
from .config import AugmentConfig, DataConfig
from .datasets import READS_NO_FILES, Dataset
from .errors import UserError, did_you_mean
from .option_kinds import checked_options

__all__ = [
    "load_dataset",
    "check_root",
    "split_train_valid",
    "epoch_order",
    "batch_at",
    "augment_at",
    "check_augment",
]


# What a dataset reading data.root raises about the files there: the user's to fix.
_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset named in the config, from the registry.

    The user's problems (an option the dataset does not take or of a kind its signature does
    not declare, or an error naming one or ``root``, files missing under ``data.root``) are
    located at ``data.options``, ``data.root`` or ``data``; a dataset plugin
    that fails otherwise, does not take the ``root`` nasframe passes or returns no
    :class:`~nasframe.Dataset` (or one no run can train on: :func:`_checked_tensors`) is named
    as the one at fault (a :class:`~nasframe.registry.PluginFailure`)."""
    factory = registry.get("dataset", cfg.name)
    check_root(cfg)
    _check_options(cfg.name, factory, cfg.options)
    options = cfg.options
    if registry.package(factory) != "nasframe":
        options = checked_options(factory, options, "data.options")  # built-ins check their own

    def blame(e: Exception) -> str | None:
        """An error naming one of the user's options, or the ``data.root`` they set, is theirs."""
        if isinstance(e, RuntimeError):
            return None
        if registry.named_option(str(e), options):
            return f"data.options: {e}"
        if cfg.root is not None and registry.named_option(str(e), {"root": cfg.root}):
            return f"data.root: {e}"
        return None

    try:
        data = registry.call(
            "dataset",
            cfg.name,
            factory,
            kwargs={"root": cfg.root, **options},
            options=options,
            where="data.options",
            blame=blame,
            returns=(lambda d: isinstance(d, Dataset), "a nasframe.Dataset"),
            passing=_FILE_ERRORS,
        )
    except _FILE_ERRORS as e:
        raise UserError(f"data: {e}") from None
    except MemoryError:
        raise UserError(
            f"data.options: dataset '{cfg.name}' does not fit in memory; ask it for less data"
        ) from None
    for part in ("x_train", "y_train", "x_test", "y_test"):
        value = getattr(data, part)
        if not isinstance(value, torch.Tensor):
            raise registry.failure(
                "dataset",
                cfg.name,
                f"returned a Dataset whose {part} is {registry.shown(value)}, not a tensor",
            )
    for split, x in (("train", data.x_train), ("test", data.x_test)):
        if x.shape[0] == 0:  # caught here, not as a crash after the first epoch
            raise _empty_split(cfg, split)
    return _checked_tensors(cfg.name, data)


def _empty_split(cfg: DataConfig, split: str) -> UserError:
    """The error for a dataset that gave no ``split`` samples: the plugin's failure when the user
    gave it no options (its own defaults gave none); else the user's, at the option whose name
    says it sizes that split (``n_test``, ``test_size``) or at ``data.options``."""
    if not cfg.options:
        return registry.failure(
            "dataset",
            cfg.name,
            f"returned a Dataset with an empty {split} split (x_{split} has no samples), with no "
            "data.options given",
        )
    key = next((k for k in cfg.options if split in str(k).lower()), None)
    if key is not None:
        return UserError(
            f"data.options.{key}: dataset '{cfg.name}' gave an empty {split} split with "
            f"{key}={registry.shown(cfg.options[key], 20)}; ask it for at least 1 {split} sample"
        )
    return UserError(f"data.options: dataset '{cfg.name}' gave an empty {split} split")


def _checked_tensors(name: str, data: Dataset) -> Dataset:
    """``data`` with float32 inputs and int64 labels (other float and integer types converted:
    numpy's float64, say), or the plugin's failure for what no run could train on: a
    ``num_classes`` that is no integer of at least 1, tensors that require gradients, inputs that
    are not floats or hold NaN or infinity, labels that are not integers, one per sample, in
    ``0 .. num_classes - 1``, test samples of another shape than the training samples."""

    def wrong(what: str) -> registry.PluginFailure:
        return registry.failure("dataset", name, f"returned a Dataset whose {what}")

    classes = data.num_classes
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral):
        raise wrong(f"num_classes is {registry.shown(classes)}, not an integer")
    if classes < 1:
        raise wrong(f"num_classes is {classes}; it must be at least 1 (the number of classes)")
    data.num_classes = int(classes)
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        for part, t in ((f"x_{split}", x), (f"y_{split}", y)):
            if t.requires_grad:  # each step's backward would run through the data's graph
                raise wrong(
                    f"{part} requires gradients (each training step would backpropagate into "
                    "it); detach it (x.detach()) or make it under torch.no_grad()"
                )
        if not x.is_floating_point():
            raise wrong(f"x_{split} holds {x.dtype}, not floats (convert, e.g. x.float() / 255)")
        if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise wrong(f"y_{split} holds {y.dtype}, not integer class labels")
        if y.shape != (x.shape[0],):
            raise wrong(
                f"y_{split} has shape {tuple(y.shape)}, not ({x.shape[0]},): one class label "
                f"per sample of x_{split}"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= data.num_classes:
            bad = low if low < 0 else high
            raise wrong(
                f"y_{split} holds the label {bad}, outside 0..{data.num_classes - 1} "
                f"(num_classes {data.num_classes})"
            )
        x = x.float()
        bad = _first_non_finite(x)
        if bad is not None:
            raise wrong(
                f"x_{split} holds NaN or infinity (first in sample {bad} of {x.shape[0]}); a run "
                "would only diverge: replace or drop such samples"
            )
        setattr(data, f"x_{split}", x)
        setattr(data, f"y_{split}", y.long())
    if data.x_test.shape[1:] != data.x_train.shape[1:]:
        raise wrong(
            f"test samples have shape {tuple(data.x_test.shape[1:])}, the training samples "
            f"{tuple(data.x_train.shape[1:])}"
        )
    return data


def _first_non_finite(x: torch.Tensor) -> int | None:
    """The index of the first sample of ``x`` holding NaN or infinity, or None (checked a few
    million values at a time, so as not to double a large dataset's memory). A finite sum says
    there is none, twenty times faster than looking (a sum too large for its type looks)."""
    if x.is_floating_point() and bool(torch.isfinite(x.sum())):
        return None
    step = max(1, 2**24 // max(1, x[:1].numel()))
    for start in range(0, x.shape[0], step):
        chunk = x[start : start + step]
        rows = torch.isfinite(chunk.reshape(chunk.shape[0], -1)).all(dim=1)
        if not bool(rows.all()):
            return start + int((~rows).nonzero()[0, 0])
    return None


def check_root(cfg: DataConfig) -> None:
    """Refuse ``data.root`` for a built-in dataset that reads no files (it would be ignored, and
    the user would believe the data came from there)."""
    if cfg.root is not None and registry.get("dataset", cfg.name) in READS_NO_FILES:
        raise UserError(f"data.root: {cfg.name} is built in and reads no files; remove data.root")


def _check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse an option the dataset factory does not take, naming those it does."""
    if "root" in options:
        raise UserError("data.options.root: set data.root instead")
    accepted = registry.keywords(factory, exclude=("root",))
    if accepted is None:
        return
    takes = sorted(accepted)
    for key in options:
        if key not in takes:
            it_takes = f"it takes {', '.join(takes)}" if takes else "it takes no options"
            raise UserError(
                f"data.options.{key}: unknown option of dataset '{name}'; "
                f"{it_takes}{did_you_mean(str(key), takes)}"
            )


def split_train_valid(
    x: torch.Tensor, y: torch.Tensor, valid_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint train / valid parts of the training data (a seeded permutation)."""
    n = x.shape[0]
    if n < 2:  # no fraction helps: the dataset's options ask for too little
        raise UserError(
            f"data.options: the dataset gives {n} training sample(s); a search needs at least 2 "
            "(one to train on, one to rank architectures on)"
        )
    n_valid = int(round(n * valid_fraction))
    if n_valid < 1 or n - n_valid < 1:
        raise UserError(
            f"data.valid_fraction: {valid_fraction} of the {n} training samples leaves "
            f"{n - n_valid} to train on and {n_valid} to validate on; each needs at least 1"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, va = perm[n_valid:], perm[:n_valid]
    return x[tr], y[tr], x[va], y[va]


#: The random streams of a run's data (sample order, augmentation), each seeded apart: a search's
#: train and valid halves, and a training's data.
SEARCH_TRAIN, SEARCH_VALID, TRAINING = 0, 1, 2


def epoch_order(n: int, seed: int, epoch: int, stream: int, device: torch.device) -> torch.Tensor:
    """The order of the samples in one epoch of one stream (:data:`SEARCH_TRAIN`,
    :data:`SEARCH_VALID`, :data:`TRAINING`)."""
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
    """Refuse augmentation of data that are not images, or that blanks or pads away whole
    images of this size (:func:`~nasframe.augment.check_augment_fits`), before a run starts."""
    if cfg is not None and len(sample_shape) != 3:
        raise UserError(
            f"{where}: augmentation needs images (C, H, W) but the data's samples have shape "
            f"{tuple(sample_shape)}; remove {where}"
        )
    check_augment_fits(cfg, sample_shape, where)


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
