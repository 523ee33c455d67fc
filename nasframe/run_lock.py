"""One process at a time in a run directory.

Two processes in one run directory (a second ``--resume`` while the first still runs, or a new run
given the same ``--out``) would interleave their checkpoints, events and results. The command line
(and :func:`~nasframe.run_search` or :func:`~nasframe.run_train` called from Python) holds an
advisory lock on ``RUN_DIR/.lock`` while a run runs (under torchrun, rank 0, which alone writes);
the kernel releases it when the process dies, however it dies, so a killed run never leaves a stale
lock behind. Where the platform has no ``fcntl`` (Windows), or the file system no locks, runs are
not locked.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .console import say
from .errors import UserError

__all__ = ["LOCK", "RunLock", "locked", "refuse_while_running", "running"]

LOCK = ".lock"  #: the lock file in a run directory (removed when the run ends)
_HELD: set[str] = set()  # the run directories this process holds, resolved

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """The lock of one run directory, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock ``run_dir`` for this process, or raise a UserError naming the process that holds
        it."""
        path = Path(run_dir) / LOCK
        if fcntl is None:
            return cls(path, None)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UserError(
                    f"{path}: cannot create the run's lock file ({e.strerror})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in _LOCKED_ELSEWHERE:
                    os.close(fd)  # a file system without locks (NFS without lockd, ...)
                    path.unlink(missing_ok=True)
                    say(f"note: {run_dir}: runs here cannot be locked ({e.strerror or e})")
                    return cls(path, None)
                pid = _holder(fd)
                os.close(fd)
                raise UserError(
                    f"{run_dir}: another nasframe process{pid} is running in this directory; "
                    "wait for it to end, or stop it, first"
                ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder before us removed that file as it ended: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _HELD.add(_key(run_dir))
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file and unlock (in that order: a process waiting on the old file
        sees it gone and locks a new one)."""
        if self._fd is None:
            return
        _HELD.discard(_key(self.path.parent))
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # the lock goes with the descriptor anyway
            pass
        os.close(self._fd)
        self._fd = None


@contextmanager
def locked(run_dir: Path, writes: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block (making the directory), unless this process holds
    it already (the command line locks before it writes the run's config) or does not write
    there (``writes`` false: a torchrun rank other than 0): runs started from Python are locked
    too."""
    if not writes or _key(run_dir) in _HELD:
        yield
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    lock = RunLock.acquire(run_dir)
    try:
        yield
    finally:
        lock.release()


#: flock's errors when another process holds the lock (any other: a file system without locks)
_LOCKED_ELSEWHERE = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _holder(fd: int) -> str:
    """`` (pid N)``: the process that holds the lock of ``fd``, as it wrote itself there ('' when
    it wrote nothing readable)."""
    holder = os.read(fd, 32).decode("ascii", "replace").strip()
    return f" (pid {holder})" if holder.isdigit() else ""


def _key(run_dir: Path) -> str:
    return str(Path(run_dir).resolve())


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def refuse_while_running(run_dir: str | Path, what: str) -> None:
    """Refuse to ``what`` (``export``, ``prune``) a run while a process runs in it: it would read
    weights that the run is about to replace."""
    pid = running(run_dir)
    if pid is not None:
        raise UserError(
            f"{run_dir}: a nasframe process{pid} is running in this directory; {what} it once "
            "that run has ended"
        )


def running(run_dir: str | Path) -> str | None:
    """Whether a process holds ``run_dir``'s lock (a run going on there): its holder for a
    message (`` (pid 123)``, or '' when unknown), or None when none does or it cannot be told."""
    path = Path(run_dir) / LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return _holder(fd) if e.errno in _LOCKED_ELSEWHERE else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
