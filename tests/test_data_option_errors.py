"""Bad dataset options, image folders and optimizer options: one located line each, exit status 2,
no traceback (`nasframe validate --data`, or the functions themselves)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from conftest import SPACES
from pydantic import ValidationError

import nasframe.data
import nasframe.search
from nasframe.cli import main
from nasframe.config import DataConfig, OptimizerConfig
from nasframe.data import load_dataset
from nasframe.datasets import Dataset
from nasframe.datasets_disk import cifar10, image_folder
from nasframe.errors import UserError
from nasframe.optim import build_optimizer

DATA = "data: {name: digits, valid_fraction: 0.5}\n"


def _config(tmp_path, data: str, optimizer: str | None = None):
    """spaces/mlp.yaml with another (block-style) data section and search optimizer."""
    text = (SPACES / "mlp.yaml").read_text()
    assert DATA in text
    text = text.replace(DATA, data)
    if optimizer is not None:
        old = "  optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}\n"
        assert old in text
        text = text.replace(old, optimizer)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def _line_of(path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


def _refused(path, capsys) -> str:
    """The one line `validate --data` says about ``path``, which it must refuse."""
    assert main(["validate", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "name, options, at, expected",
    [
        ("digits", "test_size: 0", "test_size", "test_size: must be between 1 and 1795 ("),
        ("digits", "test_size: -1", "test_size", "test_size: must be between 1 and 1795 ("),
        ("digits", "test_size: 5000", "test_size", "test_size: must be between 1 and 1795 ("),
        ("digits", "test_size: abc", "test_size", "test_size: expected an integer, got 'abc'"),
        ("digits", "test_size: 1.5", "test_size", "test_size: expected an integer, got 1.5"),
        (
            "digits",
            "testsize: 9",
            "testsize",
            "testsize: unknown option of dataset 'digits'; it takes test_size; "
            "did you mean 'test_size'?",
        ),
        ("digits", "nope: 1", "nope", "nope: unknown option of dataset 'digits'; it takes "),
        ("mnist1d", "n_train: 5", "n_train", "n_train: unknown option of dataset 'mnist1d'; it "),
        ("digits", "root: /x", "root", "root: set data.root instead"),
        ("synthetic", "n_train: 1e2.5", "n_train", "n_train: expected an integer, got '1e2.5'"),
        ("synthetic", "n_train: 25e-1", "n_train", "n_train: expected an integer, got 2.5"),
        ("synthetic", "n_train: 1", "n_train", "n_train: must be at least 2, got 1"),
        ("synthetic", "n_test: 0", "n_test", "n_test: must be at least 1, got 0"),
        ("synthetic", "classes: abc", "classes", "classes: expected an integer, got 'abc'"),
        ("synthetic", "classes: 1", "classes", "classes: must be at least 2, got 1"),
        ("synthetic", "seed: abc", "seed", "seed: expected an integer, got 'abc'"),
        ("synthetic", "shape: []", "shape", "shape: [] should be a list of positive integers"),
    ],
)
def test_a_bad_dataset_option_names_itself_at_its_line(
    tmp_path, capsys, name, options, at, expected
):
    cfg = _config(tmp_path, f"data:\n  name: {name}\n  options:\n    {options}\n")
    line = _refused(cfg, capsys)
    assert line.startswith(f"{cfg}:{_line_of(cfg, f'    {at}:')}: data.options.{expected}"), line
    if "must be between 1 and 1795" in expected:
        assert line.endswith(f", got {options.split()[-1]}")


@pytest.mark.parametrize(
    "options",
    ["n_train: 1000000000000", "n_train: 1e12", "shape: [100000, 100000, 100000]"],
    ids=["n", "n_float", "shape"],
)
def test_synthetic_data_too_big_for_memory_is_refused_before_allocating(tmp_path, capsys, options):
    cfg = _config(tmp_path, f"data:\n  name: synthetic\n  options:\n    {options}\n")
    line = _refused(cfg, capsys)
    assert line.startswith(f"{cfg}:{_line_of(cfg, 'options:')}: data.options: the synthetic data ")
    assert "GiB" in line and line.endswith("make shape, n_train, n_test or classes smaller")


def test_a_whole_number_written_with_an_exponent_is_an_integer_option(tmp_path, capsys):
    cfg = _config(tmp_path, "data:\n  name: digits\n  options:\n    test_size: 1e2\n")
    assert main(["validate", "--data", str(cfg)]) == 0
    assert "849 train / 848 valid" in capsys.readouterr().out  # 1797 - 100 samples, halved


def test_the_digits_test_size_may_be_as_small_as_one(tmp_path, capsys):
    cfg = _config(tmp_path, "data:\n  name: digits\n  options:\n    test_size: 1\n")
    assert main(["validate", "--data", str(cfg)]) == 0
    assert "898 train / 898 valid" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# image folders


def _png(path, hw=(6, 8)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), 7, np.uint8), "RGB").save(path)


def _folder(root, classes=("a", "b")):
    for split in ("train", "test"):
        for c in classes:
            _png(root / split / c / "0.png")
    return root


def _break_corrupt(root):
    (root / "train" / "b" / "0.png").write_bytes(b"not a png")


def _break_mixed(root):
    _png(root / "train" / "b" / "1.png", (7, 8))


def _break_classes(root):
    _png(root / "test" / "c" / "0.png")


def _break_empty(root):
    (root / "test" / "b" / "0.png").unlink()


def _break_no_classes(root):
    for c in ("a", "b"):
        (root / "test" / c / "0.png").unlink()
        (root / "test" / c).rmdir()


def _break_train_file(root):
    shutil.rmtree(root / "train")
    (root / "train").write_text("")


def _break_test_missing(root):
    shutil.rmtree(root / "test")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_break_corrupt, r"cannot read image .*b/0\.png"),
        (_break_mixed, r"is 7x8 but .* is 6x8 \(height x width\); set data\.options\.size"),
        (
            _break_classes,
            r"train and test classes differ in .*: only in train: -; only in test: c$",
        ),
        (_break_empty, r"class directory .*test/b holds no images"),
        (_break_no_classes, r".*test has no class directories"),
        (_break_train_file, r".*train is a file, not a folder \(image folder\)"),
        (_break_test_missing, r".*test is missing \(image folder\)"),
    ],
    ids=["corrupt", "mixed", "classes", "empty", "no-classes", "train-file", "test-missing"],
)
def test_image_folder_problems_are_located_at_data_root(tmp_path, capsys, damage, expected):
    pytest.importorskip("PIL")
    root = _folder(tmp_path / "imgs")
    damage(root)
    cfg = _config(tmp_path, f"data:\n  name: image_folder\n  root: {root}\n")
    line = _refused(cfg, capsys)
    prefix = f"{cfg}:{_line_of(cfg, 'root:')}: data.root: "
    assert line.startswith(prefix), line
    assert re.search(expected, line[len(prefix) :]), line


def test_image_folder_with_one_class_is_refused(tmp_path):
    pytest.importorskip("PIL")
    root = _folder(tmp_path / "imgs", classes=("a",))
    with pytest.raises(UserError, match=r"^data\.root: .*train has one class \(a\); a classifier"):
        image_folder(str(root))


@pytest.mark.parametrize(
    "options, expected",
    [
        ("size: 100000", "size: each side must be between 1 and 4096, got 100000"),
        ("size: [8, 5000]", "size: each side must be between 1 and 4096, got [8, 5000]"),
        ("size: abc", "size: 'abc' should be a positive integer or [height, width]"),
        ("grayscale: maybe", "grayscale: expected true or false, got 'maybe'"),
        ("normalize: 1", "normalize: expected true or false, got 1"),
    ],
)
def test_image_folder_options_are_checked_before_reading(tmp_path, capsys, options, expected):
    cfg = _config(
        tmp_path, f"data:\n  name: image_folder\n  root: /nowhere\n  options:\n    {options}\n"
    )
    line = _refused(cfg, capsys)
    key = options.split(":")[0]
    assert line == f"{cfg}:{_line_of(cfg, key + ':')}: data.options.{expected}"


def test_cifar_options_are_checked_before_the_files(tmp_path):
    with pytest.raises(UserError, match=r"^data\.options\.n_train: expected an integer, got 'x'$"):
        cifar10(str(tmp_path), n_train="x")
    with pytest.raises(UserError, match=r"^data\.options\.n_test: must be at least 1, got 0$"):
        cifar10(str(tmp_path), n_test=0)
    with pytest.raises(UserError, match=r"^data\.options\.normalize: expected true or false"):
        cifar10(str(tmp_path), normalize="no")


# ---------------------------------------------------------------------------------------------
# optimizer options


def _sgd_params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"momentum": "abc"}, "search.optimizer.momentum: expected a number, got 'abc'"),
        (
            {"momentum": -5},
            "search.optimizer.momentum: optimizer 'sgd': Invalid momentum value: -5",
        ),
        (
            {"weight_decay": -1},
            "search.optimizer.weight_decay: optimizer 'sgd': Invalid weight_decay value: -1",
        ),
        (
            {"nesterov": True},
            "search.optimizer.nesterov: optimizer 'sgd': Nesterov momentum requires a momentum",
        ),
        (
            {"name": "adam", "betas": 5},
            "search.optimizer.betas: expected a list of 2 numbers, got 5",
        ),
        (
            {"name": "adam", "betas": [0.9, "x"]},
            "search.optimizer.betas: expected a list of 2 numbers, got [0.9, 'x']",
        ),
        (
            {"name": "adam", "betas": [5, 0.9]},
            "search.optimizer.betas: optimizer 'adam': Invalid beta parameter at index 0: 5",
        ),
        ({"name": "adam", "eps": -1.0}, "search.optimizer.eps: optimizer 'adam': Invalid epsilon"),
    ],
)
def test_bad_optimizer_options_start_with_their_config_path(options, expected):
    cfg = OptimizerConfig(**{"name": "sgd", "lr": 0.1, **options})
    with pytest.raises(UserError) as e:
        build_optimizer(_sgd_params(), cfg, "search.optimizer")
    assert str(e.value).startswith(expected), str(e.value)


@pytest.mark.parametrize(
    "options, where, text",
    [
        ({"weight_decay": "1e-4"}, ("weight_decay",), "1e-4"),
        ({"betas": ["0.5", 0.9]}, ("betas", 0), "0.5"),
    ],
)
def test_numbers_quoted_as_text_are_refused_as_for_lr(options, where, text):
    with pytest.raises(ValidationError) as e:
        OptimizerConfig(name="adam", lr=0.1, **options)
    (err,) = e.value.errors()
    assert err["ctx"]["at"] == where
    assert err["msg"] == f"expected a number, got the text '{text}'; write {text} without quotes"


def test_a_boolean_option_given_text_by_the_python_api_is_refused_when_built():
    cfg = OptimizerConfig.model_construct(name="sgd", lr=0.1, lr_schedule="constant", gc=None)
    cfg.__pydantic_extra__ = {
        "nesterov": "yes"
    }  # validation refuses it: tests/test_config_followups
    with pytest.raises(UserError) as e:
        build_optimizer(_sgd_params(), cfg, "search.optimizer")
    assert str(e.value).startswith("search.optimizer.nesterov: expected true or false, got 'yes'")


def test_text_given_to_the_optimizer_by_the_python_api_is_read_as_numbers():
    cfg = OptimizerConfig.model_construct(name="adam", lr=0.1, lr_schedule="constant", gc=None)
    cfg.__pydantic_extra__ = {"weight_decay": "1e-4", "betas": ["0.5", 0.9]}
    opt = build_optimizer(_sgd_params(), cfg, "train.optimizer")
    assert opt.defaults["weight_decay"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.9)


def test_a_bad_optimizer_option_is_reported_without_a_traceback(tmp_path, capsys):
    opt = "  optimizer:\n    name: sgd\n    lr: 0.05\n    momentum: abc\n"
    cfg = _config(tmp_path, DATA, opt)
    assert "optimizer.momentum: expected a number, got 'abc'" in _refused(cfg, capsys)


def test_a_bad_optimizer_option_is_located_once_its_path_is_passed(tmp_path, capsys, monkeypatch):
    def located(params, cfg, where="search.optimizer"):
        return build_optimizer(params, cfg, where)

    monkeypatch.setattr(nasframe.search, "build_optimizer", located)
    opt = "  optimizer:\n    name: sgd\n    lr: 0.05\n    momentum: abc\n"
    cfg = _config(tmp_path, DATA, opt)
    line = _refused(cfg, capsys)
    assert line == (
        f"{cfg}:{_line_of(cfg, 'momentum: abc')}: search.optimizer.momentum: "
        "expected a number, got 'abc'"
    )


def test_a_plugin_dataset_with_an_empty_split_is_refused_when_loaded(monkeypatch):
    def empty_test(root=None, **options):
        x = torch.zeros(4, 1, 8)
        return Dataset("empty", x, torch.zeros(4, dtype=torch.int64), x[:0], x.new_zeros(0), 2)

    monkeypatch.setattr(nasframe.data.registry, "get", lambda kind, name: empty_test)
    cfg = DataConfig(name="digits", options={"anything": 1})  # **options: not checked by name
    with pytest.raises(
        UserError, match=r"^data\.options: dataset 'digits' gave an empty test split$"
    ):
        load_dataset(cfg)
