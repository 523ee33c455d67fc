"""The config a ``search`` or ``train`` command runs with, and what ``--resume`` refuses: a run of
the other kind, a ``--set`` of a setting whose state the checkpoint holds, a CONFIG that differs
from the run's own ``config.yaml``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .config_load import load_config
from .errors import ConfigError, Problem, UserError
from .run_dirs import why_not_a_run
from .run_files import CHECKPOINT, RUN_CONFIG
from .runstate import RUN_NAMES
from .yaml_io import is_a_directory

__all__ = ["load_for_run"]


def load_for_run(args: argparse.Namespace) -> tuple[Any, dict]:
    """The config and raw mapping a ``search`` or ``train`` command runs with: its CONFIG, or on
    ``--resume`` the run's own ``config.yaml`` (with ``--set``), refused when the run is of the
    other kind, when ``--set`` changes what its checkpoint holds state for, or when a CONFIG
    given too differs from it."""
    if args.config is not None and args.command == "search":
        _refuse_run_directory(Path(args.config))
    if not args.resume:
        if args.config is None:
            raise UserError(f"nasframe {args.command}: give a CONFIG file (or --resume DIR)")
        return load_config(args.config, args.set, unused=_unused(args))
    saved = Path(args.resume) / RUN_CONFIG
    if not saved.exists():
        raise UserError(f"--resume {args.resume}: {why_not_a_run(Path(args.resume), args)}")
    config, raw = load_config(saved, args.set, unused=_unused(args))
    ran = _as_saved(saved, config, args)
    _refuse_other_kind(args, _config_kind(ran))
    if args.set and ran is not None and (Path(args.resume) / CHECKPOINT).exists():
        _refuse_changed_state(args, config, ran)
    if args.config is not None:
        _check_same_config(args, config, saved)
        args.config = None  # from here on, as if only --resume had been given
    return config, raw


def _unused(args: argparse.Namespace) -> tuple[str, ...]:
    """The config sections whose plugins the command does not use: a training's ``search``."""
    return ("search",) if args.command == "train" else ()


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


def _as_saved(saved: Path, config, args: argparse.Namespace):
    """A run directory's config as ``saved`` has it (``config`` itself unless ``--set``
    changed it), or None when it does not load: the run itself then says why."""
    if not args.set:
        return config
    try:
        return load_config(saved, unused=_unused(args))[0]
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
#: buffers, a growth plan and the widths it reached): another value cannot continue from it
_KEPT_ON_RESUME = {
    "search": ("search.strategy", "search.optimizer.name"),
    "train": (
        "train.optimizer.name",
        "train.growth",
        "train.growth.strategy",
        "train.growth.start_fraction",
        "train.growth.layers",
    ),
}


def _kept(config: Any, where: str) -> Any:
    """The value of kept setting ``where`` in ``config`` (None below an absent section);
    ``train.growth`` itself: whether the run grows (``on``/``off``)."""
    if where == "train.growth":
        return "on" if config.train.growth is not None else "off"
    value = config
    for name in where.split("."):
        value = getattr(value, name) if value is not None else None
    return value


def _refuse_changed_state(args: argparse.Namespace, config, ran) -> None:
    """Refuse a ``--set`` on resume that changes a setting whose state the checkpoint holds
    (``ran``: the config the run ran with, ``config``: with the ``--set``)."""
    for where in _KEPT_ON_RESUME[args.command]:
        before, after = _kept(ran, where), _kept(config, where)
        if before != after:
            given = next(
                (item for item in args.set if where.startswith(item.split("=", 1)[0].strip())),
                f"{where}={after}",
            )
            was, now = ("null" if v is None else v for v in (before, after))
            raise UserError(
                f"--set {given}: the run {args.resume} was made with {where} {was}, and its "
                f"checkpoint holds the state that made, which {now} cannot continue from; start "
                f"a new run for {now} (without --resume)"
            )


def _check_same_config(args: argparse.Namespace, run_config, saved: Path) -> None:
    """A CONFIG given with --resume must say what the run's own config.yaml says: the run goes on
    with the settings it started with (changed only through --set, which config.yaml records)."""
    given, _ = load_config(args.config, args.set, unused=_unused(args))
    differences = [d for d in _differences(run_config, given) if d[0] not in ("name", "space_hash")]
    if not differences:
        return
    where, ran, asked = differences[0]
    more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
    resume = f"nasframe {args.command} --resume {args.resume}"
    resume += "".join(f" --set {shlex.quote(item)}" for item in args.set)
    kept = where in _KEPT_ON_RESUME[args.command]
    if len(differences) == 1 and not where.startswith("space") and not kept:
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
