"""benchmarks/mnist1d.py: seeds run in parallel processes merge into the sequential format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--config",
    str(ROOT / "spaces" / "digits.yaml"),
    "--random-per-seed",
    "1",
    "--set=search.epochs=2",
    "--set=search.warmup_epochs=1",
    "--set=train.epochs=1",
]


def bench(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mnist1d.py"), *TINY, *args]
    subprocess.run([*cmd, "--json", str(out)], check=True, cwd=tmp_path, env=env)
    return json.loads(out.read_text())


def test_parallel_seeds_merge_in_seed_order(tmp_path):
    both = bench(tmp_path, "both", "--seeds", "2", "--jobs", "2")
    assert both["seeds_done"] == [0, 1] and both["jobs"] == 2
    assert len(both["searched_test_acc"]) == len(both["random_test_acc"]) == 2
    assert [r["seed"] for r in both["random_archs"]] == [0, 1]
    assert len(both["searched_latency_ms"]) == 2 and min(both["searched_latency_ms"]) > 0
    assert both["searched_mean"] == float(np.mean(both["searched_test_acc"]))
    assert both["random_mean"] == float(np.mean(both["random_test_acc"]))
    assert not list(tmp_path.glob("both.seed*.json"))  # the per-seed files are merged away
    # The second seed alone, in this process's way, gives the same figures and architectures.
    alone = bench(tmp_path, "alone", "--seeds", "1", "--first-seed", "1")
    assert alone["searched_test_acc"] == both["searched_test_acc"][1:]
    assert alone["searched_archs"] == both["searched_archs"][1:]
    assert alone["random_archs"] == both["random_archs"][1:]


def test_arch_latency_times_the_searched_networks_of_several_runs(tmp_path):
    run = bench(tmp_path, "run", "--seeds", "1", "--random-per-seed", "0")
    assert len(run["searched_samples"]) == 1
    out = tmp_path / "latency.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "benchmarks" / "arch_latency.py")
    files = [str(tmp_path / "run.json")] * 2
    subprocess.run(
        [sys.executable, script, *files, "--rounds", "2", "--json", str(out)],
        check=True,
        cwd=tmp_path,
        env=env,
    )
    timed = json.loads(out.read_text())
    assert [n["arch"] for n in timed["networks"]] == run["searched_archs"] * 2
    assert all(n["latency_ms"] > 0 for n in timed["networks"])


def test_latency_table_benchmark_compares_part_statistics_on_the_same_passes(tmp_path):
    out = tmp_path / "table.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "benchmarks" / "latency_table.py")
    config = str(ROOT / "spaces" / "digits.yaml")
    args = ["--config", config, "--archs", "5", "--rounds", "1", "--json", str(out)]
    subprocess.run([sys.executable, script, *args], check=True, cwd=tmp_path, env=env)
    result = json.loads(out.read_text())
    by_statistic = result["pairs_in_order_by_part_statistic"]
    assert set(by_statistic) == {"median", "min", "mean", "p25"}
    assert all(0.0 <= v <= 1.0 for v in by_statistic.values())
    # The median of the recorded passes is what the table stored: the same prediction.
    assert by_statistic["median"] == result["pairs_in_order"]
    assert len(result["predicted_ms"]) == len(result["measured_ms"]) == 5
