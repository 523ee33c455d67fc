"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import UserError

__all__ = [
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "write_json",
    "rng_state",
    "set_rng_state",
]


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file renamed over it: a reader
    never sees half a file, and a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename: never half-written."""
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no checkpoint here; is this a nasframe run directory?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted, foreign or unsafe file: torch's text is a page long
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            first = "it holds Python objects other than tensors and plain containers, refused"
        raise UserError(
            f"{path}: not a readable nasframe checkpoint ({first}); it may be damaged or not "
            "from nasframe"
        ) from None


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically."""
    text = json.dumps(data, indent=2, allow_nan=True).encode()
    atomic_write(Path(path), lambda f: f.write(text))


def rng_state() -> dict[str, Any]:
    """Torch's global RNG states (CPU and CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
