"""Image augmentation on the device, for whole batches (N, C, H, W) that are already there.

Everything is batched tensor work: random numbers are drawn for the whole batch at once from an
explicit :class:`torch.Generator` on the batch's device, and applied with ``torch.gather`` and
masks. There is no Python loop over samples and no host synchronisation, so the augmentation runs
inside the training step without stalling the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError

__all__ = [
    "augment_batch",
    "random_crop",
    "random_flip",
    "cutout",
    "crop_flip_at",
    "cutout_at",
    "check_augment_fits",
]


def _check(x: torch.Tensor, generator: torch.Generator) -> None:
    if x.dim() != 4:
        raise ValueError(
            f"augmentation needs an image batch (N, C, H, W), got shape {tuple(x.shape)}"
        )
    if generator.device.type != x.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the batch is on {x.device}; "
            f"use torch.Generator(device=x.device)"
        )


def crop_flip_at(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor | None = None,
    padding: int = 4,
) -> torch.Tensor:
    """Crop each sample at given offsets from its zero-padded image, then optionally mirror it.

    Sample ``n`` of the result is the ``H x W`` window at rows ``dy[n] ..`` and columns ``dx[n] ..``
    of ``x[n]`` padded with ``padding`` zeros on every side (so offsets run from 0 to
    ``2 * padding``; ``padding`` gives the identity), mirrored left-right where ``flip[n]`` is true.
    ``dy``, ``dx`` (int64) and ``flip`` (bool) have shape (N,) and live on ``x``'s device.
    """
    n, c, h, w = x.shape
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # (N, H)
    cols = torch.arange(w, device=x.device).view(1, w)
    if flip is not None:  # mirrored window: column j of the output reads column W-1-j of the crop
        cols = torch.where(flip.view(n, 1), (w - 1) - cols, cols)
    cols = dx.view(n, 1) + cols  # (N, W)
    wp = xp.shape[3]
    out = torch.gather(xp, 2, rows.view(n, 1, h, 1).expand(n, c, h, wp))  # (N, C, H, W + 2p)
    return torch.gather(out, 3, cols.view(n, 1, 1, w).expand(n, c, h, w))  # (N, C, H, W)


def cutout_at(
    x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, length: int = 16
) -> torch.Tensor:
    """Zero, in each sample, the ``length x length`` square centred at (``cy[n]``, ``cx[n]``).

    The square covers rows ``cy - length // 2`` to ``cy - length // 2 + length - 1`` (columns
    likewise) and is clipped at the image border. All channels are zeroed.
    """
    n, _, h, w = x.shape
    top = cy.view(n, 1, 1) - length // 2
    left = cx.view(n, 1, 1) - length // 2
    r = torch.arange(h, device=x.device).view(1, h, 1)
    q = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (r >= top) & (r < top + length) & (q >= left) & (q < left + length)  # (N, H, W)
    return x.masked_fill(inside.unsqueeze(1), 0)


def random_crop(x: torch.Tensor, padding: int = 4, *, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch back to its size (offsets uniform)."""
    _check(x, generator)
    n = x.shape[0]
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    return crop_flip_at(x, dy, dx, None, padding)


def random_flip(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    _check(x, generator)
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def cutout(x: torch.Tensor, length: int = 16, *, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero a ``length`` square at a uniform centre, per sample."""
    _check(x, generator)
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    return cutout_at(x, cy, cx, length)


def augment_batch(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    crop_padding: int = 4,
    flip: bool = True,
    cutout: int = 16,
) -> torch.Tensor:
    """Random crop, horizontal flip and cutout of an image batch, on its device.

    This is the exact per-sample augmentation of the usual CIFAR recipe, done for the whole batch
    at once: every sample gets its own random crop offsets (uniform in ``0 .. 2 * crop_padding``
    rows and columns of the image zero-padded by ``crop_padding``), its own coin flip for the
    left-right mirror, and its own cutout centre (uniform over the image; the ``cutout x cutout``
    square is clipped at the border, so it may be smaller). ``crop_padding=0``, ``flip=False`` or
    ``cutout=0`` turn a step off. The input is not modified; the result has its shape and dtype
    (float32, bfloat16, ...).

    ``generator`` must be on ``x``'s device; the same generator state gives the same result. The
    random numbers are drawn in a fixed order from it: crop rows, crop columns, flips, cutout rows,
    cutout columns (a step that is off draws nothing).
    """
    _check(x, generator)
    if crop_padding < 0 or cutout < 0:
        raise ValueError(f"crop_padding and cutout must be >= 0, got {crop_padding}, {cutout}")
    n, _, h, w = x.shape
    dev = x.device
    out = x
    if crop_padding or flip:
        if crop_padding:
            span = 2 * crop_padding + 1
            dy = torch.randint(0, span, (n,), generator=generator, device=dev)
            dx = torch.randint(0, span, (n,), generator=generator, device=dev)
        else:
            dy = dx = torch.zeros(n, dtype=torch.int64, device=dev)
        mirror = torch.rand(n, generator=generator, device=dev) < 0.5 if flip else None
        out = crop_flip_at(out, dy, dx, mirror, crop_padding)
    if cutout:
        cy = torch.randint(0, h, (n,), generator=generator, device=dev)
        cx = torch.randint(0, w, (n,), generator=generator, device=dev)
        out = cutout_at(out, cy, cx, cutout)
    return out


def check_augment_fits(cfg: Any, sample_shape: Sequence[int], where: str) -> None:
    """Refuse, at ``where.cutout`` or ``where.crop_padding``, an augmentation (an
    :class:`~nasframe.config.AugmentConfig`, or None: nothing to check) that wipes out the images
    of shape ``sample_shape`` (C, H, W) instead of varying them: a run would train on blank
    images without a word. Other shapes are left to the check that augmentation needs images.

    A cutout of side ``L`` covers rows ``cy - L // 2 .. cy - L // 2 + L - 1`` for a centre ``cy``
    in ``0 .. H - 1`` (:func:`cutout_at`), so it covers every row whatever the centre when
    ``L // 2 >= H - 1`` and ``L - L // 2 >= H``, that is ``L >= 2 H - 1``; every image is blank
    when that holds for the height and the width. Below ``max(H, W)`` no image is ever blanked
    whole. A crop padding ``p >= min(H, W)`` makes the crops at the extreme offsets all padding.
    """
    if cfg is None or len(sample_shape) != 3:
        return
    h, w = int(sample_shape[1]), int(sample_shape[2])
    side = max(h, w)
    length = int(cfg.cutout or 0)
    if length and length >= 2 * side - 1:
        raise UserError(
            f"{where}.cutout: a {length}x{length} cutout blanks every {h}x{w} image whatever "
            f"its centre; use at most {side - 1} (a larger side blanks some images whole; about "
            f"half the image side, {max(side // 2, 1)}, is usual)"
        )
    padding = int(cfg.crop_padding or 0)
    if padding and padding >= min(h, w):
        raise UserError(
            f"{where}.crop_padding: {padding} pixels of padding on {h}x{w} images make some "
            f"crops nothing but padding; use at most {min(h, w) - 1} (an eighth of the image "
            f"side, {max(min(h, w) // 8, 1)}, is usual)"
        )
