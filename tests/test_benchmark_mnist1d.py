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
