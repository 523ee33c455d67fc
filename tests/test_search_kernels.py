"""benchmarks/search_kernels.py: the kernel options it times compute the same function."""

from __future__ import annotations

import json

from conftest import load_benchmark


def test_unit_affine_batchnorm_is_the_same_function_and_every_figure_is_reported(tmp_path):
    search_kernels = load_benchmark("search_kernels")
    out = tmp_path / "k.json"
    search_kernels.main(["--device", "cpu", "--repeats", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert [r["shape"] for r in result["bn"]] == [list(s) for s in search_kernels.SHAPES]
    for row in result["bn"]:
        assert row["unit_affine_max_abs_diff"] == 0.0  # weight 1, bias 0: bit for bit on the CPU
        assert row["composite_max_abs_diff"] < 1e-4  # the same function, other rounding
        kinds = ("native", "unit_affine", "channels_last", "composite")
        assert all(row[f"{k}_us"] > 0 for k in kinds)
    for row in result["sep_conv"]:
        assert row["eager_us"] > 0
        assert row["functional_max_abs_diff"] == 0.0  # the same ops in the same order


def test_compiled_sep_conv_computes_the_same_function(tmp_path):
    """The ``--compile`` figure (on by default on CUDA) times a SepConv that computes what the
    module does, up to the rounding of fused kernels."""
    search_kernels = load_benchmark("search_kernels")
    torch = search_kernels.torch
    shape = (2, 4, 6, 6)
    x = torch.randn(*shape, requires_grad=True)
    weights = [
        torch.randn(4, 1, 3, 3, requires_grad=True),
        torch.randn(4, 4, 1, 1, requires_grad=True),
        torch.randn(4, 1, 3, 3, requires_grad=True),
        torch.randn(4, 4, 1, 1, requires_grad=True),
    ]
    row = search_kernels.compiled_sep_conv(x, weights, torch.randn(*shape), torch.device("cpu"), 1)
    assert row["compile_s"] > 0 and row["compiled_us"] > 0
    assert 0 <= row["compiled_max_abs_diff"] < 1e-4
