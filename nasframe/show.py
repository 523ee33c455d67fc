"""`nasframe show`: one finished run in detail, or several side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .errors import UserError, counted
from .run_files import ARCH, CHECKPOINT, RUN_CONFIG, SUMMARY
from .run_lock import running
from .yaml_io import load_yaml

__all__ = ["read_summary", "show_run", "show_table"]


def read_summary(run: Path) -> dict[str, Any]:
    """A run directory's ``summary.json`` (a UserError when missing or unreadable, or when
    ``run`` is no directory at all)."""
    path = run / SUMMARY
    if not run.exists():
        raise UserError(f"{run}: does not exist")
    if not run.is_dir():
        raise UserError(f"{run}: not a directory; give a nasframe run directory")
    if not path.exists():
        raise UserError(f"{run}: no summary.json here; is it a finished nasframe run directory?")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read it as JSON: {e}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary


#: what a search's per-epoch metrics are of: train and valid, and (with a most likely
#: architecture) test
SAMPLED_METRICS = "train and valid: means over the sampled architectures"
SEARCH_METRICS = f"{SAMPLED_METRICS}; test: the most likely architecture in the supernet"


def show_run(run: Path) -> None:
    """Print one run's summary, its selection if any, its final metrics and its architecture; a
    run without summary.json but with its config.yaml (in progress, or stopped) shows what its
    files tell."""
    if not (run / SUMMARY).exists() and (run / RUN_CONFIG).exists():
        print(f"run: {run}   no summary.json: the run is in progress, or was stopped")
        _show_architecture(run, None)
        return
    summary = _renamed_keys(read_summary(run))
    pid = running(run)
    if pid is not None:  # a finished run resumed to go on: its files are those of its earlier end
        print(
            f"note: a nasframe process{pid} is running in {run} (a resumed run); below is what "
            "it wrote when it ended before"
        )
    head = [f"run: {run}"]
    for key in ("kind", "name", "device"):
        if summary.get(key) is not None:
            head.append(f"{key}: {summary[key]}")
    if summary.get("wall_time_s") is not None:
        head.append(f"wall time: {shown(summary['wall_time_s'])} s")
    print("   ".join(head))
    keys = ("iterations", "epochs_run", "most_likely_parameters", "most_likely_macs")
    keys += ("most_likely_latency_ms", "latency_ms")
    keys += ("parameters", "macs", "parameters_auxiliary", "retrain_cells")
    keys += ("retrain_channels",)
    keys += ("param_budget", "test_acc", "train_loss", "threshold", "removed_units")
    keys += ("removed_fraction", "params_before", "params_after", "macs_before", "macs_after")
    for key in (*keys, "acc_before", "acc_after"):
        if summary.get(key) is not None:
            print(f"{key}: {shown(summary[key])}")
    chosen = summary.get("selection")
    if isinstance(chosen, dict) and chosen.get("candidates") is not None:
        print(
            f"selection: candidate {shown(chosen.get('chosen_index', 0) + 1)} of "
            f"{len(chosen['candidates'])}, valid loss {shown(chosen.get('valid_loss'))}, "
            f"valid acc {shown(chosen.get('valid_acc'))} on {chosen.get('samples')} samples, "
            + (
                f"test acc {shown(chosen['test_acc'])}, "
                if chosen.get("test_acc") is not None
                else ""
            )
            + f"{chosen.get('parameters')} parameters, {chosen.get('macs')} MACs"
            + (
                f", {shown(chosen['latency_ms'])} ms"
                if chosen.get("latency_ms") is not None
                else ""
            )
        )
    final = summary.get("final")
    final = final if isinstance(final, dict) else {}
    indent = ""
    if final and summary.get("kind") == "search":  # not the architecture shown below
        of = SEARCH_METRICS if "test/acc" in final else SAMPLED_METRICS
        print(f"last epoch ({of}):")
        indent = "  "
    for key, value in final.items():
        print(f"{indent}{key}: {shown(value)}")
    trained = summary.get("retrain_cells"), summary.get("retrain_channels")
    _show_architecture(run, summary.get("kind"), trained if all(trained) else None)


#: summary keys that older versions wrote under another name: a pruned run's MAC counts
_OLD_KEYS = {"flops_before": "macs_before", "flops_after": "macs_after"}


def _renamed_keys(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with the keys of older versions under their current names."""
    renamed = dict(summary)
    for old, new in _OLD_KEYS.items():
        if old in renamed and new not in renamed:
            renamed[new] = renamed.pop(old)
    return renamed


def _show_architecture(run: Path, kind: str | None, size: tuple[int, int] | None = None) -> None:
    """Print the run's architecture: its arch.yaml when that belongs to its config.yaml (else a
    warning, and the file is not shown), a config.yaml without open choices (a cell network at
    the ``size`` it trained at), or what a search's checkpoint would export now; or say why
    there is none."""
    from .config_load import load_config
    from .space import SearchSpace

    config_path, arch_path = run / RUN_CONFIG, run / ARCH
    config = None
    if config_path.exists():
        try:
            unused = ("search",) if kind == "train" else ()  # as `nasframe train` reads it
            config, _ = load_config(config_path, unused=unused)
        except UserError as e:  # shown as far as arch.yaml goes, unchecked
            _warn(f"{str(e).splitlines()[0]} ({RUN_CONFIG} cannot be read)")
    if arch_path.exists():
        try:
            arch, _ = load_config(arch_path)
            problem = _arch_problem(arch, config)
            if problem is None:
                _print_architecture(f"architecture ({ARCH})", SearchSpace(arch), None)
                return
            _warn(f"{arch_path}: {problem}; not shown as the run's architecture")
        except UserError as e:  # its own located line: file:line: where: what
            _warn(f"{str(e).splitlines()[0]}; {ARCH} not shown as the run's architecture")
    if config is None:
        return
    space = SearchSpace(config)
    n_open = len(space.open_paths)
    if not n_open:
        _print_architecture(f"architecture ({RUN_CONFIG})", space, None, size)
        return
    ckpt = _read_checkpoint(run / CHECKPOINT)
    ckpt_kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
    kind = kind or ckpt_kind
    if kind != "train" and ckpt_kind == "search" and _print_most_likely(run, ckpt, config, space):
        return
    if kind == "train":
        print(
            f"no architecture: {RUN_CONFIG} has {counted(n_open, 'open choice')} (a search "
            "space, not an architecture to train)"
        )
    else:
        none = "" if (run / CHECKPOINT).exists() else f"; no {CHECKPOINT} yet"
        print(f"no architecture yet: {RUN_CONFIG} has {counted(n_open, 'open choice')}{none}")


def _arch_problem(arch: Any, config: Any) -> str | None:
    """Why arch.yaml is not the architecture of the run's ``config`` (None when it is, or when
    there is no config to compare with): its ``space_hash`` missing (a truncated file) or another
    space's, or choices still open."""
    from .space import SearchSpace

    if config is not None:
        want = SearchSpace(config).hash
        if arch.space_hash is None:
            return "it has no space_hash (truncated, or not written by `nasframe search`?)"
        if arch.space_hash != want:
            return f"its space_hash {arch.space_hash} is not {RUN_CONFIG}'s ({want})"
    n_open = len(SearchSpace(arch).open_paths)
    return f"it still has {counted(n_open, 'open choice')}" if n_open else None


def _print_most_likely(run: Path, ckpt: dict[str, Any], config: Any, space: Any) -> bool:
    """Print the architecture the search would export now: its strategy's most likely one under
    the checkpoint's distribution, as ``nasframe search`` computes it at its end. False (with a
    warning) when the checkpoint does not fit the run's config."""
    from .search import make_strategy
    from .strategy_common import DamagedState

    path, S = run / CHECKPOINT, config.search
    if ckpt.get("space_hash") != space.hash:
        _warn(f"{path}: from another search space than {RUN_CONFIG}'s (hash {space.hash})")
        return False
    try:
        strategy = make_strategy(S.strategy, space, S.lam, config.seed, S.strategy_options)
        strategy.load_state_dict(ckpt["strategy"])
        epoch, step = int(ckpt["pos"]["epoch"]), int(ckpt["pos"]["step"])
    except UserError as e:
        _warn(f"{path}: cannot restore its strategy: {e}")
        return False
    except (DamagedState, LookupError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        _warn(f"{path}: its strategy state does not fit {RUN_CONFIG} ({type(e).__name__}: {e})")
        return False
    at = (
        f"epoch {epoch} of {S.epochs}"
        if not step
        else f"epoch {epoch + 1} of {S.epochs}, step {step}"
    )
    if not hasattr(strategy, "mle"):
        print(
            f"no architecture yet: strategy '{S.strategy}' has no most likely one; the search "
            f"ends by selecting one (checkpoint at {at})"
        )
        return True
    final = "; search.select picks the final one" if S.select is not None else ""
    _print_architecture(f"most likely so far (checkpoint at {at}{final})", space, strategy.mle())
    return True


def _print_architecture(
    label: str, space: Any, sample: Any, size: tuple[int, int] | None = None
) -> None:
    """``label:`` and the architecture ``sample`` of ``space`` (None: its only one), indented;
    a cell network at ``size`` (a training's cells and channels) when given."""
    print(f"{label}:")
    chosen = [0] * len(space.choices) if sample is None else sample
    for line in space.describe(chosen, size).splitlines():
        print(f"  {line}")


def _read_checkpoint(path: Path) -> Any:
    """The checkpoint at ``path``, or None when there is none or it cannot be read (warned)."""
    from .checkpoint import load_checkpoint

    if not path.exists():
        return None
    try:
        return load_checkpoint(path)
    except UserError as e:
        _warn(str(e))
        return None


def _warn(message: str) -> None:
    """One warning line on stderr: what show cannot present, and why."""
    print(f"warning: {message}", file=sys.stderr)


COLUMNS = ("RUN", "KIND", "NAME", "STRATEGY", "EPOCHS", "VALID_ACC", "TEST_ACC", "PARAMS", "MACS")


def show_table(runs: list[Path]) -> int:
    """Print one line per run (what a search found, what a training reached) and return how many
    runs could not be read (each named on stderr)."""
    rows, unreadable = [COLUMNS + ("WALL_S",)], 0
    for run in runs:
        if not (run / SUMMARY).exists() and (run / RUN_CONFIG).exists():
            raw = _raw_config(run) or {}
            strategy = str((raw.get("search") or {}).get("strategy", "asng")) if raw else None
            row = (run, "unfinished", raw.get("name"), strategy, *[None] * 6)
            rows.append(tuple(shown(v) for v in row))  # in progress or stopped: `show RUN` tells
            continue
        try:
            summary = read_summary(run)
        except UserError as e:
            print(e, file=sys.stderr)
            unreadable += 1
            continue
        rows.append(tuple(shown(v) for v in _row(run, summary)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return unreadable


def _row(run: Path, s: dict[str, Any]) -> tuple[Any, ...]:
    """The table's values for one run: a search's most likely (or selected) architecture, a
    training's network, a pruning's result. A search's VALID_ACC is its selected architecture's
    (on the selection's valid samples); without a selection, the last epoch's mean over the
    architectures it sampled (a search measures no most likely architecture on the valid data)."""
    s = _renamed_keys(s)
    final = s.get("final") if isinstance(s.get("final"), dict) else {}
    chosen = s.get("selection") if isinstance(s.get("selection"), dict) else {}
    kind = s.get("kind")
    if kind == "search":
        test = chosen.get("test_acc", final.get("test/acc"))
        params = chosen.get("parameters", s.get("most_likely_parameters"))
        macs = chosen.get("macs", s.get("most_likely_macs"))
        valid = chosen.get("valid_acc")
        epochs, valid = s.get("epochs_run"), final.get("valid/acc") if valid is None else valid
    elif kind == "prune":
        test, params, macs = s.get("acc_after"), s.get("params_after"), s.get("macs_after")
        epochs = valid = None
    else:
        test, params, macs = s.get("test_acc"), s.get("parameters"), s.get("macs")
        epochs, valid = s.get("epochs"), None
    strategy = _strategy(run) if kind == "search" else None
    return (
        run,
        kind,
        s.get("name"),
        strategy,
        epochs,
        valid,
        test,
        params,
        macs,
        s.get("wall_time_s"),
    )


def _strategy(run: Path) -> str | None:
    """The search strategy named in the run's config (no validation: only for the table)."""
    raw = _raw_config(run)
    return None if raw is None else str((raw.get("search") or {}).get("strategy", "asng"))


def _raw_config(run: Path) -> dict[str, Any] | None:
    """The run's config.yaml as plain data, unvalidated (None when it cannot be read)."""
    try:
        raw = load_yaml(run / RUN_CONFIG)[0]
    except UserError:  # missing, unreadable or not YAML (ConfigError)
        return None
    return raw if isinstance(raw, dict) else None


def shown(value: object) -> str:
    """A summary value for people: floats to 4 decimals, nothing as '-', the rest as it is."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
