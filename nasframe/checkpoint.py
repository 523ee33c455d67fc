"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import CannotWrite, atomic_write, remove_stale_temps
from .errors import UserError

__all__ = [
    "atomic_write",
    "remove_stale_temps",
    "CannotWrite",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "learned_state",
    "first_non_finite",
    "first_damaged",
    "write_json",
    "rng_state",
    "set_rng_state",
]

# What torch.save's legacy (non-zip) format starts with: its magic number, pickled.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename: never half-written."""
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only); a file that cannot be read
    is one line saying why (empty, truncated, not a PyTorch file, unsafe), not torch's page."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no checkpoint here; is this a nasframe run directory?")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted, foreign or unsafe file: torch's text is a page long
        raise UserError(
            f"{path}: not a readable nasframe checkpoint: {_unreadable(path, e)}"
        ) from None


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in a few words, from the file's first bytes
    (a zip archive is torch.save's format, a pickle its legacy one) and the error."""
    unsafe = "Unsupported global" in str(error) or "GLOBAL" in str(error)
    if unsafe and isinstance(error, pickle.UnpicklingError):  # torch's weights-only refusal
        return "it holds Python objects other than tensors and plain containers, refused"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        is_zip = head.startswith(b"PK") and zipfile.is_zipfile(path)
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        return f"cannot read it ({getattr(e, 'strerror', None) or e})"
    if not head:
        return "the file is empty"
    if is_zip and not any(n.endswith("/data.pkl") for n in names):
        return "not a PyTorch file (a zip archive without torch's data.pkl)"
    if head.startswith(b"PK") and not is_zip:
        return "truncated or damaged (its zip archive has lost its end)"
    if head.startswith((b"PK", _LEGACY_MAGIC)):
        return f"truncated or damaged ({_short(error)})"
    if head[:1] == b"\x80":  # a pickle's PROTO opcode: a pickle, but not one torch.save wrote
        if _pickles_objects(path):
            return "it holds Python objects other than tensors and plain containers, refused"
        return "not a PyTorch file (a plain Python pickle)"
    text = _text_start(head)
    if text:
        return f"not a PyTorch file (it holds text: {text!r})"
    return "not a PyTorch file (neither a zip archive nor a pickle)"


def _short(error: Exception) -> str:
    """The gist of a torch.load error: miniz's or the unpickler's reason, else its first line."""
    text = str(error)
    for pattern in (r"zip archive: ([^.\n]+)", r"WeightsUnpickler error:\s*([^\n]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()[:80]
    first = text.strip().splitlines()[0][:80] if text.strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _text_start(head: bytes) -> str:
    """The first line of ``head`` (up to 24 characters) when it is printable UTF-8 text, else ''."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of ``head`` is still text
        text = head[: e.start].decode("utf-8") if e.start >= len(head) - 3 else ""
    lines = text.strip().splitlines()
    return lines[0][:24] if lines and lines[0].isprintable() else ""


def _pickles_objects(path: Path) -> bool:
    """Whether the pickle in ``path`` names Python globals (classes, functions): read opcode by
    opcode, never unpickled."""
    try:
        with open(path, "rb") as f:
            return any("GLOBAL" in op.name for op, _, _ in pickletools.genops(f))
    except Exception:  # a damaged pickle: what it would have called is unknown
        return False


def load_weights(
    model: torch.nn.Module, path: Path, config_path: Path, *, growth: bool = False, purpose: str
) -> None:
    """Load the state dict in ``path`` into ``model`` (built from ``config_path``); weights that
    do not fit are refused naming the first mismatch, and weights that are not finite naming the
    first such tensor (a diverged training: nothing to ``purpose``). ``growth``: the config grows
    its widths, so narrower weights may be a growth run that stopped early."""
    state = load_checkpoint(path)
    misfit, narrower = _misfit(model.state_dict(), state)
    if misfit:
        hint = " (a growth run that did not reach its full widths?)" if growth and narrower else ""
        raise UserError(
            f"{path}: these weights do not fit the architecture of {config_path}: {misfit}{hint}"
        )
    bad = first_damaged(state, model)
    if bad is not None:
        what = "NaN" if torch.isnan(state[bad]).any() else "infinite values"
        raise UserError(f"{path}: {bad} holds {what}; the training diverged, nothing to {purpose}")
    model.load_state_dict(state)


def first_damaged(state: Any, part: Any) -> str | None:
    """The place of the first tensor of ``part``'s saved ``state`` that holds what no run
    saves: NaN anywhere (a BatchNorm's running mean too), infinity in what training computes
    (:func:`learned_state`; buffers may hold infinity by design). None when there is none."""
    return first_non_finite(learned_state(state, part)) or first_non_finite(state, nan_only=True)


def learned_state(state: Any, part: Any) -> Any:
    """What of a part's saved state training computes: a model's parameters (its buffers may hold
    infinity by design, e.g. an op's attention mask), an optimizer's whole state; None for a part
    the run does not have."""
    if part is None:
        return None
    if isinstance(part, torch.nn.Module) and isinstance(state, dict):
        names = {name for name, _ in part.named_parameters()}
        return {key: value for key, value in state.items() if key in names}
    return state


def first_non_finite(state: Any, where: str = "", *, nan_only: bool = False) -> str | None:
    """The place of the first floating-point tensor in ``state`` (nested mappings and sequences)
    that holds NaN or infinity (``nan_only``: NaN), or None. A run stops at a non-finite loss
    before it saves, so such values in a checkpoint mean damage."""
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point():
            return None
        bad = state.isnan().any() if nan_only else ~torch.isfinite(state).all()
        return where or "tensor" if bool(bad) else None
    items = (
        state.items()
        if isinstance(state, dict)
        else enumerate(state)
        if isinstance(state, list | tuple)
        else ()
    )
    for key, value in items:
        bad = first_non_finite(value, f"{where}.{key}" if where else str(key), nan_only=nan_only)
        if bad is not None:
            return bad
    return None


def _misfit(expected: Mapping[str, torch.Tensor], state: Any) -> tuple[str, bool]:
    """The first way ``state`` differs from the state dict ``expected`` ('' when it fits), with
    how many more there are, and whether every difference is a tensor narrower than expected."""
    if not isinstance(state, Mapping):
        return f"the file holds a {type(state).__name__}, not a mapping of names to tensors", False
    problems: list[str] = []
    narrower = True  # so far every difference is a tensor narrower than the network's
    for key, want in expected.items():
        got = state.get(key)
        if key not in state:
            problems.append(f"no tensor for {key}")
        elif not isinstance(got, torch.Tensor):
            problems.append(f"{key} is a {type(got).__name__}, not a tensor")
        elif got.shape != want.shape:
            problems.append(f"{key} has shape {tuple(got.shape)}, the network {tuple(want.shape)}")
        else:
            continue
        narrower = narrower and _narrower(got, want)
    unexpected = [f"unexpected {key}" for key in state if key not in expected]
    if not problems + unexpected:
        return "", False
    problems += unexpected
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more, narrower and not unexpected


def _narrower(got: Any, want: torch.Tensor) -> bool:
    """Whether ``got`` is a tensor like ``want`` but no larger in any dimension."""
    if not isinstance(got, torch.Tensor) or got.dim() != want.dim():
        return False
    return all(a <= b for a, b in zip(got.shape, want.shape, strict=True))


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
