"""Shared fixtures: single-threaded torch, paths, and running the CLI."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe import registry

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SPACES = ROOT / "spaces"


def cli_command(*args: str) -> list[str]:
    """The command line ``python -m nasframe ARGS``, for a fresh process (as a user would run
    it)."""
    return [sys.executable, "-m", "nasframe", *args]


def run_cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m nasframe ARGS`` in a fresh process (as a user would)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


@pytest.fixture
def plugin():
    """Register a plugin in code for one test: ``plugin(kind, name, obj)`` (removed after it;
    use names of the test's own, never a built-in name)."""
    added: list[tuple[str, str]] = []

    def add(kind: str, name: str, obj: object) -> None:
        registry.register(kind, name, override=True)(obj)
        added.append((kind, name))

    yield add
    for kind, name in added:
        registry._discover()[kind].pop(name, None)


@pytest.fixture
def write_yaml(tmp_path):
    """Write a YAML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "cfg.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


def interrupt_at_first_checkpoint(run_dir: Path, run: Callable[[], object]) -> None:
    """Call ``run()`` and send SIGINT as soon as it has written its first checkpoint.

    The run must stop with ``Interrupted`` telling the user to ``--resume``.
    """
    from nasframe.search import Interrupted

    done = threading.Event()

    def interrupt():
        while not (run_dir / "checkpoint.pt").exists() and not done.is_set():
            time.sleep(0.001)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt)
    watcher.start()
    try:
        with pytest.raises(Interrupted, match="--resume"):
            run()
    finally:
        done.set()
        watcher.join()


def signal_at_first_checkpoint(
    cmd: list[str], run_dir: Path, sig: int
) -> subprocess.CompletedProcess:
    """Start ``cmd`` (single-threaded torch: bit-for-bit needs the same thread count) and send
    ``sig`` as soon as ``run_dir`` holds its first checkpoint; the finished process, with stderr.

    The run must not have finished by then (its summary.json must not exist).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert not (run_dir / "summary.json").exists(), "the run finished before the signal"
    return subprocess.CompletedProcess(cmd, proc.returncode, None, err)


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 3, seed: int = 10) -> dict:
    """Write a random CIFAR-10 in the official ``cifar-10-batches-py`` layout under ``root``
    (5 training batches of ``per_batch`` images, a test batch of ``n_test``); return the batches."""
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict:
        return {
            b"batch_label": b"fixture",
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"filenames": [b"img%d.png" % i for i in range(n)],
        }

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {name: batch(per_batch) for name in CIFAR10_TRAIN_BATCHES}
    batches["test_batch"] = batch(n_test)
    meta = {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072}
    for name, obj in [*batches.items(), ("batches.meta", meta)]:
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return batches


def frozen_round_trip(space, sample, tmp_path: Path):
    """Export ``sample`` of ``space`` as arch.yaml, load it back and check it is the same space with
    every choice fixed; return the frozen space and the exported dict."""
    import yaml

    from nasframe import SearchSpace, load_config

    arch = space.freeze(sample)
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(arch, sort_keys=False))
    frozen, _ = load_config(path)
    assert frozen.space_hash == space.hash
    fixed = SearchSpace(frozen)
    assert fixed.choices == []
    # The frozen description equals the sampled one.
    assert fixed.describe([]) == space.describe(sample)
    return fixed, arch


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory) -> dict[str, Path]:
    """A finished one-epoch search of digits, and a one-epoch training of its architecture (once
    per test module; tests that change them work on copies)."""
    from nasframe.cli import main

    root = tmp_path_factory.mktemp("digits_runs")
    search, train = root / "search", root / "train"
    args = ["--quiet", "--set", "search.epochs=1"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(search), *args]) == 0
    args = ["--quiet", "--set", "train.epochs=1"]
    assert main(["train", str(search / "arch.yaml"), "--out", str(train), *args]) == 0
    return {"search": search, "train": train}
