"""A run's directory on the command line: where a new run goes (``--out``, or a new
``runs/NAME-TIME``), what ``--resume`` accepts, and the directory made, locked and, when a run
is refused while it sets up, removed again."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .errors import UserError, make_dir
from .run_files import ARCH, CHECKPOINT, LATENCY_TABLE, RUN_CONFIG, SUMMARY, WEIGHTS
from .run_lock import LOCK, RunLock
from .yaml_io import dump_yaml

__all__ = ["run_dir_for", "path_arg", "new_run_dir", "why_not_a_run", "RunDir", "prepare_run_dir"]


def run_dir_for(args: argparse.Namespace, name: str) -> Path:
    """The directory of the run the command line asks for: ``--resume``'s, ``--out``'s (refused
    when it holds a run or files a run would overwrite), or a new ``runs/NAME-TIME``."""
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise UserError(
                f"--out {args.out} with --resume {args.resume}: a resumed run continues in its own "
                "directory; drop --out"
            )
        return Path(args.resume)
    if args.out is not None:
        out = Path(path_arg("--out", args.out))
        if (out / CHECKPOINT).exists():
            raise UserError(
                f"--out {out}: already holds a run; continue it with --resume {out} or choose "
                "another directory"
            )
        held = [n for n in (RUN_CONFIG, SUMMARY, WEIGHTS, ARCH) if (out / n).exists()]
        if held:  # a run's results, or the user's own files of those names: never overwritten
            raise UserError(
                f"--out {out}: holds {', '.join(held)}, which a run there would overwrite; choose "
                f"another directory (or continue a run stopped there with --resume {out})"
            )
        return out
    kind = "" if args.command == "search" else f"-{args.command}"
    return new_run_dir(Path("runs") / f"{name}{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def path_arg(option: str, value: str) -> str:
    """A path given on the command line, refused when empty or not UTF-8 (run files record it)."""
    if not value.strip():
        raise UserError(f"{option}: empty; give a directory")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("unicode_escape").decode("ascii")
        raise UserError(f"{option} {shown}: not valid UTF-8; choose a UTF-8 path") from None
    return value


def new_run_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... : the first that did not exist, now created (runs
    started in the same second, e.g. seeds launched in parallel, never share a directory)."""
    make_dir(path.parent, "run directory")
    for k in range(1, 10_000):
        candidate = path if k == 1 else path.with_name(f"{path.name}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except (OSError, ValueError) as e:  # e.g. a NUL byte in the config's name
            raise UserError(
                f"name: cannot make the run directory {str(candidate)!r}: {e}"
            ) from None
    raise UserError(f"{path}: could not find a free run directory name")


def why_not_a_run(path: Path, args: argparse.Namespace) -> str:
    """Why ``path``, without a config.yaml, cannot be resumed: not there, a run stopped while it
    set up (empty, or only its lock, temporary files and latency table), or not a run
    directory."""
    if not path.is_dir():
        return "no such directory" if not path.exists() else "not a directory"
    try:
        names = [p.name for p in path.iterdir()]
    except OSError:
        names = ["?"]
    set_up = (LOCK, LATENCY_TABLE)  # a search measures its latency table as it sets up
    if all(n in set_up or (n.startswith(".") and n.endswith(".tmp")) for n in names):
        return (
            f"no {RUN_CONFIG} here, so nothing to resume (a run stopped while it set up leaves "
            f"its directory so); start the run again with: nasframe {args.command} CONFIG "
            f"--out {path}"
        )
    return f"no {RUN_CONFIG} here; is it a run directory?"


class RunDir(NamedTuple):
    """A run's directory, made and locked by :func:`prepare_run_dir`."""

    path: Path
    resume: bool  # whether the run resumes from its checkpoint
    record: Callable[[], None] | None  # writes its config.yaml (a new run, or --set on resume)
    made: list[Path]  # the directories made for it, deepest first
    lock: RunLock

    def release(self) -> None:
        """Unlock the directory, and remove what was made for the run if it stayed empty (a
        run refused or stopped while it set up leaves nothing behind)."""
        self.lock.release()
        _remove_if_empty(self.made)


def prepare_run_dir(args: argparse.Namespace, config, raw: dict) -> RunDir:
    """The run's directory, created and locked (one process at a time); whether the run resumes
    from its checkpoint; what writes its ``config.yaml`` (for a new run, and for a run resumed
    with ``--set``); and the directories this made, deepest first. The run calls the writer once
    it is set up (and resumed), before it writes anything else: a run refused while it sets up
    leaves what was made empty, to be removed, and a change a resumed run refuses leaves the
    config it can resume with.

    ``--resume`` of a run stopped before its first checkpoint (its ``config.yaml`` only) starts
    it from the beginning in its directory: nothing was saved, so this is exact."""
    if args.resume:
        run_dir = run_dir_for(args, config.name)
        make_dir(run_dir, "--resume")
        lock = RunLock.acquire(run_dir)
        try:
            resume = (run_dir / CHECKPOINT).exists()
            if not resume:
                _restart_note(run_dir)
        except BaseException:
            lock.release()
            raise
        record = (lambda: _write_config(raw, run_dir)) if args.set else None
        return RunDir(run_dir, resume, record, [], lock)
    if args.out is None:
        made = _missing(Path("runs"))
        run_dir = run_dir_for(args, config.name)  # made there, to reserve the name
        made.insert(0, run_dir)
    else:
        run_dir = run_dir_for(args, config.name)
        made = _missing(run_dir)
        make_dir(run_dir, "--out")
    try:
        lock = RunLock.acquire(run_dir)
    except UserError:
        _remove_if_empty(made)
        raise
    return RunDir(run_dir, False, lambda: _write_config(raw, run_dir), made, lock)


def _restart_note(run_dir: Path) -> None:
    """Say that a run without a checkpoint starts from its beginning; refused when the run has
    results (they would be overwritten) though its checkpoint is gone."""
    results = [name for name in (SUMMARY, WEIGHTS, ARCH) if (run_dir / name).exists()]
    if results:
        raise UserError(
            f"--resume {run_dir}: no {CHECKPOINT} here, but the run's results are "
            f"({', '.join(results)}); nothing to resume"
        )
    from .console import say

    say(
        f"{run_dir}: no checkpoint yet (the run stopped before its first); starting it from "
        "the beginning"
    )


def _missing(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first: what making it makes."""
    out = []
    for p in (path, *path.parents):
        if p.exists():
            break
        out.append(p)
    return out


def _remove_if_empty(made: list[Path]) -> None:
    """Remove the directories a command made (deepest first) as long as they are empty: a run
    refused or stopped while it set up leaves nothing behind, and anything written stays."""
    for path in made:
        try:
            path.rmdir()  # only ever removes an empty directory
        except OSError:
            return


def _write_config(raw: dict, run_dir: Path) -> None:
    dump_yaml(raw, run_dir / RUN_CONFIG)  # a failure names the file and why
