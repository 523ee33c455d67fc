"""User-facing errors: bad input is reported in one line per problem and exits with status 2."""

from __future__ import annotations

import difflib
import os
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "UserError",
    "ConfigError",
    "Problem",
    "TrainingDiverged",
    "Interrupted",
    "did_you_mean",
    "make_dir",
    "traceback_wanted",
    "cause_traceback",
    "out_of_memory",
    "first_line",
]

#: Set to 1 to see, above a plugin's failure, the traceback of the plugin's own exception.
TRACEBACK_VARIABLE = "NASFRAME_TRACEBACK"


class UserError(Exception):
    """A problem with the user's input or environment (not a bug): no traceback, exit status 2."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a file: ``file:line: where: what``."""

    file: str
    line: int | None
    where: str
    what: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.where}: {self.what}" if self.where else f"{loc}: {self.what}"


class TrainingDiverged(UserError):
    """A loss became NaN or infinite: reported with the step and the architecture."""


class Interrupted(UserError):
    """The run was stopped by a signal after writing a checkpoint."""

    exit_code = 130


class ConfigError(UserError):
    """One or more problems in a configuration file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def make_dir(path: Path, where: str) -> Path:
    """``path`` as a directory (made with its parents if missing), or a clear error saying why
    it cannot be one (a file in the way, no permission, an impossible name)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise UserError(f"{where} {path}: cannot make this directory: {why}") from None
    return path


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A '; did you mean ...?' suffix naming the closest candidate (all of those equally close,
    e.g. conv3, conv5 and conv7 for conv4), or ''."""
    pool = list(candidates)
    close = difflib.get_close_matches(name, pool, n=len(pool) or 1, cutoff=0.6)
    if not close:
        return ""

    def score(c: str) -> float:
        return difflib.SequenceMatcher(None, name, c).ratio()

    best = sorted(c for c in close if score(c) == score(close[0]))
    quoted = [f"'{c}'" for c in best]
    named = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"; did you mean {named}?"


def traceback_wanted() -> bool:
    """Whether the environment asks for the tracebacks behind errors (``NASFRAME_TRACEBACK=1``):
    for a plugin's authors, whose plugin's exception nasframe reports in one line."""
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def cause_traceback(error: BaseException) -> str:
    """The traceback of the exception behind ``error`` (its ``__cause__``, e.g. a plugin's own
    exception), to print above ``error``'s one line when :func:`traceback_wanted`; '' otherwise."""
    cause = error.__cause__
    if cause is None or not traceback_wanted():
        return ""
    return "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))


#: A CUDA library's own name for an allocation that failed, as torch's message gives it
#: ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)", cuDNN 9's
#: "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"): GPU memory ran out.
_ALLOC_FAILED = re.compile(
    r"\b(?:CU(?:BLAS|DNN|SOLVER|SPARSE)|HIPBLAS|ROCBLAS|MIOPEN)_STATUS_"
    r"(?:ALLOC_FAILED|INTERNAL_ERROR_(?:HOST|DEVICE)_ALLOCATION_FAILED)\b"
    r"|\bCUFFT_ALLOC_FAILED\b"
)


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation that failed (host or GPU, torch's or a CUDA library's, such
    as cuBLAS creating its handle): the user's sizes, not a bug."""
    text = str(e)
    return (
        isinstance(e, MemoryError)
        or any(m in text for m in ("can't allocate memory", "out of memory", "OutOfMemoryError"))
        or _ALLOC_FAILED.search(text) is not None
    )


def first_line(text: str) -> str:
    """The first line of an error's text, with the next one when the first only introduces it
    (``Error(s) in loading state_dict for Linear:`` then the size mismatch)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``1 open choice``, ``2 open choices``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
