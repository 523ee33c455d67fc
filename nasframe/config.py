"""The experiment schema: one YAML file = one runnable experiment (read by
:mod:`nasframe.config_load`).

Every field that a search may choose is a *choice*: either a constant (``width: 32``) or
``{choices: [16, 32, 64]}``. Names of ops, optimizers, strategies and datasets resolve through the
registry, so plugins validate like built-ins.
"""

from __future__ import annotations

import inspect
import math
import re
from types import NoneType, UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import Strict as PydanticStrict
from pydantic_core import PydanticCustomError

from . import registry
from .cell_config import CellSpace
from .config_base import (
    NumbersOnly,
    Strict,
    bool_hint,
    error_at,
    is_utf8,
    plugin_name,
    plugins_unchecked,
    refuse_non_number,
    value_kind,
)
from .config_source import ConfigSource, default_stage_name
from .errors import UserError, did_you_mean
from .precision import Precision
from .values import is_number
from .yaml_io import parse_scalar

__all__ = ["Config", "Choice", "json_schema"]

T = TypeVar("T")


class Choice(Strict, Generic[T]):
    """A choice among ``choices``; their order is the one-hot index. ``ordinal: true`` says the
    options are ordered (numbers, increasing): ASNG then models the choice as a rounded Gaussian
    over the option indices instead of a categorical distribution."""

    choices: list[T] = Field(min_length=1)
    ordinal: bool = Field(
        False,
        description="the options are ordered (numbers, increasing): ASNG searches them with a "
        "Gaussian over their indices, so that near options share evidence",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Choice[T]:
        values = self.choices
        for i, v in enumerate(values):
            if v in values[:i]:
                raise error_at(
                    "choice",
                    "option '{v}' is listed twice; keep one (each option is one index of the "
                    "one-hot choice)",
                    ("choices", i),
                    v=v,
                )
        if not self.ordinal:
            return self
        if len(values) < 2:
            raise PydanticCustomError("ordinal", "ordinal: true needs at least 2 choices")
        if not all(is_number(v) for v in values):
            raise PydanticCustomError(
                "ordinal",
                "ordinal: true needs numbers (widths, depths), got {got}; "
                "a choice of ops is categorical: remove ordinal",
                {"got": values},
            )
        if any(a >= b for a, b in zip(values, values[1:], strict=False)):
            raise PydanticCustomError(
                "ordinal",
                "ordinal: true needs the choices in increasing order, got {got}; list them as "
                "{fixed}",
                {"got": values, "fixed": sorted(values)},
            )
        return self


def _choice_kind(v: Any) -> str:
    return "choice" if isinstance(v, dict) else "const"


def choice_of(item: Any) -> Any:
    """Type of a field that is either a constant ``item`` or a :class:`Choice` of them."""
    return Annotated[
        Union[Annotated[item, Tag("const")], Annotated[Choice[item], Tag("choice")]],  # noqa: UP007
        Discriminator(_choice_kind),
    ]


OpName = Annotated[str, plugin_name("op")]
#: Most channels of a layer: far above any search space's, far below what overflows a tensor size.
MAX_WIDTH = 1 << 20
#: Most layers after a stage's transition.
MAX_DEPTH = 1000
# Strict: a width or depth of true, or "8", is a mistake, not 1 or 8.
Width = choice_of(Annotated[int, PydanticStrict(), Field(gt=0, le=MAX_WIDTH)])
Depth = choice_of(Annotated[int, PydanticStrict(), Field(ge=0, le=MAX_DEPTH)])


def options(value: Any) -> list[Any]:
    """The options of a constant-or-choice field."""
    return list(value.choices) if isinstance(value, Choice) else [value]


# --------------------------------------------------------------------------------------------
class DataConfig(Strict):
    name: Annotated[str, plugin_name("dataset")] = Field(
        "mnist1d",
        description="dataset plugin: built in mnist1d, digits, synthetic (no files), cifar10, "
        "cifar100, image_folder (read from data.root), or a plugin's",
    )
    valid_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="part of the training data held out to rank architectures"
    )
    root: str | None = Field(None, description="directory of on-disk datasets")
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the dataset (e.g. synthetic shape)"
    )


class LayerConfig(Strict):
    op: choice_of(OpName) = Field(
        "conv3", description="op of this layer (a choice or a constant; linear in a linear space)"
    )  # type: ignore[valid-type]
    width: Width | None = Field(  # type: ignore[valid-type]
        None, description="width of this layer only (default: the stage's width)"
    )


class StemConfig(Strict):
    misplaced = {"width": "the stem's width is its 'channels'"}
    op: OpName = Field(
        "conv3",
        description="op mapping the input to `channels` channels (linear in a linear space)",
    )
    channels: Width = Field(32, description="output channels (a choice or a constant)")  # type: ignore[valid-type]


#: What a stage's name must be: it keys the stage's choice paths (``space.stages.NAME.width``).
STAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StageConfig(Strict):
    misplaced = {
        "op": "a layer's op goes under 'layer:' (layer: {op: ...}); the stage's own op is its "
        "'transition'",
        "channels": "a stage's channels are its 'width'",
        **dict.fromkeys(
            ("num_layers", "n_layers", "num_blocks", "blocks"),
            "a stage's number of layers is its 'depth' (a choice or a constant)",
        ),
    }
    name: str | None = Field(
        None, description="identifier used in choice paths (default s1, s2, ...)"
    )
    stride: PositiveInt = Field(1, le=1024, description="stride of the stage's transition")
    transition: OpName = Field(
        "conv3",
        description="op that enters the stage: previous width -> stage width, with stride "
        "(linear in a linear space)",
    )
    depth: Depth = Field(1, description="number of layers after the transition")  # type: ignore[valid-type]
    width: Width = Field(32, description="channels of the stage")  # type: ignore[valid-type]
    layer: LayerConfig | None = Field(None, description="template repeated for every layer")
    layers: list[LayerConfig] | None = Field(
        None, description="one entry per layer (exported architectures use this)"
    )

    @model_validator(mode="after")
    def _layers(self) -> StageConfig:
        if self.layer is not None and self.layers is not None:
            raise PydanticCustomError(
                "layers", "give either 'layer' (repeated for every layer) or 'layers', not both"
            )
        if self.layers is not None and len(self.layers) < max(options(self.depth)):
            raise PydanticCustomError(
                "layers",
                "'layers' lists {n} layers but depth can be {d}; list one per layer",
                {"n": len(self.layers), "d": max(options(self.depth))},
            )
        return self

    def layer_configs(self) -> list[LayerConfig]:
        """One layer config per possible layer (the template repeated, or the explicit list)."""
        max_depth = max(options(self.depth))
        if self.layers is not None:
            return list(self.layers[:max_depth])
        return [self.layer or LayerConfig() for _ in range(max_depth)]


class HeadConfig(Strict):
    pool: Literal["avg", "max"] = Field(
        "avg", description="global pooling before the classifier (signals and images)"
    )
    classes: PositiveInt | None = Field(
        None, le=MAX_WIDTH, description="outputs (default: the data's classes)"
    )


class ChainSpace(Strict):
    """A chain of stages: stem, stages (transition + layers), pooling head."""

    misplaced = {
        key: f"'{key}' belongs to a stage, under 'stages:' (indented as its other keys)"
        for key in ("depth", "width", "stride", "transition", "layer", "layers")
    }

    type: Literal["chain"] = Field("chain", description="kind of space")
    layout: Literal["conv1d", "conv2d", "linear"] = Field(
        "conv1d", description="signals (conv1d), images (conv2d) or vectors (linear)"
    )
    stem: StemConfig = Field(default_factory=StemConfig, description="the first op")
    stages: list[StageConfig] = Field(min_length=1, description="stages, in order")
    head: HeadConfig = Field(default_factory=HeadConfig, description="pooling and classifier")

    @model_validator(mode="after")
    def _names_and_layouts(self) -> ChainSpace:
        seen: dict[str, int] = {}
        unnamed = {i for i, st in enumerate(self.stages) if not st.name}
        for i, st in enumerate(self.stages):
            st.name = st.name or default_stage_name(i)
            if not STAGE_NAME.fullmatch(st.name):
                raise error_at(
                    "stage_name",
                    "stage name '{n}' must be an identifier (letters, digits and _, not starting "
                    "with a digit), e.g. s{i}",
                    ("stages", i, "name"),
                    n=st.name,
                    i=i + 1,
                )
            if st.name in seen:
                j = seen[st.name]
                clash = "stages.{j} and stages.{i} are both named '{n}'; rename one"
                if i in unnamed or j in unnamed:
                    d, o = (i, j) if i in unnamed else (j, i)
                    clash = (
                        f"stages.{d} has the default name '{{n}}' (a stage without a name is "
                        f"s1, s2, ... by its position), which stages.{o} is given; name "
                        f"stages.{d} or rename stages.{o}"
                    )
                raise error_at(
                    "stage_name",
                    clash + " (names key choice paths such as space.stages.{n}.width)",
                    ("stages", i, "name"),
                    n=st.name,
                    i=i,
                    j=j,
                )
            seen[st.name] = i
            if self.layout == "linear":
                _linear_defaults(st)
            if self.layout == "linear" and st.stride != 1:
                raise error_at(
                    "stride",
                    "a linear space's vectors have no length to reduce: stride must be 1, got {s}",
                    ("stages", i, "stride"),
                    s=st.stride,
                )
        if self.layout == "linear" and "op" not in self.stem.model_fields_set:
            self.stem.op = "linear"
        if self.layout == "linear" and self.head.pool != "avg":  # avg: the default, exported
            raise error_at(
                "pool",
                "a linear space's vectors have nothing to pool (the classifier takes the last "
                "layer's output); remove head.pool",
                ("head", "pool"),
            )
        return self


def _linear_defaults(st: StageConfig) -> None:
    """A linear space's ops left unwritten are ``linear`` (the default ``conv3`` takes no
    vectors: its refusal named keys the user never wrote)."""
    if "transition" not in st.model_fields_set:
        st.transition = "linear"
    if st.layers is None and st.layer is None and max(options(st.depth)) > 0:
        st.layer = LayerConfig(op="linear")
    written = st.layers if st.layers is not None else [st.layer] if st.layer is not None else []
    for layer in written:
        if "op" not in layer.model_fields_set:
            layer.op = "linear"


def _space_kind(v: Any) -> str | None:
    """Chain spaces need no ``type`` key; cell spaces say ``type: cells``."""
    kind = v.get("type", "chain") if isinstance(v, dict) else getattr(v, "type", "chain")
    # An unknown type gets the message below; a non-mapping gets the chain schema's own error.
    return (
        {"chain": "chain_space", "cells": "cell_space"}.get(kind) if isinstance(kind, str) else None
    )


Space = Annotated[
    Union[Annotated[ChainSpace, Tag("chain_space")], Annotated[CellSpace, Tag("cell_space")]],  # noqa: UP007
    Discriminator(
        _space_kind,
        custom_error_type="space_type",
        custom_error_message="unknown kind of space: 'type' must be 'chain' (the default) or 'cells'",
    ),
]


#: the largest float32: an optimizer's hyperparameters become float32 tensors' scalars
FLOAT32_MAX = 3.4028234663852886e38


def _refuse_beyond_float32(value: Any, where: tuple[Any, ...]) -> None:
    if is_number(value) and abs(value) > FLOAT32_MAX:
        raise error_at(
            "float32_range",
            "{v} is beyond what a float32 holds (at most 3.4e38 in size)",
            where,
            v=str(value),
        )


class OptimizerConfig(NumbersOnly):
    """An optimizer by registry name; any other key is passed to it as a keyword argument."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: Annotated[str, plugin_name("optimizer")] = Field(
        "sgd", description="optimizer plugin: sgd, adam, adamw, sgd_gc, adam_gc, ..."
    )
    lr: PositiveFloat = Field(0.05, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="per-step schedule over the whole run"
    )
    gc: Literal["all", "conv"] | None = Field(
        None,
        description="Gradient Centralization for any optimizer: all (dim > 1) or conv (dim > 3)",
    )

    @field_validator("lr")
    @classmethod
    def _float32_lr(cls, lr: float) -> float:
        _refuse_beyond_float32(lr, ())
        return lr

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the optimizer (everything but name, schedule and gc)."""
        return {"lr": self.lr, **(self.model_extra or {})}

    @model_validator(mode="after")
    def _known_kwargs(self) -> OptimizerConfig:
        extra = dict(self.model_extra or {})
        for key in extra:
            accepted = self._accepted_keys()
            if accepted is not None and key not in accepted:
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}' for optimizer '{opt}'{hint}",
                    {"key": key, "opt": self.name, "hint": did_you_mean(key, accepted)},
                )
        signature = self._signature()
        for key, value in extra.items():
            if key in signature:
                _check_option_kind(key, value, signature[key])
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for i, item in items:
                where = (key,) if i is None else (key, i)
                if isinstance(item, float) and not math.isfinite(item):
                    raise error_at(
                        "finite", "must be finite, got {v}", (key,), v=str(value).lower()
                    )
                number = parse_scalar(item) if isinstance(item, str) else None
                if is_number(number):
                    refuse_non_number(where, item)  # a number quoted by mistake
                _refuse_beyond_float32(item, where)
        return self

    def _signature(self) -> dict[str, inspect.Parameter]:
        """The optimizer's parameters by name; empty when unknown (checked when it is built)."""
        try:
            return dict(inspect.signature(registry.get("optimizer", self.name)).parameters)
        except (registry.PluginError, TypeError, ValueError):
            return {}

    def _accepted_keys(self) -> list[str] | None:
        """The keyword arguments the optimizer takes; None when unknown (a plugin that takes
        ``**kwargs``, or one that is broken: reported at its name)."""
        try:
            cls = registry.get("optimizer", self.name)
        except registry.PluginError:
            return None
        takes = registry.keywords(cls, exclude=("params",))
        return None if takes is None else sorted(takes)


def _bool_or_none(annotation: Any) -> bool:
    """Whether a parameter annotation says ``bool | None`` (torch's ``foreach`` and ``fused``),
    as a type or as the text ``from __future__ import annotations`` leaves."""
    if isinstance(annotation, str):
        text = re.sub(r"\s|typing\.", "", annotation)
        return text in ("bool|None", "None|bool", "Optional[bool]")
    if get_origin(annotation) in (Union, UnionType):
        return set(get_args(annotation)) == {bool, NoneType}
    return False


def _check_option_kind(key: str, value: Any, param: inspect.Parameter) -> None:
    """Refuse at ``key`` a value other than true or false for an optimizer option whose default in
    the optimizer's signature is a boolean (``nesterov``, ``amsgrad``), or other than true, false
    or null for a ``bool | None`` one (``foreach``, ``fused``): the optimizer would only refuse
    it, or take ``1`` or ``"no"`` for true, when a run builds it. (Options that take numbers
    are checked when it is built, by :func:`nasframe.optim.build_optimizer`.)"""
    default = param.default
    takes_null = _bool_or_none(param.annotation)
    if not (isinstance(default, bool) or (default is None and takes_null)):
        return
    if isinstance(value, bool) or (value is None and takes_null):
        return
    raise error_at(
        "bool_option",
        "expected true{o}, got {got}{hint}",
        (key,),
        o=", false or null" if takes_null else " or false",
        got=value_kind(value),
        hint=bool_hint(value),
    )


class AugmentConfig(Strict):
    """Image augmentation of training batches, done on the device (crop, flip, cutout)."""

    crop_padding: NonNegativeInt = Field(
        0,
        le=4096,
        description="random crop from the image zero-padded by this many pixels (0: off)",
    )
    flip: bool = Field(False, description="mirror left-right with probability 1/2")
    cutout: NonNegativeInt = Field(
        0, le=1 << 16, description="zero a random square of this side (0: off)"
    )


class SelectConfig(Strict):
    """The final choice among candidates evaluated with the supernet's shared weights."""

    method: Literal["random", "evolution"] = Field(
        "random",
        description="random: score candidates drawn from the final distribution; evolution: "
        "Single Path One-Shot's evolutionary search, starting from such a population",
    )
    candidates: PositiveInt = Field(
        100,
        description="architectures scored: drawn from the final distribution (random; the "
        "strategy's most likely one counts as the first; repeats are scored once), or the "
        "evolution's whole budget",
    )
    batches: PositiveInt | None = Field(
        10,
        description="full valid batches of search.batch_size each candidate is scored on, the "
        "same for all (null: every full batch of the valid split)",
    )
    population: PositiveInt = Field(
        20, description="evolution: the first population, and the children bred per generation"
    )
    parents: PositiveInt | None = Field(
        None,
        description="evolution: the best candidates scored so far that breed the children "
        "(null: a quarter of the population, at least 1)",
    )
    mutation: float = Field(
        0.1, gt=0.0, le=1.0, description="evolution: probability that a child redraws a choice"
    )

    @model_validator(mode="after")
    def _parents(self) -> SelectConfig:
        if self.parents is not None and self.parents > self.population:
            raise error_at(
                "parents",
                "parents ({k}) cannot outnumber the population ({p}); lower parents or raise "
                "the population",
                ("parents",),
                k=self.parents,
                p=self.population,
            )
        return self

    @property
    def breeding_parents(self) -> int:
        """``parents``, or its default: a quarter of the population, at least 1."""
        return self.parents if self.parents is not None else max(1, self.population // 4)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def _check_device(device: str) -> str:
    if not _DEVICE.fullmatch(device):
        raise PydanticCustomError(
            "device", "must be auto, cpu, cuda, cuda:N or mps, got '{d}'", {"d": device}
        )
    return device


_NAME = re.compile(r"[^./\\][^/\\]{0,99}", re.DOTALL)


class LatencyConfig(Strict):
    """How ``search.cost: latency`` times the parts of architectures."""

    device: str | None = Field(
        None,
        description="device the parts are timed on: auto, cpu, cuda, cuda:N or mps (null: the run's "
        "device; e.g. cpu to search on a GPU for CPU inference)",
    )
    batch_size: PositiveInt = Field(
        1, description="examples per timed forward pass (1: the latency of one example)"
    )
    threads: PositiveInt | None = Field(
        None,
        description="CPU threads of the timed passes, e.g. 1 for a single-core target (null: the "
        "run's; CPU timing only)",
    )
    table: str | None = Field(
        None,
        description="latency.json of an earlier run: its times are used, parts it lacks are "
        "timed here (the same numbers for several searches, or times from the deployment machine)",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        return None if device is None else _check_device(device)


#: what the search's and the training's ``precision`` mean
PRECISION = (
    "fp32, or bf16: forward passes under bfloat16 autocast (faster on recent GPUs; on a CPU it "
    "runs, usually slower; weights, gradients and losses stay float32; not bit-identical to fp32)"
)

#: a strategy without converged() given search.stop_when_converged: refused by the config for a
#: strategy class, by the search for a factory (only what it returns tells)
NO_CONVERGED = "strategy '{s}' has no converged(); remove stop_when_converged or use asng"


class SearchConfig(Strict):
    strategy: Annotated[str, plugin_name("strategy")] = Field(
        "asng", description="strategy plugin that optimises the architecture distribution"
    )
    strategy_options: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the strategy (ASNG: alpha, init_delta, delta_max; theta, theta_int)",
    )
    epochs: PositiveInt = Field(10, description="passes over the train half")
    batch_size: PositiveInt = Field(128, description="minibatch size (train and valid)")
    lam: int = Field(2, ge=2, le=256, description="architectures sampled per step (λ)")
    grad_clip: PositiveFloat | None = Field(5.0, description="gradient-norm clipping (null: off)")
    warmup_epochs: NonNegativeInt = Field(
        0,
        description="epochs that train the weights on sampled architectures before θ moves "
        "(0: the reference protocol)",
    )
    cost_penalty: NonNegativeFloat = Field(
        0.0,
        description="added to each valid loss that ranks the sampled architectures: this × the "
        "architecture's cost (search.cost) in millions (latency: in milliseconds), at search "
        "size (0: off, as the reference)",
    )
    cost: Literal["parameters", "macs", "latency"] = Field(
        "parameters",
        description="what search.cost_penalty counts: parameters, macs (multiply-accumulates of "
        "one example's forward pass through the conv and linear layers), or latency (the sum of "
        "its parts' forward times, each part timed once: search.latency)",
    )
    latency: LatencyConfig | None = Field(
        None,
        description="how search.cost: latency times architectures (null: one example on the "
        "run's device)",
    )
    stop_when_converged: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="end the search after an epoch at which every choice's most likely option "
        "holds this fraction of its cap 1 - 1/(number of choices) (ordinal choices: of 1), "
        "e.g. 0.9 (the strategy must offer converged(); null: run every epoch)",
    )
    select: SelectConfig | None = Field(
        None,
        description="end by scoring candidates drawn from the final distribution on valid batches "
        "with the shared weights and exporting the best (random search with weight sharing; "
        "null: export the strategy's most likely architecture, or, for a strategy without one "
        "such as random, select with the defaults)",
    )
    checkpoint_every: NonNegativeInt = Field(
        0, description="also checkpoint every N iterations (0: at the end of each epoch only)"
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="optimizer of the supernet's weights"
    )
    augment: AugmentConfig | None = Field(
        None, description="augment the train and valid batches of images (null: off)"
    )
    precision: Precision = Field("fp32", description=PRECISION)

    @model_validator(mode="after")
    def _latency(self) -> SearchConfig:
        if self.latency is not None and self.cost != "latency":
            raise error_at(
                "latency",
                "is set, but search.cost is '{c}'; add search.cost: latency, or remove "
                "search.latency",
                ("latency",),
                c=self.cost,
            )
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _unused(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        """A command that runs no search (train, export, prune) leaves this section's plugins
        unchecked: an ``arch.yaml`` trains where the strategy that found it is not installed."""
        if "search" in ((info.context or {}).get("unused") or ()):
            with plugins_unchecked():
                return handler(data)
        return handler(data)

    @model_validator(mode="after")
    def _converges(self) -> SearchConfig:
        """stop_when_converged needs a strategy class with converged() (random has none): known
        from the config alone, so refused here rather than when the search starts."""
        if self.stop_when_converged is None:
            return self
        try:
            factory = registry.get("strategy", self.strategy)
        except registry.PluginError:  # reported by the strategy field
            return self
        if isinstance(factory, type) and not hasattr(factory, "converged"):
            raise error_at("converged", NO_CONVERGED, ("stop_when_converged",), s=self.strategy)
        return self

    @property
    def latency_options(self) -> LatencyConfig:
        """``latency``, or its defaults."""
        return self.latency or LatencyConfig()


class GrowthConfig(Strict):
    """Growing the network's width while it trains (growth plugins)."""

    strategy: Annotated[str, plugin_name("growth")] = Field(
        "gradmax", description="growth plugin: gradmax, gradmax_opt, random, firefly, ..."
    )
    start_fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="each grown layer starts at this fraction of its width"
    )
    every: PositiveInt = Field(200, description="optimizer steps between growth events")
    steps: PositiveInt = Field(6, description="number of growth events")
    layers: list[str] | None = Field(
        None, description="pairs to grow ('<i>-><j>' module indices; default: all growable)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the strategy (e.g. scale)"
    )
    baseline: bool = Field(
        False, description="also train the full-width network from the start and report both"
    )

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, layers: list[str] | None) -> list[str] | None:
        if layers == []:  # it grew nothing and reported its events all the same
            raise PydanticCustomError(
                "no_layers", "no pair to grow; omit layers for every growable pair"
            )
        return layers


class TrainOptimizerConfig(OptimizerConfig):
    """Adam at 1e-3 unless said otherwise, key by key; other keys as in ``search.optimizer``.

    A training section that sets only ``lr`` keeps Adam (it took the search's default, SGD)."""

    name: Annotated[str, plugin_name("optimizer")] = Field(
        "adam", description="optimizer plugin: adam, adamw, sgd, adam_gc, sgd_gc, ..."
    )
    lr: PositiveFloat = Field(1e-3, description="learning rate")


class TrainConfig(Strict):
    epochs: PositiveInt = Field(20, description="passes over the whole training data")
    batch_size: PositiveInt = Field(128, description="minibatch size")
    grad_clip: PositiveFloat | None = Field(None, description="gradient-norm clipping (null: off)")
    l2: NonNegativeFloat = Field(
        0.0,
        description="L2 penalty l2/2·Σ‖W‖² on Linear/conv weights and biases added to the loss "
        "(coupled, unlike AdamW's weight_decay; what Adam-sparsity pruning needs)",
    )
    optimizer: TrainOptimizerConfig = Field(
        default_factory=TrainOptimizerConfig, description="optimizer of the network's weights"
    )
    augment: AugmentConfig | None = Field(
        None, description="augment the training batches of images (null: off)"
    )
    precision: Precision = Field("fp32", description=PRECISION)
    growth: GrowthConfig | None = Field(None, description="grow the widths while training")


class PruneConfig(Strict):
    method: Annotated[str, plugin_name("pruner")] = Field(
        "adam_sparsity", description="pruner plugin"
    )
    threshold: PositiveFloat = Field(
        1e-4, description="units with incoming-weight norm below are removed"
    )


class LogConfig(Strict):
    tensorboard: bool = Field(True, description="write TensorBoard events into the run directory")
    progress: bool = Field(
        True,
        description="progress on the console: a bar per epoch (on a terminal) and a line per "
        "finished epoch (the command line's --quiet turns it off too)",
    )
    theta_images: NonNegativeInt = Field(
        20,
        description="θ heat maps a search draws for TensorBoard: at evenly spaced epochs, always "
        "the last (0: none; drawing one takes about half a second on a CPU)",
    )


class Config(Strict):
    """One runnable experiment."""

    version: Literal[1] = Field(1, description="schema version")
    name: str = Field("experiment", description="name of the experiment (run directories)")
    seed: int = Field(
        0, ge=0, lt=2**32, description="seed of weights, data order and architecture sampling"
    )
    device: str = Field(
        "auto",
        description="auto (CUDA if there is one, else cpu), cpu, cuda, cuda:N or mps (Apple GPUs; "
        "not tested by the project); a device the machine lacks is an error",
    )
    data: DataConfig = Field(default_factory=DataConfig, description="the dataset")
    space: Space = Field(description="the search space: a chain (default) or cells")
    search: SearchConfig = Field(default_factory=SearchConfig, description="the one-shot search")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="retraining an architecture"
    )
    prune: PruneConfig | None = Field(None, description="pruning after training")
    log: LogConfig = Field(default_factory=LogConfig, description="logging")
    space_hash: str | None = Field(
        None, description="set in exported architectures: hash of the space they came from"
    )
    _source: ConfigSource | None = PrivateAttr(None)

    def locate(self, message: str) -> str:
        """An error message about this config with the file and line (or the ``--set`` item) of
        each config path it starts a line with; unchanged for a config not read from a file."""
        return self._source.locate(message) if self._source is not None else message

    def located_warning(self, note: str) -> str:
        """``note``, a warning that starts with a config path, located as :meth:`locate` does:
        ``file:line: warning: path: ...``."""
        located = self.locate(note)
        prefix = located[: -len(note)] if located.endswith(note) and located != note else ""
        return f"{prefix}warning: {note}"

    def locate_error(self, error: UserError) -> UserError:
        """``error`` as :meth:`locate` places it, or, when it names no config path, prefixed by
        the file this config was read from (a message about the file as a whole)."""
        message = str(error)
        located = self.locate(message)
        if located == message and self._source is not None:
            located = f"{self._source.file}: {message}"
        out = UserError(located)
        out.__cause__ = error.__cause__  # a plugin's own exception, for NASFRAME_TRACEBACK=1
        return out  # raise it ``from error.__cause__``: ``from None`` would drop that

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return _check_device(device)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name) or not name.isprintable() or not is_utf8(name):
            raise PydanticCustomError(
                "name",
                "'{name}' cannot name run directories (runs/NAME-TIME): use 1 to 100 printable "
                "characters without '/' or '\\', not starting with '.', e.g. mnist1d-cnn",
                {"name": name.encode("unicode_escape").decode("ascii")},
            )
        return name


def json_schema() -> dict[str, Any]:
    """JSON schema of the config, for editors."""
    return Config.model_json_schema()
