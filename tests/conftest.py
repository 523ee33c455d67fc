"""Shared fixtures: single-threaded torch, paths, and running the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SPACES = ROOT / "spaces"


def run_cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m nasframe ARGS`` in a fresh process (as a user would)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nasframe", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


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
