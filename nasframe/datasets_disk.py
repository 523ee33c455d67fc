"""Datasets read from disk, never downloaded: CIFAR-10, CIFAR-100 and image folders.

Each function is a dataset plugin ``(root=None, **options) -> Dataset`` returning float32 images
(N, C, H, W) and int64 labels. Problems the user can fix (missing or damaged files, a wrong layout)
raise :class:`~nasframe.errors.UserError` with one message that says what was expected.

CIFAR files are Python pickles. They are read with a restricted unpickler that only builds numpy
arrays (and the byte strings they are made of); any other global a pickle asks for is refused
before anything is called, so a malicious file cannot run code.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .datasets import Dataset, bool_option, int_option
from .errors import UserError

__all__ = ["cifar10", "cifar100", "image_folder", "CIFAR10_MEAN", "CIFAR10_STD"]
__all__ += ["CIFAR100_MEAN", "CIFAR100_STD", "IMAGE_SUFFIXES", "MAX_IMAGE_SIDE"]

# Per-channel (R, G, B) mean and standard deviation of the training images, scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# ---------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_module(new: str, old: str):
    try:
        return importlib.import_module(new)  # numpy >= 2
    except ImportError:
        return importlib.import_module(old)  # numpy 1.x


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol <= 2 as _codecs.encode(str, "latin1"); nothing else.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_module("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _numpy_module("numpy._core.numeric", "numpy.core.numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):  # pickles name either, whichever numpy wrote them
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that only reconstructs numpy arrays, dtypes and scalars."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UserError(
                f"data.root: refusing to load {self._path}: the pickle asks for '{module}.{name}', which a "
                f"CIFAR batch file never contains (it only holds numpy arrays and lists); "
                f"the file may be damaged, not CIFAR data, or malicious"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported")


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as e:  # any decoding problem of a damaged or foreign file
        raise UserError(
            f"data.root: could not read {path} as a CIFAR python-pickle batch file "
            f"({type(e).__name__}: {e}); re-extract the 'python version' archive from {_CIFAR_URL}"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(
            f"data.root: {path} is not a CIFAR batch file: it holds a {type(obj).__name__}, not a dict"
        )
    return obj


def _entry(batch: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    have = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch))
    raise UserError(
        f"data.root: {path} is not a CIFAR batch file: it has no '{key}' entry (it has: {have})"
    )


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    data = _entry(batch, "data", path)
    labels = _entry(batch, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UserError(f"data.root: {path}: 'data' should be a uint8 array of shape (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"data.root: {path}: 'data' has rows of {data.shape[1]} values, a CIFAR image has 3072 (3x32x32)"
        )
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"data.root: {path}: '{label_key}' should be a list of integers") from None
    if y.shape[0] != data.shape[0]:
        raise UserError(f"data.root: {path}: {data.shape[0]} images but {y.shape[0]} '{label_key}'")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise UserError(
            f"data.root: {path}: '{label_key}' has values outside 0..{num_classes - 1} "
            f"(found {int(y.min())}..{int(y.max())})"
        )
    return data, y


# ---------------------------------------------------------------------------------------------
# CIFAR


def _cifar_dir(
    root: str | None, dataset: str, folder: str, required: Sequence[str], extra: Sequence[str]
) -> Path:
    also = f", next to {', '.join(extra)}, which is not needed" if extra else ""
    layout = (
        f"expected ROOT/{folder}/{{{', '.join(required)}}}{also} (ROOT may also be the "
        f"{folder} folder itself); download the CIFAR 'python version' archive by hand from "
        f"{_CIFAR_URL}, extract it into ROOT and set data.root to ROOT (nasframe never downloads "
        f"data)"
    )
    if root is None:
        raise UserError(f"data.root: dataset '{dataset}' needs data.root; {layout}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(
            f"data.root: {_shown(base)} is not a directory (dataset '{dataset}'); {layout}"
        )
    d = base if any((base / f).is_file() for f in required) else base / folder
    missing = [f for f in required if not (d / f).is_file()]
    if missing:
        raise UserError(
            f"data.root: {', '.join(missing)} not found in {d} (dataset '{dataset}'); {layout}"
        )
    return d


def _check_options(normalize: Any, n_train: Any, n_test: Any) -> None:
    """The options' types, before any file is read (their range needs the files' sizes)."""
    bool_option("normalize", normalize)
    for what, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None:
            int_option(what, n, 1)


def _limit(n: int | None, available: int, what: str) -> int:
    """How many samples of a split to keep: all (``None``) or ``n`` in 1..available."""
    return available if n is None else int_option(what, n, 1, available)


def _to_images(
    data: np.ndarray, normalize: bool, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    # Each row holds the 1024 red, then green, then blue values, each plane row-major (32 x 32).
    x = torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32).to(torch.float32)
    x.div_(255.0)
    if normalize:
        x.sub_(torch.tensor(mean).view(1, 3, 1, 1)).div_(torch.tensor(std).view(1, 3, 1, 1))
    return x


def _cifar(
    name: str,
    folder_dir: Path,
    train_files: Sequence[str],
    test_file: str,
    label_key: str,
    num_classes: int,
    normalize: bool,
    n_train: int | None,
    n_test: int | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> Dataset:
    parts = [_read_batch(folder_dir / f, label_key, num_classes) for f in train_files]
    x_tr = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y_tr = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    x_te, y_te = _read_batch(folder_dir / test_file, label_key, num_classes)
    k_tr = _limit(n_train, len(y_tr), "n_train")
    k_te = _limit(n_test, len(y_te), "n_test")
    return Dataset(
        name,
        _to_images(x_tr[:k_tr], normalize, mean, std),
        torch.from_numpy(y_tr[:k_tr].copy()),
        _to_images(x_te[:k_te], normalize, mean, std),
        torch.from_numpy(y_te[:k_te].copy()),
        num_classes,
    )


def cifar10(
    root: str | None = None,
    normalize: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """CIFAR-10 from its python-pickle batches: 50000 train / 10000 test images (3, 32, 32).

    ``root`` is the folder holding ``cifar-10-batches-py/`` (or that folder itself), which holds
    ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (its ``batches.meta`` is not needed).
    Pixels are scaled to [0, 1] and, with ``normalize``, standardized by the CIFAR-10 per-channel
    mean and std.
    ``n_train`` / ``n_test`` keep only the first samples of each split (for quick runs).
    """
    _check_options(normalize, n_train, n_test)
    train = [f"data_batch_{i}" for i in range(1, 6)]
    d = _cifar_dir(root, "cifar10", "cifar-10-batches-py", [*train, "test_batch"], ["batches.meta"])
    return _cifar(
        "cifar10", d, train, "test_batch", "labels", 10, normalize, n_train, n_test,
        CIFAR10_MEAN, CIFAR10_STD,
    )  # fmt: skip


def cifar100(
    root: str | None = None,
    normalize: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    label: str = "fine",
) -> Dataset:
    """CIFAR-100 from its python-pickle files: 50000 train / 10000 test images (3, 32, 32).

    ``root`` is the folder holding ``cifar-100-python/`` (or that folder itself), which holds
    ``train`` and ``test`` (its ``meta`` is not needed). ``label`` picks the 100 ``"fine"``
    classes or the 20 ``"coarse"`` superclasses. Scaling, ``normalize``, ``n_train`` and ``n_test`` as for cifar10.
    """
    _check_options(normalize, n_train, n_test)
    if label not in ("fine", "coarse"):
        raise UserError(f"data.options.label: {label!r} should be 'fine' or 'coarse'")
    d = _cifar_dir(root, "cifar100", "cifar-100-python", ["train", "test"], ["meta"])
    name = "cifar100" if label == "fine" else "cifar100-coarse"
    num_classes = 100 if label == "fine" else 20
    return _cifar(
        name, d, ["train"], "test", f"{label}_labels", num_classes, normalize, n_train, n_test,
        CIFAR100_MEAN, CIFAR100_STD,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_IMAGE_SIDE = 4096  #: the largest ``size`` an image is resized to (16.8 M pixels)


def _listing(d: Path) -> list[Path]:
    try:
        return sorted(d.iterdir())
    except OSError as e:
        raise UserError(f"data.root: cannot read the folder {d}: {e.strerror or e}") from None


def _class_dirs(split_dir: Path) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    for d in (p for p in _listing(split_dir) if p.is_dir() and not p.name.startswith(".")):
        files = [
            p
            for p in _listing(d)
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not files:
            raise UserError(
                f"data.root: class directory {d} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}); remove it or add images"
            )
        classes[d.name] = files
    if not classes:
        raise UserError(
            f"data.root: {split_dir} has no class directories; expected "
            f"{split_dir}/<class>/<image files>"
        )
    return classes


def _parse_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        hw = (size[0], size[1])
    else:
        raise UserError(
            f"data.options.size: {size!r} should be a positive integer or [height, width]"
        )
    if not all(1 <= s <= MAX_IMAGE_SIDE for s in hw):
        raise UserError(
            f"data.options.size: each side must be between 1 and {MAX_IMAGE_SIDE}, got {size!r}"
        )
    return hw


def _read_images(
    Image, files: list[Path], size: tuple[int, int] | None, mode: str
) -> tuple[np.ndarray, tuple[int, int]]:
    images = []
    first: tuple[Path, tuple[int, int]] | None = None
    for path in files:
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # unreadable, truncated, or a decompression bomb
            raise UserError(f"data.root: cannot read image {path}: {e}") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        hw = (arr.shape[0], arr.shape[1])
        if first is None:
            first = (path, hw)
        elif hw != first[1]:
            raise UserError(
                f"data.root: {path} is {hw[0]}x{hw[1]} but {first[0]} is "
                f"{first[1][0]}x{first[1][1]} (height x width); set data.options.size to resize "
                f"all images to one size"
            )
        images.append(arr)
    assert first is not None
    return np.stack(images), first[1]


def image_folder(
    root: str | None = None,
    size: int | Sequence[int] | None = None,
    grayscale: bool = False,
    normalize: bool = False,
) -> Dataset:
    """Images from ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``, read with Pillow.

    Classes are the sub-directory names, sorted; label ``i`` is the ``i``-th class. Files ending in
    .png, .jpg, .jpeg, .bmp, .gif or .webp are read (others and hidden files are ignored) as RGB
    (or one channel with ``grayscale``) and scaled to [0, 1]. ``size`` (an int or [height, width],
    each side at most 4096) resizes every image (bilinear); without it all images must have the
    same size. With ``normalize`` each channel is standardized by the mean and std of the training
    images.
    """
    layout = "expected ROOT/train/<class>/<images> and ROOT/test/<class>/<images>"
    hw = _parse_size(size)
    grayscale = bool_option("grayscale", grayscale)
    normalize = bool_option("normalize", normalize)
    if root is None:
        raise UserError(f"data.root: dataset 'image_folder' needs data.root; {layout}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"data.root: {_shown(base)} is not a directory (image folder); {layout}")
    for split in ("train", "test"):
        if (base / split).exists() and not (base / split).is_dir():
            raise UserError(
                f"data.root: {base / split} is a file, not a folder (image folder); {layout}"
            )
        if not (base / split).is_dir():
            raise UserError(f"data.root: {base / split} is missing (image folder); {layout}")
    train, test = _class_dirs(base / "train"), _class_dirs(base / "test")
    if list(train) != list(test):
        only_tr = sorted(set(train) - set(test))
        only_te = sorted(set(test) - set(train))
        raise UserError(
            f"data.root: train and test classes differ in {base}: "
            f"only in train: {', '.join(only_tr) or '-'}; only in test: {', '.join(only_te) or '-'}"
        )
    if len(train) < 2:
        raise UserError(
            f"data.root: {base / 'train'} has one class ({next(iter(train))}); "
            f"a classifier needs two"
        )
    try:
        from PIL import Image
    except ImportError:
        raise UserError(
            "data.name: dataset 'image_folder' needs Pillow: pip install pillow"
        ) from None

    mode = "L" if grayscale else "RGB"

    def split(classes: dict[str, list[Path]]) -> tuple[np.ndarray, torch.Tensor, tuple[int, int]]:
        files = [f for fs in classes.values() for f in fs]
        labels = [i for i, fs in enumerate(classes.values()) for _ in fs]
        arr, shape = _read_images(Image, files, hw, mode)
        return arr, torch.tensor(labels, dtype=torch.int64), shape

    a_tr, y_tr, s_tr = split(train)
    a_te, y_te, s_te = split(test)
    if s_tr != s_te:
        raise UserError(
            f"data.root: train images are {s_tr[0]}x{s_tr[1]} but test images are "
            f"{s_te[0]}x{s_te[1]}; set data.options.size to resize all images to one size"
        )

    def tensor(a: np.ndarray) -> torch.Tensor:  # (N, H, W, C) uint8 -> (N, C, H, W) float32
        x = torch.from_numpy(a).permute(0, 3, 1, 2)
        return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)

    x_tr, x_te = tensor(a_tr), tensor(a_te)
    if normalize:
        mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)
        std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        x_tr = (x_tr - mean) / std
        x_te = (x_te - mean) / std
    return Dataset("image_folder", x_tr, y_tr, x_te, y_te, len(train))


def _shown(path: Path) -> str:
    """A data.root for messages: relative roots are read from the working directory, so say which."""
    return f"'{path}'" if path.is_absolute() else f"'{path}' ({path.resolve()})"
