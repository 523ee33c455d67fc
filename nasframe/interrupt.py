"""Turning Ctrl-C and SIGTERM into a clean stop at the next step boundary (after a checkpoint)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import registry
from .errors import Interrupted

__all__ = [
    "StopFlag",
    "stop_on_signals",
    "stopped",
    "stopping_means",
    "stop_note",
    "IN_THE_LOOP",
    "WRITING_RESULTS",
    "resume_hint",
]


class StopFlag:
    """Set by the first SIGINT/SIGTERM; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()

    def handler(signum, frame):
        if flag.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signal = signum

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def stopped(
    stop: StopFlag,
    when: str,
    command: str,
    run_dir: str | Path,
    then: str = "checkpoint written; continue with",
) -> Interrupted:
    """The stop that ``stop``'s signal asked for (none: another torchrun process's), ``when``
    (``after epoch 2 of 5``), and how to go on: the error a run's loop raises."""
    by = stop.signal or "on another process"
    return Interrupted(f"stopped by signal {by} {when}; {then}: {resume_hint(command, run_dir)}")


def resume_hint(command: str, run_dir: str | Path) -> str:
    """How to continue the ``command`` (search, train) run in ``run_dir``."""
    python = f"nasframe.run_{command}(config, '{run_dir}', resume=True)"
    return registry.how_to_go_on(f"nasframe {command} --resume {run_dir}", python)


@contextmanager
def stopping_means(note: str) -> Iterator[None]:
    """An exception that leaves this block (a stop by a signal outside a run's loop, where no
    :func:`stop_on_signals` checkpoints first) carries ``note``: what the stop left and how to
    finish it. The outermost block's note wins: it is the run the user started."""
    try:
        yield
    except BaseException as e:
        e.nasframe_stop_note = note
        raise


def stop_note(e: BaseException) -> str | None:
    """The note that :func:`stopping_means` gave ``e``, or None."""
    return getattr(e, "nasframe_stop_note", None)


#: what a stop left, by where it came (``.format(resume=resume_hint(...))``): a second Ctrl-C in
#: a run's loop (no checkpoint of its own), a stop while the run wrote its results
IN_THE_LOOP = "again: stopped without a checkpoint; continue from the last one with: {resume}"
WRITING_RESULTS = "while writing the results; the checkpoint is written: finish with {resume}"
