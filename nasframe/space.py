"""The search space: the list of choices of a config, their paths and encodings.

Every choice has a stable path (``space.stages.s1.layer0.op``): its row of θ, its TensorBoard tag
and its key in exported architectures. Choices with a single option are legal (C = 1).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .cell_arch import Genotype, cell_fields, describe_cell, genotype
from .config import Choice, Config, options
from .config_load import load_config
from .errors import counted

__all__ = ["ChoicePoint", "SearchSpace", "load_space", "STEM_CHANNELS", "StagePaths"]

#: The path of a chain's stem width choice.
STEM_CHANNELS = "space.stem.channels"


@dataclass(frozen=True)
class StagePaths:
    """The paths of one chain stage's choices (``space.stages.s1.depth``, ...): θ's rows, so
    every module that names them takes them from here."""

    stage: str

    @property
    def base(self) -> str:
        """The stage's own path, ``space.stages.<name>`` (its config fields hang below it)."""
        return f"space.stages.{self.stage}"

    @property
    def depth(self) -> str:
        return f"{self.base}.depth"

    @property
    def width(self) -> str:
        return f"{self.base}.width"

    def op(self, layer: int) -> str:
        """The op choice of the stage's ``layer``-th layer (0-based)."""
        return f"{self.base}.layer{layer}.op"

    def layer_width(self, layer: int) -> str:
        """The width choice of the stage's ``layer``-th layer, where layers have their own."""
        return f"{self.base}.layer{layer}.width"


@dataclass(frozen=True)
class ChoicePoint:
    """One variable: its path, its options (in one-hot order) and whether they are ordered."""

    path: str
    options: tuple[Any, ...]
    ordinal: bool = False

    @property
    def size(self) -> int:
        """How many options the choice has (its category count)."""
        return len(self.options)


class SearchSpace:
    """The choices of a config's ``space`` section, in a fixed order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.choices: list[ChoicePoint] = []
        sp = config.space
        self.is_cells = sp.type == "cells"
        if self.is_cells:
            for path, field in cell_fields(sp):
                self._add(path, field)
        else:
            self._add_chain(sp)
        self._index = {c.path: k for k, c in enumerate(self.choices)}

    def _add_chain(self, sp: Any) -> None:
        self._add(STEM_CHANNELS, sp.stem.channels)
        for st in sp.stages:
            paths = StagePaths(st.name)
            self._add(paths.depth, st.depth)
            self._add(paths.width, st.width)
            for i, layer in enumerate(st.layer_configs()):
                self._add(paths.op(i), layer.op)
                if layer.width is not None:
                    self._add(paths.layer_width(i), layer.width)

    def _add(self, path: str, field: Any) -> None:
        if isinstance(field, Choice):
            self.choices.append(ChoicePoint(path, tuple(field.choices), field.ordinal))

    # ----------------------------------------------------------------------------------------
    @property
    def categories(self) -> list[int]:
        """Number of options C_i of each choice."""
        return [c.size for c in self.choices]

    @property
    def paths(self) -> list[str]:
        """The config path of each choice, in the order of the category vector."""
        return [c.path for c in self.choices]

    @property
    def open_paths(self) -> list[str]:
        """The paths of the choices still open (more than one option): none in an architecture."""
        return [c.path for c in self.choices if c.size > 1]

    @property
    def ordinal(self) -> list[int]:
        """Rows of the choices declared ``ordinal: true``."""
        return [k for k, c in enumerate(self.choices) if c.ordinal]

    @property
    def size(self) -> int:
        """Number of distinct encodings (product of the C_i)."""
        return math.prod(self.categories)

    @property
    def hash(self) -> str:
        """Hash of the space definition: checkpoints and exported architectures carry it."""
        # A cell space's retraining options do not change what is searched.
        return self._digest({"retrain"} if self.is_cells else None)

    @property
    def network_hash(self) -> str:
        """Hash of everything in the space that shapes a network (a cell space's retraining
        options too): what a training checkpoint must match."""
        return self._digest(None)

    def _digest(self, exclude: set[str] | None) -> str:
        dumped = self.config.space.model_dump(mode="json", warnings=False, exclude=exclude)
        return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]

    def index(self, path: str) -> int | None:
        """Row of θ for a path, or None for a constant."""
        return self._index.get(path)

    def value(self, path: str, field: Any, sample: Sequence[int] | None) -> Any:
        """The value a field takes in ``sample`` (category indices); constants are themselves."""
        if not isinstance(field, Choice):
            return field
        k = self._index[path]
        return field.choices[0 if sample is None else int(sample[k])]

    def decode(self, sample: Sequence[int]) -> dict[str, Any]:
        """Category indices -> {path: chosen value}."""
        return {c.path: c.options[int(i)] for c, i in zip(self.choices, sample, strict=True)}

    def encode(self, values: dict[str, Any]) -> np.ndarray:
        """{path: value} -> category indices (the inverse of :meth:`decode`)."""
        return np.array([c.options.index(values[c.path]) for c in self.choices], dtype=np.int64)

    def random_sample(self, rng: np.random.Generator) -> np.ndarray:
        """One architecture drawn uniformly (each choice independently)."""
        return np.array([rng.integers(c.size) for c in self.choices], dtype=np.int64)

    def genotype(self, sample: Sequence[int] | None) -> Genotype:
        """The cells of ``sample`` in a cell space: {kind: ((inputs, ops) per node)}."""
        return genotype(self.config.space, lambda path, f: self.value(path, f, sample))

    # ----------------------------------------------------------------------------------------
    def freeze(self, sample: Sequence[int]) -> dict[str, Any]:
        """The config with every choice replaced by its value in ``sample``: a runnable arch.

        Layers beyond the chosen depth are dropped; the result carries ``space_hash``.
        """
        cfg = self.config
        raw = cfg.model_dump(mode="json", exclude_none=True, warnings=False)
        if self.is_cells:
            geno = self.genotype(sample)
            for kind in geno:
                raw["space"][kind] = [
                    {"inputs": list(ins), "ops": list(ops)} for ins, ops in geno[kind]
                ]
            raw["space_hash"] = self.hash
            return raw
        sp = copy.deepcopy(raw["space"])
        sp["stem"]["channels"] = self.value(STEM_CHANNELS, cfg.space.stem.channels, sample)
        for st_raw, st in zip(sp["stages"], cfg.space.stages, strict=True):
            paths = StagePaths(st.name)
            depth = self.value(paths.depth, st.depth, sample)
            st_raw["depth"] = depth
            st_raw["width"] = self.value(paths.width, st.width, sample)
            layers = []
            for i, layer in enumerate(st.layer_configs()[:depth]):
                entry = {"op": self.value(paths.op(i), layer.op, sample)}
                if layer.width is not None:
                    entry["width"] = self.value(paths.layer_width(i), layer.width, sample)
                layers.append(entry)
            st_raw.pop("layer", None)
            st_raw["layers"] = layers
        raw["space"] = sp
        raw["space_hash"] = self.hash
        return raw

    def network_key(self, sample: Sequence[int]) -> str:
        """A string two samples share exactly when they build the same network: they differ at
        most in the ops or widths of layers beyond their stage's chosen depth, or in layers that
        add nothing (an ``identity`` layer is the same network as one layer less)."""
        arch = self.freeze(sample)
        if not self.is_cells:
            layout = self.config.space.layout
            for stage in arch["space"]["stages"]:
                stage["layers"] = [
                    layer for layer in stage["layers"] if not _adds_nothing(layer["op"], layout)
                ]
                stage["depth"] = len(stage["layers"])
        return json.dumps(arch, sort_keys=True)

    def describe(self, sample: Sequence[int], size: tuple[int, int] | None = None) -> str:
        """A readable one-architecture summary: one stage (or cell kind) per line, a stage as
        its transition, width, stride (above 1), depth and layers (``s2: conv3 -> 32, stride 2,
        depth 2: conv3 > conv3(24)``: a layer with a width of its own shows it). A cell space's
        network at the search's size, or at ``size`` (cells, channels: a retraining's)."""
        cfg = self.config
        if self.is_cells:
            sp = cfg.space
            geno = self.genotype(sample)
            cells, channels = size or (sp.cells, sp.channels)
            reductions = sp.reduction_cells(cells)
            head = f"cells: {cells} ({counted(sp.nodes, 'node')}), channels {channels}, " + (
                f"reductions at {reductions}" if reductions else "no reduction cell"
            )
            return "\n".join([head] + [f"{k}: {describe_cell(nodes)}" for k, nodes in geno.items()])
        stem = self.value(STEM_CHANNELS, cfg.space.stem.channels, sample)
        lines = [f"stem: {cfg.space.stem.op} -> {stem}"]
        for st in cfg.space.stages:
            paths = StagePaths(st.name)
            depth = self.value(paths.depth, st.depth, sample)
            width = self.value(paths.width, st.width, sample)
            ops = []
            for i, layer in enumerate(st.layer_configs()[:depth]):
                op = str(self.value(paths.op(i), layer.op, sample))
                if layer.width is not None:
                    op += f"({self.value(paths.layer_width(i), layer.width, sample)})"
                ops.append(op)
            stride = f", stride {st.stride}" if st.stride > 1 else ""
            layers = f": {' > '.join(ops)}" if ops else ""
            lines.append(f"{st.name}: {st.transition} -> {width}{stride}, depth {depth}{layers}")
        return "\n".join(lines)


def config_warnings(config: Config) -> list[str]:
    """Warnings, each starting with a config path, about what is valid but most likely not
    meant: ``layers:`` entries beyond a stage's largest depth (never built nor searched), and
    a cell space's explicit ``reductions`` placing those of a retraining network of another
    size too."""
    if config.space.type == "cells":
        return _reductions_for_both(config.space)
    notes = []
    for st in config.space.stages:
        most = max(options(st.depth))
        if st.layers is None or len(st.layers) <= most:
            continue
        extra = len(st.layers) - most
        which = "this layer is" if extra == 1 else f"these {extra} layers are"
        notes.append(
            f"space.stages.{st.name}.layers.{most}: {which} never built (depth is at most "
            f"{most}); remove {'it' if extra == 1 else 'them'}, or allow a larger depth"
        )
    return notes


def _reductions_for_both(sp: Any) -> list[str]:
    """The warning for explicit ``reductions`` when the retraining network has another number
    of cells: they place its reductions as written, not where its size's default would."""
    retrain = sp.retrain.cells
    if sp.reductions is None or retrain is None or retrain == sp.cells:
        return []
    default = sorted({retrain // 3, 2 * retrain // 3})
    return [
        f"space.reductions: {sorted(sp.reductions)} also place the reductions of the "
        f"{retrain}-cell retraining network (space.retrain.cells), where its size's default "
        f"would be {default}; remove reductions for each size's default"
    ]


def load_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    """Read and validate a config file and return its search space."""
    config, _ = load_config(path, overrides)
    return SearchSpace(config)


def _adds_nothing(op: str, layout: str) -> bool:
    """Whether a chain layer of op ``op`` leaves the network as it is: a channel-preserving op
    that builds no module (``identity``)."""
    try:
        return _builds_nothing(registry.get("op", op), layout)
    except Exception:  # a broken plugin is reported where the network is built
        return False


@functools.cache
def _builds_nothing(cls: Any, layout: str) -> bool:
    """Whether op class ``cls`` is channel-preserving and builds no module (cached by class: a
    plugin registered again under the same name is asked again)."""
    preserving = bool(getattr(cls, "channel_preserving", False))
    return preserving and list(cls.build(4, 4, 1, layout)) == []
