"""The outline every run follows, a search's or a training's, with what a stop in each part means.

Lock the run directory; start (or resume, or find the run finished and say so); epochs, then what
comes after them (a search's final selection), under the loop's signal handling, where Ctrl-C or
SIGTERM stops after a checkpoint; then the hparams session and the results, where a stop leaves
the checkpoint to finish from. :func:`~nasframe.search.run_search` and
:func:`~nasframe.train.run_train` differ only in the run object they pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .interrupt import (
    IN_THE_LOOP,
    WRITING_RESULTS,
    StopFlag,
    resume_hint,
    stop_on_signals,
    stopping_means,
)
from .run_lock import locked

__all__ = ["Run", "follow_outline"]


class Run(Protocol):
    """What :func:`follow_outline` drives (``_SearchRun``, ``_TrainRun``)."""

    finished: dict[str, Any] | None  # set by start(): a resumed run that had ended, its summary

    def start(self, on_ready: Callable[[], None] | None) -> None: ...
    def epochs_left(self) -> bool: ...
    def epoch(self, stop: StopFlag) -> None: ...
    def after_epochs(self, stop: StopFlag) -> None: ...
    def log_hparams(self) -> None: ...
    def close(self) -> None: ...
    def write_results(self) -> dict[str, Any]: ...


def follow_outline(
    run: Run,
    command: str,
    run_dir: str | Path,
    on_ready: Callable[[], None] | None,
    writes: bool = True,
) -> dict[str, Any]:
    """Run ``run`` (of ``nasframe {command}``, in ``run_dir``) from its start to its results, and
    return its summary. ``writes``: whether this process writes the run's files (under torchrun,
    rank 0 alone), and so holds its lock."""
    with locked(Path(run_dir), writes=writes):
        run.start(on_ready)
        if run.finished is not None:  # resumed after it wrote its results: said so, wrote nothing
            return run.finished
        try:  # a second Ctrl-C stops at once, without the checkpoint of a first
            with (
                stopping_means(IN_THE_LOOP.format(resume=resume_hint(command, run_dir))),
                stop_on_signals() as stop,
            ):
                while run.epochs_left():
                    run.epoch(stop)
                run.after_epochs(stop)
        except BaseException:
            run.close()
            raise
        with stopping_means(WRITING_RESULTS.format(resume=resume_hint(command, run_dir))):
            try:
                run.log_hparams()
            finally:
                run.close()
            return run.write_results()
