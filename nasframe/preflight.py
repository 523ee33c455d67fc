"""`nasframe validate`'s checks beyond the schema: what a run would refuse when it starts."""

from __future__ import annotations

from .config import Config
from .space import SearchSpace

__all__ = ["preflight"]


def preflight(config: Config, data: bool = False) -> str:
    """Raise the :class:`~nasframe.UserError` a run of ``config`` would raise as it starts, and say
    what was checked.

    A config with choices is checked as a search, one without as a training (an ``arch.yaml``).
    Always: the strategy and its options. With ``data``: the whole set-up of the run (the dataset
    loaded, the networks built on the config's device, growth, optimizer and schedule), stopping
    before anything is written.
    """
    from .search import _make_strategy, run_search

    space = SearchSpace(config)
    if space.choices:
        if data:  # the dry run makes the strategy too
            info = run_search(config, None, progress=False, dry_run=True)
            return f"search set up: {info['data']}, {info['train']} train / {info['valid']} valid"
        S = config.search
        _make_strategy(S.strategy, space, S.lam, config.seed, S.strategy_options)
        return "search config"
    if not data:
        return "training config"
    from .train import run_train

    info = run_train(config, None, progress=False, dry_run=True)
    return f"training set up: {info['data']}, {info['train']} train / {info['test']} test"
