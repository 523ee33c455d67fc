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
        assert all(row[k] > 0 for k in ("native_us", "unit_affine_us", "channels_last_us"))
    assert all(r["eager_us"] > 0 for r in result["sep_conv"])
