"""The ``nasframe`` command line: search, train, validate, plugins, prune, show, export, latency,
schema."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from . import __version__, registry
from .config import PruneConfig, json_schema
from .config_load import load_config
from .distributed import world_size
from .errors import (
    ConfigError,
    UserError,
    cause_traceback,
    out_of_memory,
    traceback_wanted,
)
from .interrupt import stop_note
from .resume_config import load_for_run
from .run_dirs import RunDir, prepare_run_dir
from .run_files import LATENCY_TABLE
from .run_lock import refuse_while_running

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


def _cmd_run(args: argparse.Namespace) -> int:
    config, raw = load_for_run(args)
    try:
        if args.command == "search":
            return _cmd_search(args, config, raw)
        return _cmd_train(args, config, raw)
    except ConfigError:
        raise
    except UserError as e:  # a problem found at run time: point at its line of the config
        located = config.locate(str(e))
        if located != str(e):
            e.args = (located,)
        raise


def _cmd_train(args: argparse.Namespace, config, raw: dict) -> int:
    """A training, on one process."""
    if world_size() > 1:
        raise UserError(
            "torchrun: only `nasframe search` runs on several processes; run `nasframe train` "
            "as one process"
        )
    from .network import refuse_open_choices
    from .space import SearchSpace
    from .train import run_train

    refuse_open_choices(SearchSpace(config))  # before a run directory is made for nothing
    prepared = prepare_run_dir(args, config, raw)
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


def _cmd_search(args: argparse.Namespace, config, raw: dict) -> int:
    """A search, on one process or on each of torchrun's (rank 0 prepares the run directory)."""
    from .distributed import join_group
    from .search import run_search

    group, device = join_group(config.device)
    prepared: RunDir | None = None  # rank 0's: it writes the config, the others follow
    try:
        outcome: tuple[str, str, bool] = ("", "", False)
        if group.main:
            try:
                prepared = prepare_run_dir(args, config, raw)
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
    from .space import config_warnings

    problems: list[str] = []
    for f in args.files:
        try:
            config = _load_to_validate(f, args.set)
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
            for note in config_warnings(config):
                print(config.located_warning(note), file=sys.stderr)
    if problems:
        raise UserError("\n".join(problems))
    return 0


def _load_to_validate(path: str, overrides: list[str]):
    """A config read as the command it is for reads it: a training's (no open choices) leaves
    its ``search`` section's plugins unlooked-up, as ``nasframe train`` does; a search's not."""
    from .space import SearchSpace

    config, _ = load_config(path, overrides, unused=("search",))
    try:
        training = not SearchSpace(config).open_paths
    except UserError:  # preflight says what is wrong with the space
        training = False
    return config if training else load_config(path, overrides)[0]


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
