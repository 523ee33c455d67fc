"""`nasframe show`: one finished run in detail, or several side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .runstate import RUN_CONFIG

__all__ = ["read_summary", "show_run", "show_table"]


def read_summary(run: Path) -> dict[str, Any]:
    """A run directory's ``summary.json`` (a UserError when missing or unreadable)."""
    path = run / "summary.json"
    if not path.exists():
        raise UserError(f"{run}: no summary.json here; is it a finished nasframe run directory?")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read it as JSON: {e}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary


def show_run(run: Path) -> None:
    """Print one run's summary, its selection if any, its final metrics and its architecture."""
    summary = read_summary(run)
    head = [f"run: {run}"]
    for key in ("kind", "name", "device"):
        if summary.get(key) is not None:
            head.append(f"{key}: {summary[key]}")
    if summary.get("wall_time_s") is not None:
        head.append(f"wall time: {shown(summary['wall_time_s'])} s")
    print("   ".join(head))
    keys = ("iterations", "epochs_run", "most_likely_parameters", "most_likely_macs")
    keys += ("most_likely_latency_ms", "latency_ms")
    keys += ("parameters", "parameters_without_auxiliary", "retrain_cells", "retrain_channels")
    keys += ("param_budget", "test_acc", "train_loss", "threshold", "removed_units")
    keys += ("removed_fraction", "params_before", "params_after", "flops_before", "flops_after")
    for key in (*keys, "acc_before", "acc_after"):
        if summary.get(key) is not None:
            print(f"{key}: {shown(summary[key])}")
    chosen = summary.get("selection")
    if isinstance(chosen, dict) and chosen.get("candidates") is not None:
        print(
            f"selection: candidate {shown(chosen.get('chosen_index', 0) + 1)} of "
            f"{len(chosen['candidates'])}, valid loss {shown(chosen.get('valid_loss'))}, "
            f"valid acc {shown(chosen.get('valid_acc'))} on {chosen.get('samples')} samples, "
            f"{chosen.get('parameters')} parameters, {chosen.get('macs')} MACs"
            + (
                f", {shown(chosen['latency_ms'])} ms"
                if chosen.get("latency_ms") is not None
                else ""
            )
        )
    final = summary.get("final")
    for key, value in (final if isinstance(final, dict) else {}).items():
        print(f"{key}: {shown(value)}")
    arch = run / ("arch.yaml" if (run / "arch.yaml").exists() else RUN_CONFIG)
    if arch.exists():
        from .config import load_config
        from .space import SearchSpace

        config, _ = load_config(arch)
        space = SearchSpace(config)
        print(f"architecture ({arch.name}):")
        for line in space.describe([0] * len(space.choices)).splitlines():
            print(f"  {line}")


COLUMNS = ("RUN", "KIND", "NAME", "STRATEGY", "EPOCHS", "VALID_ACC", "TEST_ACC", "PARAMS", "MACS")


def show_table(runs: list[Path]) -> int:
    """Print one line per run (what a search found, what a training reached) and return how many
    runs could not be read (each named on stderr)."""
    rows, unreadable = [COLUMNS + ("WALL_S",)], 0
    for run in runs:
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
    training's network, a pruning's result."""
    final = s.get("final") if isinstance(s.get("final"), dict) else {}
    chosen = s.get("selection") if isinstance(s.get("selection"), dict) else {}
    kind = s.get("kind")
    if kind == "search":
        test = chosen.get("test_acc", final.get("test/acc"))
        params = chosen.get("parameters", s.get("most_likely_parameters"))
        macs = chosen.get("macs", s.get("most_likely_macs"))
        epochs, valid = s.get("epochs_run"), final.get("valid/acc")
    elif kind == "prune":
        test, params, macs = s.get("acc_after"), s.get("params_after"), s.get("flops_after")
        epochs = valid = None
    else:
        test, params, macs = s.get("test_acc"), s.get("parameters"), None
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
    try:
        raw = yaml.safe_load((run / RUN_CONFIG).read_text(encoding="utf-8"))
        return str((raw.get("search") or {}).get("strategy", "asng"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None


def shown(value: object) -> str:
    """A summary value for people: floats to 4 decimals, nothing as '-', the rest as it is."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
