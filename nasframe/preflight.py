"""`nasframe validate`'s checks beyond the schema: what a run would refuse when it starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import registry
from .chain_widths import check_ops
from .config import Config
from .data import check_augment, check_root
from .space import SearchSpace

__all__ = ["preflight", "check_growth_options", "check_optimizers", "check_augments"]


def preflight(config: Config, data: bool = False) -> str:
    """Raise the :class:`~nasframe.UserError` a run of ``config`` would raise as it starts, and say
    what was checked.

    A config with choices is checked as a search, one without as a training (an ``arch.yaml``).
    Always: ``data.root`` against the dataset, the ops against the layout, the strategy and its
    options, the growth strategy's options. With ``data``: the whole set-up of the run (the
    dataset loaded, the networks built on the config's device, growth, optimizer and schedule),
    stopping before anything is written, and the augmentation (a search's config: also
    ``train.augment``, for the retraining) against the data's samples.
    """
    from .search import make_strategy, run_search

    check_root(config.data)
    check_ops(config)
    check_growth_options(config)
    space = SearchSpace(config)
    check_optimizers(config, search=bool(space.choices))
    if space.choices:
        if data:  # the dry run makes the strategy too
            info = run_search(config, None, progress=False, dry_run=True)
            _check_augments_of(config, info, search=True)
            return f"search set up: {info['data']}, {info['train']} train / {info['valid']} valid"
        S = config.search
        make_strategy(S.strategy, space, S.lam, config.seed, S.strategy_options)
        return "search config"
    if not data:
        return "training config"
    from .train import run_train

    info = run_train(config, None, progress=False, dry_run=True)
    _check_augments_of(config, info, search=False)
    return f"training set up: {info['data']}, {info['train']} train / {info['test']} test"


def check_growth_options(config: Config) -> None:
    """Refuse a ``train.growth.options`` key the growth strategy does not take, or a value of the
    wrong kind or out of range, at ``train.growth.options.KEY``: the strategy's
    ``checked_options`` (which :class:`nasframe_growth.GrowthStrategy` provides; a plugin without
    it is not checked here), then the strategy built with them, as training builds it."""
    growth = config.train.growth
    if growth is None:
        return
    from .train import growth_blame, growth_plugin

    strategy = growth_plugin(growth.strategy)
    check = getattr(strategy, "checked_options", None)
    if check is None:
        return

    registry.call(  # the strategy's refusals are the user's; anything else, the plugin's bug
        "growth",
        growth.strategy,
        lambda: strategy(**check(growth.options)),
        label=f"{growth.strategy}(**train.growth.options)",
        blame=growth_blame(growth),
    )


#: options that depend on where the parameters live: left to the run, which builds the optimizer
#: on the config's device
_DEVICE_OPTIONS = ("fused", "capturable")


def check_optimizers(config: Config, search: bool) -> None:
    """Check ``train.optimizer`` (and ``search.optimizer`` for a search) as the run (or the
    retraining of what a search finds) builds it (:func:`~nasframe.optim.check_optimizer`),
    raising what it would raise at the option's config path: a ``momentum: abc``, an option torch
    refuses. An optimizer with a device-dependent option (``fused``, ``capturable``) is left to
    the run, but for what is refused on any device."""
    from .optim import check_optimizer, refuse_unsupported

    sections = (("search", config.search.optimizer),) if search else ()
    for where, cfg in (*sections, ("train", config.train.optimizer)):
        if any(cfg.kwargs().get(k) for k in _DEVICE_OPTIONS):
            refuse_unsupported(cfg.kwargs(), [], f"{where}.optimizer")
            continue
        check_optimizer(cfg, f"{where}.optimizer")


def check_augments(config: Config, sample_shape: Sequence[int], search: bool) -> None:
    """Refuse, at its config path, augmentation the data's samples (``sample_shape``) cannot take:
    samples that are not images, a cutout that blanks every image or a crop padding of the
    image's side (:func:`~nasframe.augment.check_augment_fits`). ``train.augment`` always (a
    search's config also retrains what it finds), ``search.augment`` for a search."""
    sections = (("search.augment", config.search.augment),) if search else ()
    for where, cfg in (*sections, ("train.augment", config.train.augment)):
        check_augment(cfg, sample_shape, where)  # with check_augment_fits


def _check_augments_of(config: Config, info: dict[str, Any], search: bool) -> None:
    """:func:`check_augments` with the sample shape a dry run reports (none: not checked here)."""
    shape = info.get("sample_shape")
    if shape is not None:
        check_augments(config, shape, search)
