"""The ``nasframe`` command line: search, train, validate, plugins, prune, show, export, latency,
schema."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from . import __version__, registry
from .config import PruneConfig, json_schema
from .config_load import load_config
from .distributed import world_size
from .errors import (
    ConfigError,
    Problem,
    UserError,
    cause_traceback,
    make_dir,
    out_of_memory,
    traceback_wanted,
)
from .interrupt import stop_note
from .run_files import ARCH, CHECKPOINT, LATENCY_TABLE, RUN_CONFIG, SUMMARY, WEIGHTS
from .run_lock import LOCK, RunLock, refuse_while_running
from .runstate import RUN_NAMES
from .yaml_io import dump_yaml, is_a_directory

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nasframe", description="Neural architecture search with YAML spaces and ASNG."
    )
    p.add_argument("--version", action="version", version=f"nasframe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def run_args(sp: argparse.ArgumentParser, what: str) -> None:
        sp.add_argument("config", nargs="?", help=f"{what} (optional with --resume)")
        sp.add_argument(
            "--out",
            metavar="DIR",
            help="run directory (default: runs/NAME-TIME, runs/NAME-train-TIME for training)",
        )
        sp.add_argument(
            "--set",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="override a config field, e.g. --set search.epochs=3",
        )
        sp.add_argument(
            "--resume", metavar="DIR", help="continue the run in DIR from its checkpoint"
        )
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    run_args(
        sub.add_parser(
            "search",
            help="search a space, export the architecture found (most likely, or selected)",
        ),
        "experiment YAML with a search space",
    )
    run_args(
        sub.add_parser("train", help="train a fixed architecture (e.g. a run's arch.yaml)"),
        "arch.yaml or experiment YAML whose choices are all fixed",
    )
    v = sub.add_parser("validate", help="check config files without running anything")
    v.add_argument("files", nargs="+")
    v.add_argument(
        "--data",
        action="store_true",
        help="also load each config's dataset and set up its run (networks on its device, "
        "optimizer) without running it",
    )
    v.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a field of every file, as search and train take it, e.g. --set "
        "search.epochs=3",
    )
    sub.add_parser("plugins", help="list the plugins of every kind and where they come from")
    pr = sub.add_parser("prune", help="remove the units training switched off (pruner plugins)")
    pr.add_argument("run_dir", metavar="RUN_DIR", help="a finished `nasframe train` run")
    pr.add_argument(
        "--threshold",
        type=float,
        metavar="XI",
        help="incoming-weight norm below which a unit is removed (default: the "
        f"config's prune.threshold, else {PruneConfig().threshold:g})",
    )
    pr.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR/pruned)")
    sh = sub.add_parser(
        "show", help="print a run's summary and architecture, or one line per run for several"
    )
    sh.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    ex = sub.add_parser(
        "export", help="save a trained network as one .pt2 file that needs only PyTorch"
    )
    ex.add_argument(
        "run_dir", metavar="RUN_DIR", help="a finished `nasframe train` run (or pruned/)"
    )
    ex.add_argument("--out", metavar="FILE", help="where to write (default: RUN_DIR/model.pt2)")
    la = sub.add_parser(
        "latency",
        help="time the parts of a space's architectures into a table (search.latency.table)",
    )
    la.add_argument("config", help="experiment YAML (its search.latency: device, batch size)")
    la.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config field, e.g. --set search.latency.device=cpu",
    )
    la.add_argument(
        "--out",
        metavar="FILE",
        default=LATENCY_TABLE,
        help="the table; parts it already holds are kept (default: latency.json)",
    )
    la.add_argument(
        "--draws",
        type=int,
        default=1000,
        metavar="N",
        help="architectures drawn uniformly whose parts are timed (default: 1000; a space with "
        "no more architectures has each timed once)",
    )
    s = sub.add_parser("schema", help="print the JSON schema of config files (for editors)")
    s.add_argument("--out", metavar="FILE", help="write it to FILE instead of stdout")
    return p


def _run_dir(args: argparse.Namespace, name: str) -> Path:
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise UserError(
                f"--out {args.out} with --resume {args.resume}: a resumed run continues in its own "
                "directory; drop --out"
            )
        return Path(args.resume)
    if args.out is not None:
        out = Path(_path_arg("--out", args.out))
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
    return _new_dir(Path("runs") / f"{name}{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def _path_arg(option: str, value: str) -> str:
    """A path given on the command line, refused when empty or not UTF-8 (run files record it)."""
    if not value.strip():
        raise UserError(f"{option}: empty; give a directory")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("unicode_escape").decode("ascii")
        raise UserError(f"{option} {shown}: not valid UTF-8; choose a UTF-8 path") from None
    return value


def _new_dir(path: Path) -> Path:
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


def _why_not_a_run(path: Path, args: argparse.Namespace) -> str:
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


def _load_for_run(args: argparse.Namespace):
    if args.config is not None and args.command == "search":
        _refuse_run_directory(Path(args.config))
    if not args.resume:
        if args.config is None:
            raise UserError(f"nasframe {args.command}: give a CONFIG file (or --resume DIR)")
        return load_config(args.config, args.set)
    saved = Path(args.resume) / RUN_CONFIG
    if not saved.exists():
        raise UserError(f"--resume {args.resume}: {_why_not_a_run(Path(args.resume), args)}")
    config, raw = load_config(saved, args.set)
    ran = _as_saved(saved, config, bool(args.set))
    _refuse_other_kind(args, _config_kind(ran))
    if args.set and ran is not None and (Path(args.resume) / CHECKPOINT).exists():
        _refuse_changed_state(args, config, ran)
    if args.config is not None:
        _check_same_config(args, config, saved)
        args.config = None  # from here on, as if only --resume had been given
    return config, raw


def _refuse_run_directory(path: Path) -> None:
    """A directory given to ``nasframe search`` as its config: a run's ``config.yaml`` is the
    search's config (``nasframe train`` takes its ``arch.yaml``, as :func:`load_yaml` says)."""
    if not (path.is_dir() and (path / RUN_CONFIG).is_file()):
        return
    try:
        config, _ = load_config(path / RUN_CONFIG)
    except UserError:  # a damaged run: say what a directory is, as for any other
        config = None
    if config is not None and _config_kind(config) == "train":
        what = (
            f"is a training run's directory, not a search space; continue it with nasframe "
            f"train --resume {path}, or search with a config that has choices"
        )
    else:
        what = is_a_directory(path, (RUN_CONFIG,))
        what += f" (a new search with that run's config), or nasframe search --resume {path}"
    raise ConfigError([Problem(str(path), None, "", what)])


def _as_saved(saved: Path, config, changed: bool):
    """A run directory's config as ``saved`` has it (``config`` itself unless ``--set``
    ``changed`` it), or None when it does not load: the run itself then says why."""
    if not changed:
        return config
    try:
        return load_config(saved)[0]
    except UserError:
        return None


def _config_kind(config) -> str | None:
    """The kind of run a run directory's config makes (None: no config, or one that does not
    make a space), told before either command refuses the other's config: a search has choices
    open (``nasframe search`` refuses a config without), a training none (``nasframe train``
    refuses one with). A checkpoint of another kind is for the resumed run to refuse, as such."""
    from .space import SearchSpace

    if config is None:
        return None
    try:
        return "search" if SearchSpace(config).open_paths else "train"
    except UserError:  # the run itself says what is wrong with its config
        return None


def _refuse_other_kind(args: argparse.Namespace, kind: str | None) -> None:
    """Refuse to resume a run of another kind, naming the command that resumes it."""
    if kind is not None and kind != args.command:
        raise UserError(
            f"{args.resume}: this is a {RUN_NAMES[kind]} run; resume it with "
            f"nasframe {kind} --resume {args.resume}"
        )


#: settings whose state a run's checkpoint holds (a strategy's distribution, an optimizer's
#: buffers): another value cannot continue from it
_KEPT_ON_RESUME = {
    "search": ("search.strategy", "search.optimizer.name"),
    "train": ("train.optimizer.name",),
}


def _refuse_changed_state(args: argparse.Namespace, config, ran) -> None:
    """Refuse a ``--set`` on resume that changes a setting whose state the checkpoint holds
    (``ran``: the config the run ran with, ``config``: with the ``--set``)."""
    for where in _KEPT_ON_RESUME[args.command]:
        before, after = ran, config
        for name in where.split("."):
            before, after = getattr(before, name), getattr(after, name)
        if before != after:
            given = next(
                (item for item in args.set if where.startswith(item.split("=", 1)[0].strip())),
                f"{where}={after}",
            )
            raise UserError(
                f"--set {given}: the run {args.resume} has {where} {before}, and its checkpoint "
                f"holds {before}'s state, which {after} cannot continue from; start a new run "
                f"for {after} (without --resume)"
            )


def _check_same_config(args: argparse.Namespace, run_config, saved: Path) -> None:
    """A CONFIG given with --resume must say what the run's own config.yaml says: the run goes on
    with the settings it started with (changed only through --set, which config.yaml records)."""
    given, _ = load_config(args.config, args.set)
    differences = [d for d in _differences(run_config, given) if d[0] not in ("name", "space_hash")]
    if not differences:
        return
    where, ran, asked = differences[0]
    more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
    resume = f"nasframe {args.command} --resume {args.resume}"
    resume += "".join(f" --set {shlex.quote(item)}" for item in args.set)
    if len(differences) == 1 and not where.startswith("space"):
        change = f"; to change it too, add --set {shlex.quote(f'{where}={asked}')}"
    else:
        change = f", or start {args.config} as a new run (without --resume)"
    raise UserError(
        given.locate(
            f"{where}: {_short(asked)} here, but the run {args.resume} has {_short(ran)}{more}; "
            f"--resume continues with its own {saved.name}. Resume with `{resume}`{change}"
        )
    )


def _differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(dotted path, a's value, b's value) for each field where two validated configs differ."""
    if isinstance(a, BaseModel) and type(a) is type(b):
        return [
            d
            for name in type(a).model_fields
            for d in _differences(getattr(a, name), getattr(b, name), (*path, name))
        ]
    if isinstance(a, dict) and isinstance(b, dict) and a != b:
        return [
            d
            for key in sorted(set(a) | set(b), key=str)
            for d in _differences(a.get(key), b.get(key), (*path, str(key)))
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, (*path, _name(x, i)))
        ]
    return [] if a == b else [(".".join(path), a, b)]


def _name(item: Any, index: int) -> str:
    """A list item's place in a dotted path: stages go by their names (as in messages), others by index."""
    name = getattr(item, "name", None)
    return name if isinstance(name, str) else str(index)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _cmd_run(args: argparse.Namespace) -> int:
    config, raw = _load_for_run(args)
    try:
        return _run(args, config, raw)
    except ConfigError:
        raise
    except UserError as e:  # a problem found at run time: point at its line of the config
        located = config.locate(str(e))
        if located != str(e):
            e.args = (located,)
        raise


def _run(args: argparse.Namespace, config, raw: dict) -> int:
    if args.command == "search":
        return _cmd_search(args, config, raw)
    if world_size() > 1:
        raise UserError(
            "torchrun: only `nasframe search` runs on several processes; run `nasframe train` "
            "as one process"
        )
    from .network import refuse_open_choices
    from .space import SearchSpace
    from .train import run_train

    refuse_open_choices(SearchSpace(config))  # before a run directory is made for nothing
    prepared = _prepare_run_dir(args, config, raw)
    try:
        run_train(
            config,
            prepared.path,
            resume=prepared.resume,
            progress=not args.quiet,
            on_ready=prepared.record,
        )
    finally:
        prepared.release()
    return 0


class _RunDir(NamedTuple):
    """A run's directory, made and locked by :func:`_prepare_run_dir`."""

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


def _prepare_run_dir(args: argparse.Namespace, config, raw: dict) -> _RunDir:
    """The run's directory, created and locked (one process at a time); whether the run resumes
    from its checkpoint; what writes its ``config.yaml`` (for a new run, and for a run resumed
    with ``--set``); and the directories this made, deepest first. The run calls the writer once
    it is set up (and resumed), before it writes anything else: a run refused while it sets up
    leaves what was made empty, to be removed, and a change a resumed run refuses leaves the
    config it can resume with.

    ``--resume`` of a run stopped before its first checkpoint (its ``config.yaml`` only) starts
    it from the beginning in its directory: nothing was saved, so this is exact."""
    if args.resume:
        run_dir = _run_dir(args, config.name)
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
        return _RunDir(run_dir, resume, record, [], lock)
    if args.out is None:
        made = _missing(Path("runs"))
        run_dir = _run_dir(args, config.name)  # made there, to reserve the name
        made.insert(0, run_dir)
    else:
        run_dir = _run_dir(args, config.name)
        made = _missing(run_dir)
        make_dir(run_dir, "--out")
    try:
        lock = RunLock.acquire(run_dir)
    except UserError:
        _remove_if_empty(made)
        raise
    return _RunDir(run_dir, False, lambda: _write_config(raw, run_dir), made, lock)


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


def _cmd_search(args: argparse.Namespace, config, raw: dict) -> int:
    """A search, on one process or on each of torchrun's (rank 0 prepares the run directory)."""
    from .distributed import join_group
    from .search import run_search

    group, device = join_group(config.device)
    prepared: _RunDir | None = None  # rank 0's: it writes the config, the others follow
    try:
        outcome: tuple[str, str, bool] = ("", "", False)
        if group.main:
            try:
                prepared = _prepare_run_dir(args, config, raw)
                outcome = ("ok", str(prepared.path), prepared.resume)
            except UserError as e:
                outcome = ("error", str(e), False)
        kind, text, resume = group.broadcast(outcome)  # every process resumes, or none
        if kind == "error":
            raise UserError(text if group.main else "")
        config = config.model_copy(update={"device": device})
        run_search(
            config,
            Path(text),
            resume=resume,
            progress=not args.quiet,
            group=group,
            on_ready=prepared.record if prepared is not None else None,
        )
    except BaseException:  # refused, interrupted or failed (here or on another rank)
        if prepared is not None:
            prepared.release()
        group.leave()
        raise
    if prepared is not None:
        prepared.release()
    group.leave(finished=True)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .preflight import preflight
    from .space import unused_layers

    problems: list[str] = []
    for f in args.files:
        try:
            config, _ = load_config(f, args.set)
        except ConfigError as e:
            problems.extend(str(p) for p in e.problems)
            continue
        try:
            checked = preflight(config, data=args.data)
        except ConfigError as e:
            problems.extend(str(p) for p in e.problems)
        except UserError as e:  # what a run would refuse as it starts: at its line if it has one
            if shown := cause_traceback(e):  # NASFRAME_TRACEBACK=1: a plugin's own traceback
                print(shown, end="", file=sys.stderr)
            located = config.locate(str(e))
            problems.append(located if located != str(e) else f"{f}: {e}")
        else:
            print(f"{f}: ok ({checked})")
            for note in unused_layers(config):
                print(config.located_warning(note), file=sys.stderr)
    if problems:
        raise UserError("\n".join(problems))
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "OBJECT")]
    for info in registry.plugins():
        for each in (info, *info.conflicts):  # every provider of a name given twice, marked
            source = each.source + (" (conflict)" if info.conflicts else "")
            rows.append((each.kind, each.name, source, each.version, each.value))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from .prune_run import run_prune

    refuse_while_running(args.run_dir, "prune")
    run_prune(args.run_dir, threshold=args.threshold, out=args.out)  # it checks the threshold
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .show import show_run, show_table

    runs = [Path(r) for r in args.run_dirs]
    if len(runs) == 1:
        show_run(runs[0])
        return 0
    return 2 if show_table(runs) else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    refuse_while_running(args.run_dir, "export")
    done = export_run(args.run_dir, args.out)
    shape = "(" + ", ".join(str(v) for v in done["input_shape"]) + ")"
    print(
        f"exported {done['path']}: input {shape}, {done['classes']} classes, "
        f"{done['parameters']:,} parameters (largest difference from the network: "
        f"{done['max_abs_difference']:.2e})"
    )
    print(f"load it with: torch.export.load({done['path']!r}).module()")
    return 0


def _cmd_latency(args: argparse.Namespace) -> int:
    from .latency import fill_table

    if args.draws < 1:
        raise UserError(f"--draws {args.draws}: must be at least 1")
    config, _ = load_config(args.config, args.set, adjust=_priced_by_latency)
    out = Path(args.out)
    try:
        done = fill_table(config, out, args.draws, tell=print)
    except UserError as e:
        raise UserError(config.locate(str(e))) from e.__cause__
    if done["draws"] < args.draws:
        told = (
            f"every one of the space's {done['draws']} architectures timed: the table is complete"
        )
    else:
        quiet = done["draws"] - done["last_new_draw"]
        told = f"the last {quiet} of {done['draws']} draws added no new part"
    print(
        f"{out}: {done['parts']} parts ({done['timed']} timed now on {done['device']} in "
        f"{done['seconds']:.1f} s); {told}"
    )
    print(f"search against it with: --set search.cost=latency --set search.latency.table={out}")
    return 0


def _priced_by_latency(raw: dict) -> dict:
    """``raw`` with ``search.cost: latency``: a table is made for searches priced by latency, so
    ``search.latency.*`` are its options whatever the config's own cost. A ``search`` that is not
    a mapping is left for validation to report at its line."""
    search = raw.get("search", {})
    if not isinstance(search, dict):
        return raw
    return {**raw, "search": {**search, "cost": "latency"}}


def _cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as e:
            raise UserError(
                f"--out {args.out}: cannot write the schema: {e.strerror or e}"
            ) from None
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "search": _cmd_run,
        "train": _cmd_run,
        "validate": _cmd_validate,
        "plugins": _cmd_plugins,
        "prune": _cmd_prune,
        "show": _cmd_show,
        "export": _cmd_export,
        "latency": _cmd_latency,
        "schema": _cmd_schema,
    }
    previous = _terminate_cleanly()
    try:
        return handlers[args.command](args)
    except UserError as e:
        if shown := cause_traceback(e):  # NASFRAME_TRACEBACK=1: a plugin's own traceback
            print(shown, end="", file=sys.stderr)
        if str(e):
            print(_rank_prefix() + str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        note = stop_note(e)
        print("interrupted" + (f" {note}" if note else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`nasframe plugins | head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):  # so that the exit's flush stays quiet
            os.dup2(devnull, stream.fileno())
        # a listing cut short is no error; a run stopped by it is (its last checkpoint resumes)
        return 128 + signal.SIGPIPE if args.command in ("search", "train") else 0
    except _Terminated as e:
        note = stop_note(e)
        if note is None and args.command in ("search", "train"):
            note = "before a run's loop started; no checkpoint written"
        print("terminated (SIGTERM)" + (f" {note}" if note else ""), file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:
        if out_of_memory(e):
            first = (str(e).strip().splitlines() or ["no details"])[0]
            print(
                f"{_rank_prefix()}out of memory ({first[:200]}); the config asks for more than "
                "this machine has: smaller widths, depths, batch size or dataset",
                file=sys.stderr,
            )
            return 2
        failed = registry.failure_in_traceback(e)  # a plugin's own code raised it
        if failed is None:  # nasframe's bug (or torch's): the traceback is for its report
            raise
        if traceback_wanted():
            traceback.print_exception(e, file=sys.stderr)
        print(_rank_prefix() + str(failed), file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM outside a run's loop (whose own handler checkpoints first); like Ctrl-C's
    KeyboardInterrupt, no ``except Exception`` takes it for a plugin's or a module's failure."""


def _terminate_cleanly():
    """SIGTERM raises :class:`_Terminated` (a message, not a silent death) until a run's loop
    takes the signal over; returns the handler to restore, or None off the main thread."""

    def handler(signum, frame):
        raise _Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _rank_prefix() -> str:
    """'rank N: ' on the processes of a torchrun after the first, whose messages would repeat."""
    try:
        rank = os.environ.get("RANK", "0") if world_size() > 1 else "0"
    except UserError:
        return ""
    return "" if rank == "0" else f"rank {rank}: "


if __name__ == "__main__":
    sys.exit(main())
