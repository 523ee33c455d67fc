"""CIFAR-10 / CIFAR-100 pickle batches and image folders read from disk (nasframe.datasets_disk)."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import torch
from conftest import CIFAR10_TRAIN_BATCHES, write_cifar10

from nasframe.datasets_disk import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    cifar10,
    cifar100,
    image_folder,
)
from nasframe.errors import UserError

torch.set_num_threads(1)

C10_TRAIN = CIFAR10_TRAIN_BATCHES


def _dump(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.fixture
def c10(tmp_path):
    """A CIFAR-10 fixture in the official layout: 5 train batches of 4 images, a test batch of 3."""
    return tmp_path, write_cifar10(tmp_path)


def _pixel(row: np.ndarray, c: int, r: int, q: int) -> int:
    return int(row[c * 1024 + r * 32 + q])  # red plane, then green, then blue; each row-major


def test_cifar10_shapes_labels_and_pixel_layout(c10):
    root, batches = c10
    ds = cifar10(str(root), normalize=False)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.is_contiguous()
    want_y = [v for name in C10_TRAIN for v in batches[name][b"labels"]]
    assert ds.y_train.tolist() == want_y
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]
    # a pixel in the third batch lands at the right sample / channel / row / column
    row = batches["data_batch_3"][b"data"][1]
    for c, r, q in [(0, 0, 0), (1, 5, 17), (2, 31, 30), (0, 13, 31)]:
        assert ds.x_train[2 * 4 + 1, c, r, q].item() == pytest.approx(_pixel(row, c, r, q) / 255)
    whole = torch.from_numpy(batches["test_batch"][b"data"].astype(np.float32) / 255)
    torch.testing.assert_close(ds.x_test, whole.view(3, 3, 32, 32))
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_cifar10_normalized(c10):
    root, _ = c10
    raw = cifar10(str(root), normalize=False)
    ds = cifar10(str(root))  # normalize=True is the default
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(ds.x_train, (raw.x_train - mean) / std)
    torch.testing.assert_close(ds.x_test, (raw.x_test - mean) / std)
    assert ds.x_train.dtype == torch.float32
    assert not torch.allclose(ds.x_train, raw.x_train)


def test_cifar10_root_can_be_the_batches_folder_and_limits(c10):
    root, batches = c10
    ds = cifar10(str(root / "cifar-10-batches-py"), normalize=False, n_train=6, n_test=2)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    assert (
        ds.y_train.tolist()
        == batches["data_batch_1"][b"labels"] + (batches["data_batch_2"][b"labels"][:2])
    )
    with pytest.raises(UserError, match="n_train"):
        cifar10(str(root), n_train=21)


@pytest.mark.parametrize("protocol", [4, 5])
def test_cifar10_newer_pickle_protocols(c10, protocol):
    root, batches = c10
    d = root / "cifar-10-batches-py"
    for name, b in batches.items():
        _dump(d / name, b, protocol=protocol)
    ds = cifar10(str(root), normalize=False)
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]
    want = batches["data_batch_5"][b"data"][3].reshape(3, 32, 32).astype(np.float32) / 255
    torch.testing.assert_close(ds.x_train[19], torch.from_numpy(want))


def test_cifar10_old_numpy_module_names(c10):
    """The official files (written by numpy 1.x) name numpy.core.multiarray._reconstruct."""
    root, batches = c10
    path = root / "cifar-10-batches-py" / "test_batch"
    blob = path.read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in blob  # protocol 2 GLOBAL opcodes: text lines
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = cifar10(str(root), normalize=False)
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_missing_files_message(tmp_path, c10):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as e:
        cifar10(str(empty))
    msg = str(e.value)
    for part in ("cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch"):
        assert part in msg
    assert "batches.meta" in msg and "cs.toronto.edu" in msg and "\n" not in msg
    root, _ = c10
    (root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError, match=r"^data.root: data_batch_4 not found"):
        cifar10(str(root))
    with pytest.raises(UserError, match="needs data.root"):
        cifar10(None)
    with pytest.raises(UserError, match="not a directory"):
        cifar10(str(tmp_path / "nowhere"))


def test_cifar10_missing_fixture_only(tmp_path):
    """Without the fixture at all (an empty ROOT) the message names the layout."""
    with pytest.raises(UserError, match=r"expected ROOT/cifar-10-batches-py/\{data_batch_1"):
        cifar10(str(tmp_path))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(c10):
    root, _ = c10
    marker = root / "pwned"
    # sanity: this pickle really would run the command if loaded with the plain unpickler
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()
    marker.unlink()
    evil = {b"data": _Evil(marker), b"labels": [0]}
    _dump(root / "cifar-10-batches-py" / "data_batch_2", evil)
    with pytest.raises(UserError, match=r"refusing to load .*data_batch_2.*system"):
        cifar10(str(root))
    assert not marker.exists()


def test_other_globals_and_damaged_files_are_refused(c10):
    root, _ = c10
    d = root / "cifar-10-batches-py"
    _dump(d / "data_batch_1", {b"data": eval, b"labels": []})  # a builtin global
    with pytest.raises(UserError, match=r"refusing to load .*__builtin__\.eval"):
        cifar10(str(root))
    (d / "data_batch_1").write_bytes(b"this is not a pickle")
    with pytest.raises(UserError, match="could not read .*data_batch_1"):
        cifar10(str(root))
    _dump(d / "data_batch_1", [1, 2, 3])
    with pytest.raises(UserError, match="not a CIFAR batch file"):
        cifar10(str(root))
    _dump(d / "data_batch_1", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(UserError, match=r"outside 0\.\.9"):
        cifar10(str(root))
    _dump(d / "data_batch_1", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(UserError, match="3072"):
        cifar10(str(root))


@pytest.fixture
def c100(tmp_path):
    rng = np.random.default_rng(100)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    files = {}
    for name, n in (("train", 10), ("test", 5)):
        files[name] = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, size=n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, size=n)],
        }
        _dump(d / name, files[name])
    _dump(d / "meta", {b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20})
    return tmp_path, files


def test_cifar100_fine_and_coarse(c100):
    root, files = c100
    fine = cifar100(str(root), normalize=False)
    assert fine.num_classes == 100 and fine.name == "cifar100"
    assert fine.x_train.shape == (10, 3, 32, 32) and fine.x_test.shape == (5, 3, 32, 32)
    assert fine.y_train.tolist() == files["train"][b"fine_labels"]
    assert fine.y_test.tolist() == files["test"][b"fine_labels"]
    row = files["test"][b"data"][4]
    assert fine.x_test[4, 2, 7, 9].item() == pytest.approx(_pixel(row, 2, 7, 9) / 255)
    coarse = cifar100(str(root / "cifar-100-python"), label="coarse", normalize=False)
    assert coarse.num_classes == 20
    assert coarse.y_train.tolist() == files["train"][b"coarse_labels"]
    assert coarse.y_train.dtype == torch.int64
    normed = cifar100(str(root))
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normed.x_train, (fine.x_train - mean) / std)
    with pytest.raises(UserError, match="'fine' or 'coarse'"):
        cifar100(str(root), label="superclass")


def test_cifar100_missing_files_message(tmp_path):
    with pytest.raises(UserError) as e:
        cifar100(str(tmp_path))
    msg = str(e.value)
    assert "cifar-100-python" in msg and "train" in msg and "test" in msg and "meta" in msg
    assert "cs.toronto.edu" in msg


# ---------------------------------------------------------------------------------------------
# image folders


def _png(path, hw, color, mode="RGB"):
    from PIL import Image

    arr = np.zeros((*hw, 3), np.uint8)
    arr[...] = color
    arr[0, 0] = (255, 0, 10)  # a marker pixel at the top left
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").convert(mode).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    # class names deliberately listed out of order: labels follow the sorted names
    for split, n in (("train", 3), ("test", 2)):
        for cls, color in (("zebra", (0, 200, 0)), ("ant", (10, 20, 30))):
            for i in range(n):
                _png(root / split / cls / f"{i}.png", (6, 8), color)
    (root / "train" / "ant" / "notes.txt").write_text("ignored")
    return root


def test_image_folder_reads_classes_sorted(folder):
    ds = image_folder(str(folder))
    assert ds.num_classes == 2 and ds.name == "image_folder"
    assert ds.x_train.shape == (6, 3, 6, 8) and ds.x_test.shape == (4, 3, 6, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 0, 1, 1]
    # "ant" (label 0) is (10, 20, 30), "zebra" (label 1) is (0, 200, 0)
    assert ds.x_train[0, :, 3, 5].mul(255).round().tolist() == [10, 20, 30]
    assert ds.x_test[3, :, 5, 7].mul(255).round().tolist() == [0, 200, 0]
    assert ds.x_train[4, :, 0, 0].mul(255).round().tolist() == [255, 0, 10]


def test_image_folder_resize_grayscale_normalize(folder):
    ds = image_folder(str(folder), size=4)
    assert ds.x_train.shape == (6, 3, 4, 4)
    ds = image_folder(str(folder), size=[5, 3], grayscale=True)
    assert ds.x_train.shape == (6, 1, 5, 3) and ds.x_test.shape == (4, 1, 5, 3)
    ds = image_folder(str(folder), normalize=True)
    m = ds.x_train.mean(dim=(0, 2, 3))
    s = ds.x_train.std(dim=(0, 2, 3))
    torch.testing.assert_close(m, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(s, torch.ones(3), atol=1e-4, rtol=0)
    with pytest.raises(UserError, match="size"):
        image_folder(str(folder), size=0)


def test_image_folder_errors(tmp_path, folder):
    with pytest.raises(UserError, match="not a directory"):
        image_folder(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="needs data.root"):
        image_folder(None)
    (folder / "test" / "bee").mkdir()
    with pytest.raises(UserError, match=r"class directory .*bee holds no images"):
        image_folder(str(folder))
    _png(folder / "test" / "bee" / "0.png", (6, 8), (1, 2, 3))
    with pytest.raises(UserError, match=r"classes differ.*only in test: bee"):
        image_folder(str(folder))
    _png(folder / "train" / "bee" / "0.png", (7, 8), (1, 2, 3))
    with pytest.raises(UserError, match=r"is 7x8 but .* is 6x8.*data.options.size"):
        image_folder(str(folder))
    assert image_folder(str(folder), size=6).num_classes == 3
    (folder / "train" / "bee" / "0.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot read image .*bee/0.png"):
        image_folder(str(folder), size=6)


def test_image_folder_missing_test_split(tmp_path):
    _png(tmp_path / "r" / "train" / "a" / "0.png", (4, 4), (0, 0, 0))
    with pytest.raises(
        UserError,
        match=r"^data.root: .*test is missing \(image folder\); expected ROOT/train/<class>",
    ):
        image_folder(str(tmp_path / "r"))


def test_image_folder_without_pillow(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(UserError, match="pip install pillow"):
        image_folder(str(folder))
