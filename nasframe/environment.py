"""What a run ran on, so that its results can be reproduced and compared.

A search or training is deterministic on one machine, torch build and thread count, not across
them: summaries and checkpoints record the versions, the device and the threads, and a run
resumed somewhere else says so.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["environment", "environment_changes", "resume_note", "cpu_name"]

# What changes the numbers a run computes (the rest is recorded for reference).
_DETERMINING = ("torch", "numpy", "device_name", "threads", "cuda", "cudnn")


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Versions of nasframe, Python, torch and numpy, the device and the CPU threads."""
    from . import __version__

    env: dict[str, Any] = {
        "nasframe": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a str subclass weights_only refuses
        "numpy": np.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
    }
    if device.type == "cuda":
        env["device_name"] = str(torch.cuda.get_device_name(device))
        env["cuda"] = str(torch.version.cuda)
        env["cudnn"] = int(torch.backends.cudnn.version() or 0)
    else:
        env["device_name"] = env["cpu"]
    return env


def environment_changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``key: before -> now`` for each difference that can change a run's numbers."""
    if not before:
        return []
    return [
        f"{key} {before.get(key)} -> {now.get(key)}"
        for key in _DETERMINING
        if before.get(key) != now.get(key)
    ]


def resume_note(before: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """What to tell a user whose run resumes on another set-up than it was checkpointed on."""
    changes = environment_changes(before, now)
    if not changes:
        return None
    return (
        f"note: resumed on another set-up than the checkpoint's ({'; '.join(changes)}): the run "
        "continues, but need not end bit for bit where an uninterrupted one would"
    )
