"""Built-in datasets, all offline: ``mnist1d`` (generated), ``digits`` (scikit-learn), ``synthetic``.

A dataset plugin is a callable ``(root=None, **options) -> Dataset``. Inputs are float32 tensors with
a channel dimension ((N, C, L) for signals, (N, C, H, W) for images, (N, F) for vectors), finite and
not requiring gradients; labels int64 in ``0 .. num_classes - 1``, ``num_classes`` an int of at least 1
(:func:`nasframe.data.load_dataset` refuses anything else as the plugin's bug).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CannotWrite, atomic_write
from .errors import UserError

__all__ = [
    "Dataset",
    "mnist1d",
    "digits",
    "synthetic",
    "cache_dir",
    "int_option",
    "bool_option",
    "READS_NO_FILES",
]


@dataclass
class Dataset:
    """Train and test tensors of a classification task."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input sample, without the batch dimension."""
        return tuple(self.x_train.shape[1:])


def cache_dir() -> Path:
    """Where generated data is cached (``$NASFRAME_CACHE`` or ``~/.cache/nasframe``)."""
    root = os.environ.get("NASFRAME_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nasframe"
    )
    return Path(root)


def int_option(name: str, value: Any, low: int, high: int | None = None, why: str = "") -> int:
    """``data.options.<name>`` as an integer in ``low..high`` (no upper bound: ``high=None``),
    or a UserError saying what is allowed (and ``why``, if given)."""
    if isinstance(value, float) and value.is_integer():  # 1e4, as YAML 1.2 reads it
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"data.options.{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"at least {low}" if high is None else f"between {low} and {high}"
        because = f" ({why})" if why else ""
        raise UserError(f"data.options.{name}: must be {allowed}{because}, got {value}")
    return value


def bool_option(name: str, value: Any) -> bool:
    """``data.options.<name>`` as a boolean, or a UserError (a string such as 'no' is not one)."""
    if not isinstance(value, bool):
        raise UserError(f"data.options.{name}: expected true or false, got {value!r}")
    return value


def _memory_bytes() -> int:
    """This machine's physical memory (64 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 64 * 2**30


@functools.lru_cache(maxsize=2)
def _mnist1d_arrays() -> dict[str, np.ndarray]:
    path = cache_dir() / "mnist1d-v1.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):
            pass  # a damaged cache is regenerated
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise UserError(
            "data.name: dataset 'mnist1d' needs the mnist1d package: pip install mnist1d"
        ) from e
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG: isolate it
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    arrays = {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except CannotWrite:
        pass  # caching is an optimisation only (and leaves no temporary file)
    return arrays


def mnist1d(root: str | None = None) -> Dataset:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test signals of length 40, 10 classes."""
    a = _mnist1d_arrays()

    def x(v: np.ndarray) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32).unsqueeze(1)

    return Dataset(
        "mnist1d",
        x(a["x"]),
        torch.tensor(a["y"], dtype=torch.int64),
        x(a["x_test"]),
        torch.tensor(a["y_test"], dtype=torch.int64),
        10,
    )


def digits(root: str | None = None, test_size: int = 497) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn), a fixed split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.target)
    why = f"2 of the {n} images must remain to train and validate on"
    test_size = int_option("test_size", test_size, 1, n - 2, why)
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1797))
    test, train = perm[:test_size], perm[test_size:]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10)


def synthetic(
    root: str | None = None,
    shape: tuple[int, ...] | list[int] = (3, 32, 32),
    classes: int = 10,
    n_train: int = 1024,
    n_test: int = 256,
    seed: int = 0,
) -> Dataset:
    """Seeded random inputs with labels from a fixed random linear teacher (learnable, for tests)."""
    classes = int_option("classes", classes, 2)
    n_train = int_option("n_train", n_train, 2)
    n_test = int_option("n_test", n_test, 1)
    seed = int_option("seed", seed, 0, 2**32 - 1)
    if (
        not isinstance(shape, (list, tuple))
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise UserError(
            f"data.options.shape: {shape!r} should be a list of positive integers, e.g. [3, 32, 32]"
        )
    shape = tuple(shape)
    features, n = math.prod(shape), n_train + n_test
    need = 4 * (n * features + features * classes + n * classes)  # x, teacher, logits (float32)
    have = _memory_bytes()
    if need > have:
        raise _too_big(need, f"this machine has {have / 2**30:,.1f} GiB of memory")
    g = torch.Generator().manual_seed(seed)
    try:
        x = torch.randn(n, *shape, generator=g)
        w = torch.randn(features, classes, generator=g)
        y = (x.flatten(1) @ w).argmax(1)
    except (MemoryError, RuntimeError) as e:  # RuntimeError: torch's "can't allocate memory"
        if isinstance(e, RuntimeError) and "alloc" not in str(e):
            raise
        raise _too_big(need, "more than could be allocated") from None
    return Dataset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


#: The built-in datasets that generate their data or ship it with a package: ``data.root`` is
#: refused for them (mnist1d caches what it generates in :func:`cache_dir`, not in a root).
READS_NO_FILES = (mnist1d, digits, synthetic)


def _too_big(need: int, why: str) -> UserError:
    return UserError(
        f"data.options: the synthetic data would need {need / 2**30:,.1f} GiB ({why}); "
        f"make shape, n_train, n_test or classes smaller"
    )
