"""Pruning a trained run with a pruner plugin: `nasframe prune RUN_DIR` and `prune:` after `train`.

The pruned network is physically smaller; it is saved with its own ``arch.yaml`` (the widths
reduced) and weights that a network built from that arch loads, plus a report of what was removed.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch

from . import registry
from .checkpoint import atomic_write, load_weights, save_checkpoint, write_json
from .config import Config, PruneConfig
from .config_load import load_config, validate_data
from .console import say
from .data import load_dataset
from .device import resolve_device
from .errors import UserError, make_dir
from .network import build_network, build_placed_network, num_classes_of, with_widths
from .run_files import ARCH, RUN_CONFIG, SUMMARY, WEIGHTS
from .show import read_summary
from .tblog import EVENTS, RunLogger
from .train import evaluate
from .yaml_io import load_yaml, yaml_text

__all__ = ["run_prune", "prune_model"]


#: what nasframe reads of a pruner's report (``report.to_dict()``, a ``nasframe_prune.PruneReport``'s)
_REPORT_KEYS = (
    "layers",
    "prunable_units",
    "removed_units",
    "removed_fraction",
    "params_before",
    "params_after",
    "macs_before",
    "macs_after",
)
_REPORT = "a nasframe_prune.PruneReport (as prune_units() and AdamSparsityPruner.prune() return)"


def prune_model(
    config: Config,
    model: torch.nn.Sequential,
    placed: list,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    method: str,
    threshold: float,
) -> tuple[torch.nn.Sequential, dict[str, Any], dict[str, Any]]:
    """Prune ``model``; returns the network rebuilt from the reduced arch, the arch and a summary
    (the report's fields, the configured ``method`` and ``threshold``, accuracy before and after).

    The pruner's output is checked before it is used: a report nasframe cannot read, or a network
    that does not load into the one rebuilt from its widths, is the plugin's failure."""

    def told(e: Exception) -> str | None:  # a ValueError is the user's: a threshold that
        return f"prune: {e}" if isinstance(e, ValueError) else None  # would empty a layer

    factory = registry.get("pruner", method)
    pruner = registry.call("pruner", method, factory, kwargs={"threshold": threshold}, blame=told)
    pruned, report = registry.call(
        "pruner",
        method,
        pruner.prune,
        (model, x_test[:2]),
        label="prune",
        blame=told,
        returns=(
            lambda r: (
                isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], torch.nn.Sequential)
            ),
            "a (network, report) pair whose network is a torch.nn.Sequential",
        ),
    )
    reported = _report_dict(method, report)
    rebuilt, arch = _rebuilt(config, method, pruned, placed, x_test, _classes(model))
    rebuilt.eval()
    loss_before, acc_before = evaluate(model, x_test, y_test)
    loss_after, acc_after = evaluate(rebuilt, x_test, y_test)
    summary = {
        **reported,
        "method": method,  # the configured pruner, not what its report calls it (prune_units()
        "threshold": threshold,  # reports "units" and no threshold)
        "acc_before": acc_before,
        "acc_after": acc_after,
        "loss_before": loss_before,
        "loss_after": loss_after,
    }
    return rebuilt, arch, summary


def _report_dict(method: str, report: Any) -> dict[str, Any]:
    """``report.to_dict()``, refused as the pruner's failure when the report is not one nasframe
    can read (a dict, as ``to_dict()`` returns, or a report without the fields it reads)."""
    if not callable(getattr(report, "to_dict", None)):
        hint = "; return the report itself, not its to_dict()" if isinstance(report, dict) else ""
        raise registry.failure(
            "pruner",
            method,
            f"returned {registry.shown(report)} as the report of prune(model, example_input), "
            f"not {_REPORT}{hint}",
        )
    reported = registry.call(
        "pruner",
        method,
        report.to_dict,
        label="report.to_dict()",
        returns=(lambda d: isinstance(d, dict), "a dict"),
    )
    missing = [key for key in _REPORT_KEYS if key not in reported]
    if missing:
        raise registry.failure(
            "pruner",
            method,
            f"returned a report whose to_dict() lacks {', '.join(missing)}: not {_REPORT}",
        )
    return reported


def _rebuilt(
    config: Config,
    method: str,
    pruned: torch.nn.Sequential,
    placed: list,
    x_test: torch.Tensor,
    classes: int,
) -> tuple[torch.nn.Sequential, dict[str, Any]]:
    """The network of the arch with ``pruned``'s widths, holding ``pruned``'s weights, and that
    arch. A pruned network that does not fit it (layers added, removed or reshaped, not only
    narrowed) is the pruner's failure, said with the first line of the mismatch."""
    arch = with_widths(config, pruned, placed)
    try:
        rebuilt = build_network(validate_data(arch), tuple(x_test.shape[1:]), classes)
    except UserError as e:  # widths the config's own arch would not have (0 units)
        raise registry.failure(
            "pruner", method, f"returned a network whose widths make no valid architecture ({e})"
        ) from None
    rebuilt = rebuilt.to(x_test.device)
    try:
        rebuilt.load_state_dict(pruned.state_dict())
    except RuntimeError as e:
        raise registry.failure(
            "pruner",
            method,
            "returned a network that does not fit the architecture rebuilt from its widths "
            f"(only the widths of its layers may change): {_mismatch(e)}",
        ) from None
    return rebuilt, arch


def _mismatch(e: RuntimeError) -> str:
    """The first line of torch's ``load_state_dict`` error that says what does not fit (the first
    one only says where: ``Error(s) in loading state_dict for Sequential:``)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    said = next((line for line in lines if not line.startswith("Error(s) in loading")), "")
    said = said or (lines[0] if lines else type(e).__name__)
    said = said.rstrip(".")  # said inside a sentence
    size = re.fullmatch(  # torch's words for it: pruned "checkpoint", rebuilt "current model"
        r"size mismatch for (\S+): copying a param with shape (.+) from checkpoint, "
        r"the shape in current model is (.+)",
        said,
    )
    if size is not None:
        said = (
            f"size mismatch for {size[1]}: {size[2]} in the pruned network, {size[3]} in the "
            "rebuilt one"
        )
    return said if len(said) <= 300 else said[:297] + "..."


def _classes(model: torch.nn.Sequential) -> int:
    return model[-1].out_features


def _refuse_pruned(run_dir: Path) -> None:
    """Refuse a directory ``nasframe prune`` wrote (it has no config.yaml, but an arch.yaml and a
    ``kind: prune`` summary). Pruning it again would prune a network whose removed units were
    already folded into the next layers' biases; pruning the source run with the new threshold
    prunes the trained weights themselves."""
    if (run_dir / RUN_CONFIG).exists():
        return
    try:
        summary = read_summary(run_dir)
    except UserError:  # none, or unreadable: not a directory prune wrote
        summary = {}
    if summary.get("kind") == "prune":
        source = summary.get("source") or "the run it came from"
        raise UserError(
            f"{run_dir}: already pruned (from {source}); prune {source} again with another "
            f"--threshold, or retrain {run_dir / ARCH} with `nasframe train` and prune "
            "that run"
        )
    raise UserError(f"{run_dir}: no {RUN_CONFIG} here; prune a finished `nasframe train` run")


def _own_pruning(out: Path, method: str, threshold: float, source: str) -> dict[str, Any] | None:
    """The summary of the pruning a training's ``prune:`` step wrote to ``out`` (in the run's
    directory) before the run was stopped (its summary.json is written last), if it is that
    pruning: same method and threshold, of the very weights the training ends with (``source``,
    their digest; the run may have moved since, so its source path may differ)."""
    try:
        summary = read_summary(out)
    except UserError:  # none, or cut short: not written to the end
        return None
    same = (
        summary.get("kind") == "prune"
        and summary.get("method") == method
        and summary.get("threshold") == threshold
        and summary.get("source_weights") == source
        and all((out / name).exists() for name in (ARCH, WEIGHTS))
    )
    return summary if same else None


def _weights_digest(path: Path) -> str:
    """``sha256:...`` of a weights file: which trained weights a pruning came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _keep_earlier_pruning(out: Path) -> None:
    """Move a complete pruning of earlier weights (a training resumed to train longer, or a
    ``nasframe prune`` of it with other settings) aside as ``pruned.previous[-N]``: the
    training's ``prune:`` step prunes its final weights, and nothing written before is lost."""
    n, kept = 1, out.with_name(f"{out.name}.previous")
    while kept.exists():
        n += 1
        kept = out.with_name(f"{out.name}.previous-{n}")
    try:
        out.rename(kept)
    except OSError as e:
        raise UserError(f"{out}: cannot move it aside to {kept.name} ({e.strerror or e})") from None
    say(f"kept the earlier pruning, of other weights or settings, as {kept}")


#: what a pruning writes to its directory besides TensorBoard's events files, in this order (its
#: events come after the weights): its summary.json last marks the pruning complete
_WRITES = (ARCH, WEIGHTS, SUMMARY)


def _unfinished_pruning(out: Path, name: str | None) -> bool:
    """Whether ``out`` holds only what a ``nasframe prune`` stopped before its summary.json left
    there: no summary.json, an arch.yaml of the run's config name with the ``prune:`` entry
    :func:`run_prune` writes, maybe weights.pt, events files and the temporary files of its
    writes, and nothing else (so that pruning again overwrites nothing the user made)."""
    if (out / SUMMARY).exists() or not (out / ARCH).is_file():
        return False
    temps = tuple(f".{n}." for n in _WRITES)
    try:
        for entry in out.iterdir():
            n = entry.name
            ours = (
                n in (ARCH, WEIGHTS)
                or n.startswith(EVENTS)
                or (n.startswith(temps) and n.endswith(".tmp"))
            )
            if not ours or entry.is_symlink() or not entry.is_file():
                return False
        arch = load_yaml(out / ARCH)[0]
    except (OSError, UserError):  # unreadable, or not YAML: not a pruning's arch.yaml
        return False
    prune = arch.get("prune") if isinstance(arch, dict) else None
    return (
        isinstance(prune, dict)
        and set(prune) == {"method", "threshold"}
        and arch.get("name") == name
    )


def _discard_events(out: Path) -> None:
    """Remove the TensorBoard events files of an earlier, unfinished pruning in ``out`` (it may
    have been stopped while writing them): the pruning's events are written again, once."""
    for entry in out.iterdir():
        if entry.name.startswith(EVENTS) and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
            except OSError as e:
                raise UserError(f"{entry}: cannot remove it ({e.strerror or e})") from None


def _log_pruning(out: Path, enabled: bool, summary: dict[str, Any]) -> None:
    """The pruning's ``prune/*`` scalars (step 0) in ``out``'s TensorBoard events."""
    logger = RunLogger(out, enabled).namespace("prune")
    for key in (
        "removed_fraction",
        "removed_units",
        "params_before",
        "params_after",
        "macs_before",
        "macs_after",
        "acc_before",
        "acc_after",
    ):
        logger.scalar(key, float(summary[key]), 0)
    for layer in summary["layers"]:
        logger.scalar(f"removed/{layer['path']}", float(len(layer["removed"])), 0)
    logger.parent.close()


def run_prune(
    run_dir: str | Path,
    *,
    threshold: float | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Prune the trained network of ``run_dir``; write ``out`` (default ``RUN_DIR/pruned``).

    ``threshold`` is ``nasframe prune --threshold`` (None: the config's ``prune.threshold``). A
    directory this wrote is refused: prune its source run again (with another threshold) instead.
    """
    run_dir = Path(run_dir)
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise UserError(f"--threshold {threshold}: must be a positive number")
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise UserError(f"{run_dir}: no {WEIGHTS} here; prune a finished `nasframe train` run")
    own = config is not None and out is None  # the `prune:` step of the training itself
    given = out is not None
    out = Path(out) if given else run_dir / "pruned"
    if config is None:
        _refuse_pruned(run_dir)
        config, _ = load_config(run_dir / RUN_CONFIG, unused=("search",))
    settings = config.prune or PruneConfig()  # a run trained without a prune section: defaults
    method = settings.method
    xi = threshold if threshold is not None else settings.threshold
    source = _weights_digest(weights)
    again = False  # whether ``out`` holds an unfinished pruning, written again
    if any((out / name).exists() for name in _WRITES):
        earlier = _own_pruning(out, method, xi, source) if own else None
        if earlier is not None:  # a resumed training stopped after its pruning was written
            say(f"pruned network: {out / ARCH} and {out / WEIGHTS} (written before the stop)")
            return earlier
        if own and not (out / SUMMARY).exists():  # stopped while writing it: prune again
            again = True
        elif own:  # of other weights (trained longer since) or settings: kept, pruned anew
            _keep_earlier_pruning(out)
        elif _unfinished_pruning(out, config.name):
            again = True
            where = f"--out {out}" if given else f"{out}"
            stopped = f"an earlier pruning stopped before it finished (no {SUMMARY})"
            say(f"{where}: {stopped}; pruning again")
        else:
            where = f"--out {out}" if given else f"{out} (the default --out)"
            raise UserError(
                f"{where}: already holds a pruned network; choose another --out (e.g. "
                f"{out.parent / (out.name + '-2')}), or delete it to prune again"
            )
    device = resolve_device(config.device)
    try:
        data = load_dataset(config.data)
        classes = num_classes_of(config, data.num_classes)
        model, placed = build_placed_network(config, data.sample_shape, classes)
    except UserError as e:  # e.g. open choices (a search space), a data option: at its line
        raise config.locate_error(e) from e.__cause__
    growth = config.train.growth is not None
    load_weights(model, weights, run_dir / RUN_CONFIG, growth=growth, purpose="prune")
    model = model.to(device).eval()
    xt, yt = data.x_test.to(device), data.y_test.to(device)
    pruned, arch, summary = prune_model(config, model, placed, xt, yt, method, xi)
    out = make_dir(out, "--out")
    if again:
        _discard_events(out)
    arch["prune"] = {"method": method, "threshold": xi}
    text = yaml_text(arch).encode("utf-8")
    atomic_write(out / ARCH, lambda f: f.write(text))
    save_checkpoint(pruned.state_dict(), out / WEIGHTS)
    summary = {
        "kind": "prune",
        "source": str(run_dir),
        "source_weights": source,
        "name": config.name,
        "sample_shape": list(data.sample_shape),
        "num_classes": classes,
        **summary,
        "arch": ARCH,
        "weights": WEIGHTS,
    }
    _log_pruning(out, config.log.tensorboard, summary)  # before summary.json, which marks
    write_json(summary, out / SUMMARY)  # the pruning complete: its events are too
    say(
        f"pruned {summary['removed_units']}/{summary['prunable_units']} units "
        f"({100 * summary['removed_fraction']:.1f}%): parameters {summary['params_before']:,} -> "
        f"{summary['params_after']:,}, MACs {summary['macs_before']:,} -> "
        f"{summary['macs_after']:,}, test accuracy {summary['acc_before']:.4f} -> "
        f"{summary['acc_after']:.4f}"
    )
    say(f"pruned network: {out / ARCH} and {out / WEIGHTS}")
    return summary
