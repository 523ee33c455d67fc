"""Files written whole or not at all: a temporary file renamed over the target.

Torch-free, so that YAML and JSON writers use it as well as checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UserError

__all__ = ["CannotWrite", "atomic_write", "remove_stale_temps"]


class CannotWrite(UserError):
    """A file that could not be written: ``path: cannot write it (why)``; nothing of it left."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{path}: cannot write it ({why})")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file renamed over it: a reader
    never sees half a file, and a crash leaves the old one. A failure to write (no space, no
    permission, a directory in the way) is a :class:`CannotWrite` naming the path and why; the
    temporary file is removed whatever happens. Temporary files of ``path`` that a killed
    writer left behind are removed first (:func:`remove_stale_temps`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_stale_temps(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise CannotWrite(path, e.strerror or str(e)) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files (``.NAME.PID.tmp``) that writers of ``path`` killed between
    their write and their rename left behind, and return them: those whose process is gone. A
    live process's file (another writer's, or this process's own) is never touched; where
    whether a process lives cannot be told (not POSIX, no permission), nothing is removed."""
    if os.name != "posix":  # os.kill(pid, 0) is no liveness probe elsewhere
        return []
    stem = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(stem)]
    except OSError:  # no directory yet, or unreadable: nothing to clean
        return []
    removed = []
    for tmp in candidates:
        pid = tmp.name[len(stem) : -len(".tmp")] if tmp.name.endswith(".tmp") else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone meanwhile, or not ours to remove: left as it is
            pass
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (True where that cannot be told: keep its files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # EPERM: someone else's live process
        return True
    return True
