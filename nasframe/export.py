"""`nasframe export`: a trained network as one file that needs only PyTorch to run.

The network of a finished ``nasframe train`` run (or of a pruned one) is rebuilt from its config,
given its trained weights, put in eval mode and exported with :func:`torch.export.export`, the
batch dimension left free. The ``.pt2`` file holds the graph and the weights; anyone loads it
with ``torch.export.load(path).module()``, without nasframe. The export is checked by running the
loaded program and the network on the same batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CannotWrite, atomic_write, load_weights
from .config_load import load_config
from .errors import UserError
from .network import build_network, num_classes_of
from .run_files import ARCH, RUN_CONFIG, SUMMARY, WEIGHTS

__all__ = ["export_run", "largest_difference", "EXPORTED"]

EXPORTED = "model.pt2"


def export_run(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Export the trained network of ``run_dir`` to ``out`` (default ``RUN_DIR/model.pt2``);
    returns where, its input shape and parameters, and the largest difference between the
    loaded program's outputs and the network's."""
    run = Path(run_dir)
    path, shown = (run / EXPORTED, str(run / EXPORTED)) if out is None else _out_path(out)
    if out is None and path.is_dir():  # before the export, which takes a while
        raise UserError(f"{path}: a directory is in the way; export elsewhere with --out FILE.pt2")
    weights = run / WEIGHTS
    config_path = next((run / n for n in (RUN_CONFIG, ARCH) if (run / n).exists()), None)
    if config_path is None or not weights.exists():
        kind = _kind_of(run)
        config_name = ARCH if kind == "prune" else RUN_CONFIG  # a pruning writes its arch.yaml
        missing = [n for n in (WEIGHTS, config_name) if not (run / n).exists()]
        search = kind == "search" and (run / ARCH).exists()
        hint = (
            f"; this is a search run: train its architecture first with nasframe train {run / ARCH}"
        )
        raise UserError(
            f"{run}: no {' and '.join(missing)} here; export a finished `nasframe train` run "
            f"(or its pruned/ directory){hint if search else ''}"
        )
    config, _ = load_config(config_path, unused=("search",))
    shape, classes = _input_of(run, config)
    try:
        model = build_network(config, shape, classes)
    except UserError as e:  # e.g. open choices: a search space, not an architecture
        raise config.locate_error(e) from e.__cause__
    growth = config.train.growth is not None
    load_weights(model, weights, config_path, growth=growth, purpose="export")
    if getattr(model, "auxiliary", None) is not None:
        model.auxiliary = None  # a cell network's training-only head: no part of what is exported
    model.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, *shape, generator=gen)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    try:
        atomic_write(path, lambda f: torch.export.save(program, f))
    except CannotWrite as e:
        raise UserError(f"{shown}: cannot write the exported network ({e.why})") from None
    loaded = torch.export.load(path).module()
    diff = 0.0
    with torch.no_grad():
        for n in (1, 7):
            x = torch.randn(n, *shape, generator=gen)
            diff = max(diff, largest_difference(loaded(x), model(x)))
    return {
        "path": str(path),
        "input_shape": ["batch", *shape],
        "classes": classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "max_abs_difference": diff,
    }


def _out_path(out: str | Path) -> tuple[Path, str]:
    """``--out`` as a path, and as messages name it; refused unless it names a ``.pt2`` file
    (what torch.export writes; the suffix in any case, ``MODEL.PT2``): a config, a run's own
    file or any other file is never overwritten by an export, while a ``.pt2`` is (a
    re-export)."""
    text = str(out)
    if not text.strip():
        raise UserError("--out: empty; give a .pt2 file, e.g. --out model.pt2")
    path = Path(text)
    if path.is_dir():
        raise UserError(
            f"--out {text}: a directory; an export is a .pt2 file; write --out {path / EXPORTED}"
        )
    if path.suffix.lower() != ".pt2":  # MODEL.PT2 is a .pt2 file too
        stem = path.stem.rstrip(".")  # `model.` as `model`
        if not path.name:
            suggested = path / EXPORTED
        elif path.name.lower() == ".pt2" or not stem:  # only the suffix: the usual name there
            suggested = path.with_name(EXPORTED)
        else:
            suggested = path.with_name(stem + ".pt2")
        raise UserError(f"--out {text}: an export is a .pt2 file; write --out {suggested}")
    return path, f"--out {text}"


def _kind_of(run: Path) -> str | None:
    """The kind of run (``search``, ``train``, ``prune``) its summary.json names, if it has one."""
    from .show import read_summary

    try:
        return read_summary(run).get("kind") if (run / SUMMARY).exists() else None
    except UserError:
        return None


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference between ``a`` and ``b``, NaN-aware: equal values (NaN in
    both, or the same infinity) differ by 0, a NaN or infinity in one only by infinity."""
    same = (a == b) | (a.isnan() & b.isnan())
    gap = (a - b).abs().nan_to_num(nan=math.inf)
    return torch.where(same, torch.zeros_like(gap), gap).max().item() if gap.numel() else 0.0


def _input_of(run: Path, config: Any) -> tuple[tuple[int, ...], int]:
    """The sample shape and the number of classes: from the run's summary, else from its data."""
    from .show import read_summary

    try:
        summary = read_summary(run)
    except UserError:
        summary = {}
    if summary.get("sample_shape") and summary.get("num_classes"):
        return tuple(int(v) for v in summary["sample_shape"]), int(summary["num_classes"])
    from .data import load_dataset

    data = load_dataset(config.data)
    return tuple(data.sample_shape), num_classes_of(config, data.num_classes)
