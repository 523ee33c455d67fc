"""What a run checkpoints, so that a resumed run continues bit-for-bit.

Weights, optimizer and schedule (and the search strategy), every RNG state, the position in the
run and the running metrics; written atomically, read with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from . import registry
from .checkpoint import (
    first_damaged,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .environment import environment, resume_note
from .errors import UserError, first_line
from .run_files import CHECKPOINT, RUN_CONFIG
from .strategy_common import DamagedState
from .values import is_finite_number, is_integer, is_number

__all__ = ["Meter", "RunState", "RUN_NAMES", "CHECKPOINT", "RUN_CONFIG"]

_MAX_POSITION = 2**40  # more iterations than any run takes: a position beyond it is damage
#: the kinds of run that checkpoint, as messages name them
RUN_NAMES = {"search": "search", "train": "training"}  # the kinds of run that checkpoint


class Meter:
    """Running weighted means of host-side metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, key: str, value: float, n: float = 1.0) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * n
        self.counts[key] = self.counts.get(key, 0.0) + n

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.counts.get(key, 0.0), 1e-12)

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        """Restore sums and counts; names to finite numbers (counts not negative), or
        DamagedState."""
        sums, counts = dict(state["sums"]), dict(state["counts"])
        for part, values in (("sums", sums), ("counts", counts)):
            for key, value in values.items():
                if not (isinstance(key, str) and is_finite_number(value)):
                    raise DamagedState(f"meter {part}: {key!r} is {value!r}, not a finite number")
                if part == "counts" and value < 0:
                    raise DamagedState(f"meter counts: {key!r} is {value!r}, below zero")
        self.sums, self.counts = sums, counts


class RunState:
    """The resumable state of a search or training run.

    ``space_hash`` is what a checkpoint must carry to be resumed (saved under that key): the
    space's hash for a search, the trained architecture's network hash for a training.
    ``parts`` are objects with ``state_dict`` / ``load_state_dict`` (model, optimizer, schedule,
    strategy). ``pos`` counts epochs, steps within the epoch and iterations; ``meter`` holds the
    current epoch's running metrics and ``metrics`` the last finished epoch's. ``final`` holds
    what the run's final phase computed and logged after its last epoch (a search's selection),
    so that a run stopped after it neither redoes nor logs it again; an epoch clears it.
    """

    def __init__(self, kind: str, space_hash: str, run_dir: Path, **parts: Any) -> None:
        self.kind, self.space_hash = kind, space_hash
        self.path = Path(run_dir) / CHECKPOINT
        self.parts = parts
        self.pos: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "wall_s": 0.0}
        self.meter = Meter()
        self.metrics: dict[str, float] = {}
        self.final: dict[str, Any] = {}
        self.environment: dict[str, Any] | None = None  # what this process runs on
        self.saved_environment: dict[str, Any] | None = None  # what the checkpoint was made on
        self._t0, self._wall0 = time.perf_counter(), 0.0

    def start(self, device: torch.device, resume: bool) -> str | None:
        """Begin the run on ``device``, restoring the checkpoint if ``resume``. Returns, for a
        resumed run, the note on what its environment changed since the checkpoint (None if
        nothing did)."""
        self.environment = environment(device)
        if resume:
            self.resume()
        for name, part in self.parts.items():  # a plugin's state that no run could resume
            self._state_of(name, part)
        return resume_note(self.saved_environment, self.environment) if resume else None

    def resumed_at(self, epochs_left: bool) -> str:
        """Where a resumed run goes on, for its first line: at an epoch and step, or (stopped in
        its final selection or while writing its results) after its last epoch."""
        if epochs_left:
            return f"at epoch {self.pos['epoch'] + 1}, step {self.pos['step']}"
        return "after its last epoch: writing its results"

    def wall_s(self) -> float:
        """Seconds this run has been running, over all its resumptions."""
        return self._wall0 + time.perf_counter() - self._t0

    def end_epoch(self, metrics: dict[str, float]) -> None:
        self.metrics = dict(metrics)
        self.meter = Meter()
        self.final = {}
        self.pos["epoch"] += 1
        self.pos["step"] = 0

    def snapshot(self, *names: str) -> dict[str, Any]:
        """Copies of the states of parts ``names`` and of the RNGs, for :meth:`save`'s ``as_of``:
        the checkpoint written after a final phase that draws from them (a selection) holds them
        as they were before it, so that a resume that does that phase again draws the same."""
        parts = {name: copy.deepcopy(self._state_of(name, self.parts[name])) for name in names}
        return {"parts": parts, "rng": rng_state()}

    def save(self, as_of: dict[str, Any] | None = None) -> None:
        """Write the checkpoint (with the parts and RNGs of ``as_of``, a :meth:`snapshot`, in
        place of their current states). A part made by a plugin whose state
        ``torch.load(weights_only=True)`` would refuse is a
        :class:`~nasframe.registry.PluginFailure`, raised before anything is written."""
        self.pos["wall_s"] = self.wall_s()
        given = (as_of or {}).get("parts", {})
        parts = {
            name: given[name] if name in given else self._state_of(name, part)
            for name, part in self.parts.items()
        }
        save_checkpoint(
            {
                "kind": self.kind,
                "space_hash": self.space_hash,
                **parts,
                "rng": (as_of or {}).get("rng") or rng_state(),
                "pos": dict(self.pos),
                "meter": self.meter.state_dict(),
                "metrics": dict(self.metrics),
                "final": dict(self.final),
                "environment": self.environment,
            },
            self.path,
        )

    def _state_of(self, name: str, part: Any) -> Any:
        """``part.state_dict()``; for a part a plugin made, checked to be what a resumed run can
        read (:func:`unloadable`): else a :class:`~nasframe.registry.PluginFailure` naming the
        plugin, the key and the type, before any checkpoint holds it. nasframe's and PyTorch's
        own parts are not checked (they save only such types)."""
        cls = _plugin_class(part)
        if not cls:
            return part.state_dict()
        kind, plugin = _plugin_of(name, part)
        method = f"{type(part).__qualname__}.state_dict()"
        if plugin is None:
            state = part.state_dict()
        else:
            state = registry.call(kind, plugin, part.state_dict, label=method)
        bad = unloadable(state)
        if bad is not None:
            where, value, why = bad
            at = f" at {where!r}" if where else ""
            what = (
                f"returned from {method} {_type_name(value)}{at}, {why}, so that no checkpoint "
                "of this run could be resumed (a state_dict() may hold tensors, numbers, strings, "
                "None, and lists, tuples and dicts of them)"
            )
            if plugin is not None:
                raise registry.failure(kind, plugin, what)
            raise registry.PluginFailure(
                f"{name} {cls} {what}; this is a bug in the plugin that made it"
            )
        return state

    def resume(self) -> None:
        """Continue from the checkpoint; one from another kind of run or space, or one with
        values no run writes (damaged or tampered), is refused with one line."""
        ckpt = load_checkpoint(self.path)
        self._check_identity(ckpt)
        where, plugin = "position", ""  # what is being read, for the message
        try:
            pos = {k: type(v)(ckpt["pos"][k]) for k, v in self.pos.items()}
            _check_positions(ckpt["pos"], pos)
            where = "metrics"
            metrics = dict(ckpt["metrics"])
            if not all(isinstance(k, str) and is_number(v) for k, v in metrics.items()):
                raise DamagedState("metrics are not all names of numbers")
            final = ckpt.get("final", {})  # older checkpoints have none
            if not (isinstance(final, dict) and all(isinstance(k, str) for k in final)):
                raise DamagedState(f"final results are a {type(final).__name__}, not a mapping")
            environment = ckpt.get("environment")  # older checkpoints have none
            if environment is not None and not isinstance(environment, dict):
                raise DamagedState(f"environment is a {type(environment).__name__}, not a mapping")
            for name in ("model", "optimizer"):
                where = name
                bad = first_damaged(ckpt[name], self.parts.get(name))
                if bad is not None:
                    raise DamagedState(f"{name} {bad} holds NaN or infinity, which no run saves")
            self._refuse_other_optimizer(ckpt["optimizer"], self.parts.get("optimizer"))
            for name, part in self.parts.items():
                where, plugin = name, _plugin_class(part)
                self._load_part(name, part, ckpt[name])
            where, plugin = "random number generators' state", ""
            set_rng_state(ckpt["rng"])
            where = "running metrics"
            self.meter.load_state_dict(ckpt["meter"])
        except DamagedState as e:
            raise UserError(
                f"{self.path}: this checkpoint is damaged ({e}); restore it from a copy or start "
                "the run again"
            ) from None
        except (
            LookupError,
            TypeError,
            ValueError,
            ArithmeticError,
            RuntimeError,
            AttributeError,
        ) as e:
            first = first_line(str(e))
            raise UserError(
                f"{self.path}: this checkpoint does not fit this {RUN_NAMES.get(self.kind, self.kind)}: "
                f"its {where} "
                f"({type(e).__name__}: {first}); it may be damaged or from another version"
                + (f", or {plugin} cannot load it" if plugin else "")
            ) from None
        self.pos.update(pos)
        self.metrics, self.final, self.saved_environment = metrics, final, environment
        self._t0, self._wall0 = time.perf_counter(), float(self.pos["wall_s"])

    def _refuse_other_optimizer(self, saved: Any, optimizer: Any) -> None:
        """Refuse an optimizer state that another kind of optimizer saved (SGD's in an Adam):
        torch would load it and fail at the first step (``KeyError: 'betas'``). Told by the
        settings of its parameter groups, which differ both ways between kinds (one torch
        version to the next only adds or drops a flag)."""
        groups = saved.get("param_groups") if isinstance(saved, dict) else None
        if not (isinstance(optimizer, torch.optim.Optimizer) and groups):
            return
        if not (isinstance(groups, list) and isinstance(groups[0], dict)):
            return  # damaged: torch's load says so
        have, want = set(groups[0]) - {"params", "param_names"}, set(optimizer.defaults)
        if not (have - want and want - have):
            return
        where = f"{self.kind}.optimizer"
        raise UserError(
            f"{self.path}: its optimizer state is not a {type(optimizer).__name__}'s (it has "
            f"{', '.join(sorted(have - want))} and lacks {', '.join(sorted(want - have))}): the "
            f"run trained with another optimizer than {where} names now; write the one it "
            f"trained with in {where}.name of its config.yaml (a train.optimizer written without "
            "a name was sgd before nasframe of 2026-12-01, adam since)"
        )

    def _load_part(self, name: str, part: Any, state: Any) -> None:
        """``part.load_state_dict(state)``. A registered plugin's part that raises (other than
        :class:`~nasframe.strategy_common.DamagedState` or another nasframe error) is that
        plugin's :class:`~nasframe.registry.PluginFailure`: the state is the one its own
        ``state_dict()`` returned (checked when saved, read back whole), so most likely the
        plugin's bug, though the message names a damaged file too. nasframe's and PyTorch's
        parts, a plugin's that inherits its ``load_state_dict`` from them (an ASNG subclass),
        and a plugin class no registered name stands for, raise as they are (for
        :meth:`resume`'s message)."""
        kind, plugin = _plugin_of(name, part) if _plugin_class(part) else ("", None)
        owner = next((k for k in type(part).__mro__ if "load_state_dict" in vars(k)), object)
        if plugin is None or registry.package(owner) in ("nasframe", "torch"):
            part.load_state_dict(state)
            return
        try:
            part.load_state_dict(state)
        except Exception as e:
            if isinstance(e, UserError) or registry.package(type(e)) == "nasframe":  # DamagedState
                raise
            raise registry.failure(
                kind,
                plugin,
                f"failed in {type(part).__qualname__}.load_state_dict(state) restoring its "
                f"{name} from {self.path}: {registry.error_line(e)} (the state its own "
                "state_dict() returned, which it must load; if that file was edited or damaged, "
                "restore it from a copy)",
                e,
            ) from e

    def _check_identity(self, ckpt: Any) -> None:
        """Refuse what is not a checkpoint of this kind of run and this space (UserError)."""
        if not isinstance(ckpt, dict):
            raise UserError(f"{self.path}: not a nasframe checkpoint (no mapping of its parts)")
        kind, space_hash = ckpt.get("kind"), ckpt.get("space_hash")
        mine = RUN_NAMES.get(self.kind, self.kind)
        if not (isinstance(kind, str) and isinstance(space_hash, str)):
            if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
                what = "but a model's weights, such as a training's weights.pt"
            else:
                what = "(it names no kind of run and no space)"
            raise UserError(
                f"{self.path}: not a nasframe checkpoint {what}; resume a run directory with the "
                f"checkpoint.pt that `nasframe {self.kind}` wrote there"
            )
        if kind != self.kind:
            if kind not in RUN_NAMES:
                raise UserError(
                    f"{self.path}: not a nasframe checkpoint of a {mine} (its kind is {kind!r}); "
                    f"resume a run directory with the checkpoint.pt that `nasframe {self.kind}` "
                    "wrote there"
                )
            raise UserError(
                f"{self.path}: this is the checkpoint of a {RUN_NAMES[kind]} run, not of a "
                f"{mine}; resume it with `nasframe {kind} --resume`"
            )
        if space_hash != self.space_hash:
            what = "search space" if self.kind == "search" else "architecture"
            raise UserError(
                f"{self.path}: this checkpoint is from a different {what} (hash {space_hash}; "
                f"this config's is {self.space_hash}); resume it with the config it was started "
                "with"
            )


def _plugin_class(part: Any) -> str:
    """The class and module of a part that a plugin made (whose own code may be at fault when it
    cannot load its state); '' for nasframe's and PyTorch's own."""
    cls = type(part)
    if registry.package(cls) in ("nasframe", "torch"):
        return ""
    return f"{cls.__qualname__} (from {cls.__module__})"


#: a part's name in a run -> the kind of plugin that may make it
_PART_KINDS = {"strategy": "strategy", "optimizer": "optimizer", "growth": "growth"}


def _plugin_of(name: str, part: Any) -> tuple[str, str | None]:
    """The plugin kind of part ``name`` and the registered name of the plugin class ``part`` is
    an instance of (None when no loaded plugin is that class, e.g. a function made it)."""
    kind = _PART_KINDS.get(name, name)
    for info in registry.plugins():
        if info.kind == kind and info.loaded and info.obj is type(part):
            return kind, info.name
    return kind, None


#: leaves that torch.load(weights_only=True) reads (the exact types: numpy's float64 is a float
#: subclass that it refuses); anything else is judged by torch itself, by a round trip
_PLAIN_LEAVES = {
    torch.Tensor,
    torch.nn.Parameter,
    int,
    float,
    bool,
    str,
    bytes,
    complex,
    type(None),
    torch.Size,
    torch.dtype,
    torch.device,
}
_CONTAINERS = {dict, OrderedDict, list, tuple}


def unloadable(state: Any, where: str = "", depth: int = 0) -> tuple[str, Any, str] | None:
    """The first value in ``state`` (nested dicts, lists and tuples) that a checkpoint could not
    hold for a resumed run, as (its key path: ``extra``, ``theta[2]``, ``state[0].buf``; the
    value; why), or None. Plain leaves and containers are accepted at a glance; anything else
    (and any key that is not plain) is saved and read back with ``torch.load(weights_only=True)``,
    so that torch itself decides."""
    kind = type(state)
    if kind in _PLAIN_LEAVES:
        return None
    if kind in _CONTAINERS and depth < 64:  # deeper (or a cycle): left to the round trip
        if kind in (list, tuple):
            items = [(f"{where}[{i}]", None, v) for i, v in enumerate(state)]
        else:
            items = [(_key_path(where, k), k, v) for k, v in state.items()]
        for path, key, value in items:
            if key is not None and type(key) not in _PLAIN_LEAVES:
                bad_key = unloadable(key, path, depth + 1)  # a tuple of plain values: at a glance
                if bad_key is not None:
                    return path, key, f"as a key, {bad_key[2]}"
            bad = unloadable(value, path, depth + 1)
            if bad is not None:
                return bad
        return None
    why = _round_trip(state)
    return None if why is None else (where, state, why)


def _key_path(where: str, key: Any) -> str:
    """``where.key`` for a text key (``key`` at the top), ``where[key]`` for any other."""
    if isinstance(key, str):
        return f"{where}.{key}" if where else key
    return f"{where}[{key!r}]"


def _round_trip(value: Any) -> str | None:
    """Why a checkpoint holding ``value`` could not be written or read back with
    ``torch.load(weights_only=True)``, or None when it can."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
    except Exception as e:
        return f"which torch.save cannot write ({type(e).__name__}: {first_line(str(e))[:120]})"
    buffer.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception:
        return "which torch.load(weights_only=True) refuses"
    return None


def _type_name(value: Any) -> str:
    """'a numpy.ndarray', 'a frozenset', 'an acme.Thing'."""
    cls = type(value)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _check_positions(raw: dict[str, Any], pos: dict[str, Any]) -> None:
    """Raise DamagedState unless ``raw`` (as saved) holds the positions a run writes: whole
    counts within reach, ``epoch + step <= global_step`` (every epoch takes at least one step),
    and a finite, non-negative wall time."""
    for key in ("epoch", "step", "global_step"):
        if not (is_integer(raw[key]) and 0 <= raw[key] <= _MAX_POSITION):
            raise DamagedState(f"position {key} is {raw[key]!r}, not a count in 0..{_MAX_POSITION}")
    if pos["epoch"] + pos["step"] > pos["global_step"]:
        raise DamagedState(
            f"positions epoch {pos['epoch']} + step {pos['step']} exceed global_step "
            f"{pos['global_step']}, but every epoch takes a step"
        )
    if not (is_finite_number(raw["wall_s"]) and raw["wall_s"] >= 0):
        raise DamagedState(f"position wall_s is {raw['wall_s']!r}, not a number of seconds")
