"""Follow-ups to the error hints: a plugin's own message that only happens to contain a short option
name (``size mismatch``) is the plugin's bug, not the user's; a CUDA library's allocation failure
(cuBLAS, cuDNN) is memory running out; ``export --out`` takes ``MODEL.PT2`` and answers ``.pt2``
alone with a name that works."""

from __future__ import annotations

import pytest
import torch

import nasframe.cli
from nasframe import UserError
from nasframe.cli import main
from nasframe.config import DataConfig, OptimizerConfig
from nasframe.data import load_dataset
from nasframe.errors import out_of_memory
from nasframe.optim import build_optimizer
from nasframe.registry import PluginFailure, named_option

# ---------------------------------------------------------------- 1. which option a message names

NOT_NAMED = [  # torch's and numpy's own words, where an option's name is an everyday word
    ("size mismatch for weight: copying a param with shape torch.Size([3])", {"size": 3}),
    ("Error(s) in loading state_dict for Linear:\n\tsize mismatch for weight: copying", {"size": 3}),
    ("grid_sample(): expected mode to be 'bilinear', 'nearest' or 'bicubic', but got: 'x'", {"mode": 1}),
    ("Got 3D input, but bilinear mode needs 4D input", {"mode": "linear"}),
    ("cdist only supports non-negative p values", {"p": 2}),
    ("The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1", {"size": 3}),
    ("Expected size 3 but got size 4 for tensor number 1 in the list.", {"size": 3, "n": 1}),
    ("cannot reshape array of size 3 into shape (2,)", {"size": 3}),
]  # fmt: skip


@pytest.mark.parametrize("message, options", NOT_NAMED)
def test_a_short_option_name_in_other_words_is_not_named(message, options):
    assert named_option(message, options) is None


NAMED = [  # (message, options, the option it names)
    ("Invalid learning rate: -1", {"lr": 1, "learning rate": None}, "learning rate"),
    ("Invalid momentum value: -0.5", {"momentum": -0.5, "nesterov": True}, "momentum"),
    ("Invalid weight_decay value: -1", {"weight_decay": -1}, "weight_decay"),
    ("Invalid beta parameter at index 0: 5", {"betas": 1, "beta": None}, "beta"),
    ("`fused` and `foreach` cannot be `True` together.", {"foreach": True, "fused": True}, "fused"),
    ("Nesterov momentum requires a momentum and zero dampening", {"dampening": 1, "nesterov": 1}, "nesterov"),
    ("n must be positive, got -1", {"n": -1}, "n"),
    ("size must be at least 1, got 0", {"size": 0}, "size"),
    ("momentum 0.9 is out of range", {"momentum": 0.9}, "momentum"),
    ("unexpected option(s) ['k']", {"k": 1}, "k"),
    ('unknown mode "fast"', {"mode": "fast"}, "mode"),
    ("bad crop: size=0", {"size": 0}, "size"),
    ("size: each side must be between 1 and 4096", {"size": 0}, "size"),
    ("Invalid padding string 'x'", {"padding": "x"}, "padding"),
    ("cannot use theta_int with ordinal choices", {"theta_int": [1]}, "theta_int"),
]  # fmt: skip


@pytest.mark.parametrize("message, options, key", NAMED)
def test_a_refusal_of_an_option_names_it(message, options, key):
    assert named_option(message, options) == key


def test_a_dataset_plugin_s_size_mismatch_is_its_own_bug(plugin):
    def mismatched(root=None, size=8, mode="crop"):
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        raise ValueError("size mismatch for weight: copying a param with shape torch.Size([3])")

    plugin("dataset", "test_size_mismatch", mismatched)
    with pytest.raises(PluginFailure, match=r"dataset plugin 'test_size_mismatch' .*size mismatch"):
        load_dataset(DataConfig(name="test_size_mismatch", options={"size": 4}))
    with pytest.raises(UserError, match=r"^data\.options: size must be at least 1, got 0$") as e:
        load_dataset(DataConfig(name="test_size_mismatch", options={"size": 0}))
    assert not isinstance(e.value, PluginFailure)


def test_an_optimizer_plugin_s_own_mode_error_is_its_bug(plugin):
    def moded(params, lr=0.1, mode="fast"):
        raise ValueError("expected mode to be 'bilinear' or 'nearest', but got: 'x'")

    plugin("optimizer", "test_moded", moded)
    cfg = OptimizerConfig(name="test_moded", lr=0.1, mode="fast")
    with pytest.raises(PluginFailure, match=r"optimizer plugin 'test_moded' .*expected mode"):
        build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg, "train.optimizer")


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"momentum": -0.5}, "train.optimizer.momentum: optimizer 'sgd': Invalid momentum value"),
        ({"dampening": 0.5, "nesterov": True}, "train.optimizer.nesterov: optimizer 'sgd': Nest"),
    ],
)
def test_torch_s_refusals_still_name_their_option(options, expected):
    cfg = OptimizerConfig(name="sgd", lr=0.1, **options)
    with pytest.raises(UserError) as e:
        build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg, "train.optimizer")
    assert str(e.value).startswith(expected), str(e.value)


# ---------------------------------------------------------------- 2. a CUDA library out of memory

ALLOC_FAILED = [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
]


@pytest.mark.parametrize("text", ALLOC_FAILED)
def test_a_cuda_library_s_allocation_failure_is_out_of_memory(text):
    assert out_of_memory(RuntimeError(text))


@pytest.mark.parametrize(
    "text",
    [
        "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, ...)`",
        "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED",
        "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
    ],
)
def test_other_cuda_library_failures_are_not(text):
    assert not out_of_memory(RuntimeError(text))


def test_a_plugin_whose_cublas_handle_cannot_be_made_is_not_blamed(plugin):
    def alloc_failed(root=None):
        raise RuntimeError(ALLOC_FAILED[0])

    plugin("dataset", "test_alloc_failed", alloc_failed)
    with pytest.raises(RuntimeError) as e:
        load_dataset(DataConfig(name="test_alloc_failed"))
    assert not isinstance(e.value, UserError)  # memory: left to the CLI's out-of-memory line


def test_the_cli_reports_a_cublas_allocation_failure_as_out_of_memory(monkeypatch, capsys):
    def fails(args):
        raise RuntimeError(ALLOC_FAILED[0])

    monkeypatch.setattr(nasframe.cli, "_cmd_show", fails)
    assert main(["show", "anything"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("out of memory (CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling")


# ---------------------------------------------------------------- 3. export --out


def _refused(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", [".pt2", ".PT2"])
def test_export_out_that_is_only_the_suffix_suggests_model_pt2(digits_runs, tmp_path, capsys, name):
    run = digits_runs["train"]
    out = tmp_path / name
    err = _refused(["export", str(run), "--out", str(out)], capsys)
    assert err == f"--out {out}: an export is a .pt2 file; write --out {tmp_path / 'model.pt2'}"
    assert list(tmp_path.iterdir()) == []
    bare = _refused(["export", str(run), "--out", name], capsys)
    assert bare == f"--out {name}: an export is a .pt2 file; write --out model.pt2"


@pytest.mark.parametrize("name", ["MODEL.PT2", "net.Pt2"])
def test_export_takes_the_suffix_in_any_case(digits_runs, tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["export", str(digits_runs["train"]), "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert torch.export.load(out).module()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
