"""Batched on-device augmentation (nasframe.augment): crop, flip, cutout, checked per sample."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import SPACES

from nasframe.augment import (
    augment_batch,
    crop_flip_at,
    cutout,
    cutout_at,
    random_crop,
    random_flip,
)

torch.set_num_threads(1)


def _gen(seed: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _images(n=32, c=3, h=32, w=32, seed=0, dtype=torch.float32) -> torch.Tensor:
    # strictly positive, distinct values: a zero in the output can only come from padding/cutout
    return (torch.rand(n, c, h, w, generator=_gen(seed)) + 0.5).to(dtype)


def _ref_crop_flip(x, dy, dx, flip, p):
    """Per-sample reference: pad, slice the window, mirror."""
    out = []
    for i in range(x.shape[0]):
        xp = F.pad(x[i], (p, p, p, p))
        win = xp[:, dy[i] : dy[i] + x.shape[2], dx[i] : dx[i] + x.shape[3]]
        out.append(win.flip(2) if flip is not None and bool(flip[i]) else win)
    return torch.stack(out)


def _ref_cutout(x, cy, cx, length):
    out = x.clone()
    for i in range(x.shape[0]):
        t, l = int(cy[i]) - length // 2, int(cx[i]) - length // 2
        out[i, :, max(t, 0) : max(t + length, 0), max(l, 0) : max(l + length, 0)] = 0
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_dtype_and_input_untouched(dtype):
    x = _images(n=16, h=32, w=24, dtype=dtype)
    before = x.clone()
    y = augment_batch(x, generator=_gen(1))
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    assert torch.equal(x, before)
    assert not torch.equal(y, x)


def test_deterministic_with_seeded_generator():
    x = _images()
    a = augment_batch(x, generator=_gen(7))
    b = augment_batch(x, generator=_gen(7))
    c = augment_batch(x, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = _gen(7)  # a generator advances: the next batch is augmented differently
    assert torch.equal(augment_batch(x, generator=g), a)
    assert not torch.equal(augment_batch(x, generator=g), a)


def test_crop_flip_at_matches_per_sample_reference():
    x = _images(n=12, h=10, w=9)
    p = 3
    g = _gen(3)
    dy = torch.randint(0, 2 * p + 1, (12,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (12,), generator=g)
    dy[:2], dx[:2] = torch.tensor([0, 2 * p]), torch.tensor([2 * p, 0])  # extreme offsets
    flip = torch.rand(12, generator=g) < 0.5
    flip[:2] = torch.tensor([True, False])
    assert torch.equal(crop_flip_at(x, dy, dx, flip, p), _ref_crop_flip(x, dy, dx, flip, p))
    assert torch.equal(crop_flip_at(x, dy, dx, None, p), _ref_crop_flip(x, dy, dx, None, p))
    centre = torch.full((12,), p)
    assert torch.equal(crop_flip_at(x, centre, centre, None, p), x)  # offset p: the identity


def _match_window(xi, yi, p, allow_flip):
    """All (dy, dx, flipped) whose window of the padded xi equals yi."""
    xp = F.pad(xi, (p, p, p, p))
    h, w = xi.shape[1:]
    hits = []
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            win = xp[:, dy : dy + h, dx : dx + w]
            if torch.equal(win, yi):
                hits.append((dy, dx, False))
            if allow_flip and torch.equal(win.flip(2), yi):
                hits.append((dy, dx, True))
    return hits


@pytest.mark.parametrize("flip", [False, True])
def test_each_sample_is_a_shifted_window_of_the_padded_input(flip):
    x = _images(n=48, h=12, w=12)
    p = 4
    y = augment_batch(x, generator=_gen(11), crop_padding=p, flip=flip, cutout=0)
    found = []
    for i in range(x.shape[0]):
        hits = _match_window(x[i], y[i], p, flip)
        assert len(hits) == 1, f"sample {i}: {hits}"
        found.append(hits[0])
    # each sample has its own offsets (not one offset for the whole batch)
    assert len({(dy, dx) for dy, dx, _ in found}) > 10
    assert {dy for dy, _, _ in found} >= {0, 2 * p}  # the extremes are drawn too
    flips = [f for _, _, f in found]
    if flip:
        assert 10 < sum(flips) < 38
    else:
        assert not any(flips)


def test_documented_draw_order():
    """augment_batch == explicit offsets drawn in the documented order from the same generator."""
    x = _images(n=20, h=16, w=16)
    y = augment_batch(x, generator=_gen(5), crop_padding=2, flip=True, cutout=6)
    g = _gen(5)
    dy = torch.randint(0, 5, (20,), generator=g)
    dx = torch.randint(0, 5, (20,), generator=g)
    fl = torch.rand(20, generator=g) < 0.5
    cy = torch.randint(0, 16, (20,), generator=g)
    cx = torch.randint(0, 16, (20,), generator=g)
    want = _ref_cutout(_ref_crop_flip(x, dy, dx, fl, 2), cy, cx, 6)
    assert torch.equal(y, want)


def test_flip_only():
    x = _images(n=40, h=5, w=7)
    y = augment_batch(x, generator=_gen(2), crop_padding=0, flip=True, cutout=0)
    same = [torch.equal(y[i], x[i]) for i in range(40)]
    mirrored = [torch.equal(y[i], x[i].flip(2)) for i in range(40)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))  # exactly one of the two
    assert 5 < sum(mirrored) < 35
    z = random_flip(x, generator=_gen(2))
    assert all(torch.equal(z[i], x[i]) or torch.equal(z[i], x[i].flip(2)) for i in range(40))


def _check_cutout_square(x, y, length):
    """y is x with, per sample, one (clipped) length x length square zeroed in all channels."""
    n, c, h, w = x.shape
    tops = []
    for i in range(n):
        zero = y[i] == 0
        assert torch.equal(zero, zero[:1].expand(c, h, w)), "cutout must zero all channels"
        z = zero[0]
        assert z.any(), f"sample {i}: nothing cut out"
        rows = z.any(1).nonzero().flatten()
        cols = z.any(0).nonzero().flatten()
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        assert int(z.sum()) == (r1 - r0) * (c1 - c0) and z[r0:r1, c0:c1].all()  # a rectangle
        for lo, hi, size in ((r0, r1, h), (c0, c1, w)):
            assert hi - lo <= length
            assert hi - lo == length or lo == 0 or hi == size, "only clipping shortens a side"
        keep = ~z
        assert torch.equal(y[i][:, keep], x[i][:, keep])  # everything else is untouched
        tops.append((r0, c0))
    assert len(set(tops)) > n // 4  # per-sample positions


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cutout_zeroes_one_clipped_square_per_sample(dtype):
    x = _images(n=40, dtype=dtype)
    y = augment_batch(x, generator=_gen(4), crop_padding=0, flip=False, cutout=16)
    assert y.dtype == dtype
    _check_cutout_square(x, y, 16)
    sizes = {int((y[i, 0] == 0).sum()) for i in range(40)}
    assert 256 in sizes and min(sizes) < 256  # whole squares and clipped ones both occur
    _check_cutout_square(x, cutout(x, 16, generator=_gen(9)), 16)


def test_cutout_at_matches_reference_including_borders():
    x = _images(n=6, h=20, w=20)
    cy = torch.tensor([0, 19, 10, 3, 17, 8])
    cx = torch.tensor([0, 19, 10, 17, 2, 9])
    assert torch.equal(cutout_at(x, cy, cx, 16), _ref_cutout(x, cy, cx, 16))
    assert torch.equal(cutout_at(x, cy, cx, 5), _ref_cutout(x, cy, cx, 5))
    assert int((cutout_at(x, cy, cx, 16)[2, 0] == 0).sum()) == 256


def test_crop_padding_zero_and_all_off():
    x = _images(n=4)
    assert torch.equal(augment_batch(x, generator=_gen(0), crop_padding=0, flip=False, cutout=0), x)
    y = random_crop(x, 4, generator=_gen(0))
    for i in range(4):
        assert len(_match_window(x[i], y[i], 4, False)) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment_batch(torch.zeros(3, 8, 8), generator=_gen(0))
    with pytest.raises(ValueError, match=">= 0"):
        augment_batch(torch.zeros(1, 3, 8, 8), generator=_gen(0), crop_padding=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_no_host_sync():
    x = _images(n=64).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    augment_batch(x, generator=g)  # warm-up (lazy init may synchronize)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = augment_batch(x, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.shape == x.shape and y.device == x.device
    a = augment_batch(x, generator=torch.Generator(device="cuda").manual_seed(1))
    b = augment_batch(x, generator=torch.Generator(device="cuda").manual_seed(1))
    assert torch.equal(a, b)
    z = augment_batch(x, generator=g, crop_padding=0, flip=False)
    _check_cutout_square(x.cpu(), z.cpu(), 16)
    with pytest.raises(ValueError, match="generator"):
        augment_batch(x, generator=_gen(0))


def test_a_steps_augmentation_depends_only_on_seed_epoch_step_and_stream() -> None:
    from nasframe.config import AugmentConfig
    from nasframe.data import augment_at

    x = torch.rand(16, 3, 12, 12)
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=4)
    a = augment_at(x, cfg, 0, 1, 5, 0)
    assert torch.equal(a, augment_at(x, cfg, 0, 1, 5, 0))  # what a resumed run recomputes
    for other in [(1, 1, 5, 0), (0, 2, 5, 0), (0, 1, 6, 0), (0, 1, 5, 1)]:
        assert not torch.equal(a, augment_at(x, cfg, *other))
    assert augment_at(x, None, 0, 1, 5, 0) is x


def test_augmenting_vectors_is_refused_before_the_run(tmp_path, capsys) -> None:
    from nasframe.cli import main

    cfg = SPACES / "mlp.yaml"
    args = ["search", str(cfg), "--out", str(tmp_path / "r"), "--set", "search.augment.flip=true"]
    args += ["--set", "data.name=synthetic", "--set", "data.options.shape=[64]"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "search.augment: augmentation needs images" in err and "Traceback" not in err
