"""Turning Ctrl-C and SIGTERM into a clean stop at the next step boundary (after a checkpoint)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["StopFlag", "stop_on_signals"]


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
