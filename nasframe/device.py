"""Choosing the torch device from the config's ``device`` field."""

from __future__ import annotations

import torch

from .errors import UserError

__all__ = ["resolve_device"]


def resolve_device(spec: str, where: str = "device", fix: str = "") -> torch.device:
    """``auto`` picks CUDA when there is one; asking for CUDA without it is a user error (of the
    config field ``where``; ``fix``: the advice, if not to use ``auto``)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"{where}: '{spec}' was requested but CUDA is not available on this machine; "
                + (fix or f"use {where}: auto (or --set {where}=cpu)")
            )
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"{where}: '{spec}' does not exist; this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
        return dev
    if spec == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{where}: 'mps' was requested but is not available; use {where}: auto")
    return torch.device(spec)
