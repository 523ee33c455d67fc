"""The base model of every config section: unknown keys are errors, with the closest known key.

Kept apart from :mod:`nasframe.config` so that other schema modules (cell spaces) can build on it
without importing the whole experiment schema.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import registry
from .errors import did_you_mean
from .values import is_number
from .yaml_io import parse_scalar

__all__ = [
    "NumbersOnly",
    "Strict",
    "NumberField",
    "number_field",
    "error_at",
    "plugin_name",
    "refuse_non_number",
    "bool_hint",
    "is_utf8",
    "value_kind",
    "plugins_unchecked",
]


@dataclass(frozen=True)
class NumberField:
    """What a field that takes numbers accepts: ``whole`` numbers only or any, the ``words``
    it also takes (``auto``), and whether its value is a list of them."""

    whole: bool
    words: frozenset[str] = frozenset()
    items: bool = False

    def check(self, value: Any) -> None:
        """Refuse a boolean, or a text other than the field's words, in ``value``."""
        if self.items:
            for i, item in enumerate(value if isinstance(value, list) else []):
                self._check_one(item, (i,))
        else:
            self._check_one(value, ())

    def _check_one(self, value: Any, where: tuple[Any, ...]) -> None:
        if isinstance(value, str) and value in self.words:
            return
        refuse_non_number(where, value, self.whole, sorted(self.words))


class NumbersOnly(BaseModel):
    """A field that takes numbers takes numbers only, and a boolean field true or false only:
    pydantic would read ``yes`` as 1, ``"15"`` or ``1_000`` (text in YAML 1.2) as numbers, and
    ``1`` or ``"on"`` as true, hiding what the file says."""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:
            spec = _field_spec(cls, info.field_name)
            if spec is not None:
                spec.check(value)
            elif _takes_true_or_false(cls, info.field_name) and not isinstance(value, bool):
                raise error_at(
                    "bool_strict",
                    "expected true or false, got {got}{hint}",
                    (),
                    got=value_kind(value),
                    hint=bool_hint(value),
                )
        return value


class Strict(NumbersOnly):
    """Unknown keys are errors (they are usually typos), reported with the closest known key;
    numbers are finite (an infinite learning rate or penalty is never what was meant) and written
    as numbers (not ``"15"``, ``1_000`` or ``yes``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    #: where keys of other sections that are unknown here belong (a line indented wrongly), or
    #: what this section calls them (other frameworks' words), for the message, before any
    #: did-you-mean: ``{"op": "a layer's op goes under 'layer:'"}``
    misplaced: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    if str(key) in cls.misplaced:
                        hint = f"; {cls.misplaced[str(key)]}"
                    else:
                        hint = did_you_mean(str(key), known)
                    raise PydanticCustomError(
                        "unknown_key", "unknown key '{key}'{hint}", {"key": str(key), "hint": hint}
                    )
        return data


@functools.cache
def _field_spec(model: type[BaseModel], name: str) -> NumberField | None:
    field = model.model_fields.get(name)
    return None if field is None else number_field(field.annotation)


@functools.cache
def _takes_true_or_false(model: type[BaseModel], name: str) -> bool:
    """Whether the field ``name`` of ``model`` is a plain boolean: pydantic would read ``1`` or
    ``"on"`` as true there."""
    field = model.model_fields.get(name)
    return field is not None and field.annotation is bool


def bool_hint(value: Any) -> str:
    """How to write as a boolean a value that was meant as one ('' if none is clear)."""
    if isinstance(value, str) and isinstance(parse_scalar(value), bool):
        return f"; write {value.strip()} without quotes"
    if is_number(value) and value in (0, 1):
        return f"; write {str(bool(value)).lower()}"
    return ""


def refuse_non_number(
    where: tuple[Any, ...], value: Any, whole: bool = False, words: Sequence[str] = ()
) -> None:
    """Refuse a boolean or a text given where a number (or one of ``words``) belongs; ``where``
    is below the field."""
    expected = "a number" + "".join(f" or '{w}'" for w in words)
    if isinstance(value, bool):
        raise error_at(
            "bool_number",
            "expected {expected}, got the boolean {value}",
            where,
            expected=expected,
            value=str(value).lower(),
        )
    if isinstance(value, str):
        raise error_at(
            "text_number",
            "expected {expected}, got the text '{value}'{hint}",
            where,
            expected=expected,
            value=value,
            hint=_number_hint(value, whole) or did_you_mean(value, words),
        )


def _number_hint(text: str, whole: bool) -> str:
    """How to write as a number the text ``text`` that reads as one (a whole one if ``whole``);
    '' if it does not."""
    as_yaml = parse_scalar(text)
    if is_number(as_yaml):
        if whole and not float(as_yaml).is_integer():
            return ""
        return f"; write {text.strip()} without quotes"
    try:
        number = float(text)  # Python reads 1_000 as 1000; YAML 1.2 reads it as text
    except ValueError:
        return ""
    if not math.isfinite(number) or (whole and not number.is_integer()):
        return ""
    shown = int(number) if number.is_integer() and abs(number) < 2**53 else number
    return f"; write {shown}"


def number_field(annotation: Any) -> NumberField | None:
    """How a field of type ``annotation`` takes numbers (int, float, numeric literals,
    constrained, optional, words such as ``Literal["auto"]`` beside them, or a list of those);
    None for a field that does not take numbers only."""
    kinds: set[Any] = set()
    words: set[str] = set()
    items: list[Any] = []

    def walk(a: Any) -> None:
        args, origin = get_args(a), get_origin(a)
        if origin is Annotated:
            walk(args[0])
        elif args and origin in (Union, UnionType):
            for arg in args:
                walk(arg)
        elif origin is Literal:
            for v in args:
                if isinstance(v, str):
                    words.add(v)
                else:
                    kinds.add(bool if isinstance(v, bool) else type(v))
        elif origin is list and args:
            items.append(args[0])
        else:
            kinds.add(a)

    walk(annotation)
    kinds.discard(type(None))
    if items:
        inner = number_field(items[0]) if len(items) == 1 and not kinds and not words else None
        return None if inner is None or inner.items else NumberField(inner.whole, inner.words, True)
    if not kinds or not kinds <= {int, float}:
        return None
    return NumberField(whole=float not in kinds, words=frozenset(words))


def error_at(kind: str, message: str, where: tuple[Any, ...], **ctx: Any) -> PydanticCustomError:
    """An error of a model validator that points below the model, at ``where`` (e.g. a list item).

    The config loader appends ``where`` to the error's location, so its line number is exact.
    """
    return PydanticCustomError(kind, message, {**ctx, "at": tuple(where)})


#: whether the section being validated is one whose plugins the command at hand does not use
_UNUSED_SECTION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nasframe_unused_section", default=False
)


@contextlib.contextmanager
def plugins_unchecked() -> Iterator[None]:
    """Within: the plugin names validated are not looked up (a training's ``search`` section
    may name a strategy or optimizer that only the machine that searched has installed)."""
    token = _UNUSED_SECTION.set(True)
    try:
        yield
    finally:
        _UNUSED_SECTION.reset(token)


def plugin_name(kind: str) -> AfterValidator:
    """Validator of a field naming a registered plugin of ``kind``; stores the normalised name
    (under :func:`plugins_unchecked`, without looking the plugin up)."""

    def check(name: str) -> str:
        if _UNUSED_SECTION.get():
            return registry.normalize(name)
        if not registry.exists(kind, name):
            raise PydanticCustomError("unknown_plugin", registry.unknown_message(kind, name))
        try:  # a plugin provided twice, or one that fails to import, is reported at its line
            registry.get(kind, name)
        except registry.PluginError as e:
            raise PydanticCustomError("broken_plugin", str(e)) from None
        return registry.normalize(name)

    return AfterValidator(check)


def value_kind(value: Any) -> str:
    """What YAML value ``value`` is, in words (``the number 1``, ``the text 'yes'``), for messages
    that say what was given instead of what a key takes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (names read from non-UTF-8 bytes cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
