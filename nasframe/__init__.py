"""nasframe: neural architecture search with YAML search spaces, ASNG and plugins.

The public API lives here; plugins import only from this module.
"""

__version__ = "0.1.0"

from . import registry
from .asng import ASNG, ranking_utility
from .augment import augment_batch, crop_flip_at, cutout, cutout_at, random_crop, random_flip
from .cell_network import CellNetwork
from .cell_ops import FactorizedReduce
from .cells import CellSupernet
from .config import Choice, Config
from .config_load import load_config, validate_data
from .datasets import Dataset
from .distributed import Group, join_group
from .errors import ConfigError, Problem, UserError
from .macs import count_macs
from .network import Supernet, build_network, count_parameters, make_supernet
from .ops import LAYOUTS, Op, layer_types
from .random_search import RandomSearch
from .registry import register
from .regularize import l2_penalty
from .space import ChoicePoint, SearchSpace, load_space
from .strategy import Strategy

__all__ = [
    "__version__",
    "augment_batch",
    "random_crop",
    "random_flip",
    "cutout",
    "crop_flip_at",
    "cutout_at",
    "ASNG",
    "ranking_utility",
    "CellNetwork",
    "CellSupernet",
    "FactorizedReduce",
    "Choice",
    "ChoicePoint",
    "Config",
    "ConfigError",
    "Dataset",
    "Group",
    "LAYOUTS",
    "Op",
    "Problem",
    "RandomSearch",
    "SearchSpace",
    "Strategy",
    "Supernet",
    "UserError",
    "build_network",
    "count_macs",
    "count_parameters",
    "join_group",
    "l2_penalty",
    "layer_types",
    "load_config",
    "load_space",
    "make_supernet",
    "register",
    "registry",
    "run_search",
    "run_train",
    "search_iteration",
    "validate_data",
]


def __getattr__(name: str):
    # The run loops import TensorBoard and friends: load them only when asked for.
    if name == "run_search":
        from .search import run_search

        return run_search
    if name == "search_iteration":
        from .search_step import search_iteration

        return search_iteration
    if name == "run_train":
        from .train import run_train

        return run_train
    raise AttributeError(f"module 'nasframe' has no attribute {name!r}")
