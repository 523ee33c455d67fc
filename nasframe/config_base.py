"""The base model of every config section: unknown keys are errors, with the closest known key.

Kept apart from :mod:`nasframe.config` so that other schema modules (cell spaces) can build on it
without importing the whole experiment schema.
"""

from __future__ import annotations

import math
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from . import registry
from .errors import did_you_mean
from .yaml_io import parse_scalar

__all__ = [
    "Strict",
    "error_at",
    "plugin_name",
    "check_number_fields",
    "refuse_non_number",
    "is_utf8",
]


class Strict(BaseModel):
    """Unknown keys are errors (they are usually typos), reported with the closest known key;
    numbers are finite (an infinite learning rate or penalty is never what was meant) and written
    as numbers (not ``"15"``, ``1_000`` or ``yes``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'{hint}",
                        {"key": str(key), "hint": did_you_mean(str(key), known)},
                    )
            check_number_fields(cls, data)
        return data


def check_number_fields(model: type[BaseModel], data: dict[Any, Any]) -> None:
    """Refuse a boolean or text given to a field of ``model`` that takes only numbers."""
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is not None and _numeric_only(field.annotation):
            refuse_non_number((key,), value)


def refuse_non_number(where: tuple[Any, ...], value: Any) -> None:
    """Refuse a boolean or a text given to a number field: pydantic would read ``yes`` as 1 and
    ``"15"`` or ``"1_000"`` (text in YAML 1.2) as numbers, hiding what the file says."""
    if isinstance(value, bool):
        raise error_at(
            "bool_number",
            "expected a number, got the boolean {value}",
            where,
            value=str(value).lower(),
        )
    if isinstance(value, str):
        raise error_at(
            "text_number",
            "expected a number, got the text '{value}'{hint}",
            where,
            value=value,
            hint=_number_hint(value),
        )


def _number_hint(text: str) -> str:
    """How to write as a number the text ``text`` that reads as one; '' if it does not."""
    as_yaml = parse_scalar(text)
    if isinstance(as_yaml, int | float) and not isinstance(as_yaml, bool):
        return f"; write {text.strip()} without quotes"
    try:
        number = float(text)  # Python reads 1_000 as 1000; YAML 1.2 reads it as text
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    shown = int(number) if number.is_integer() and abs(number) < 2**53 else number
    return f"; write {shown}"


def _numeric_only(annotation: Any) -> bool:
    """Whether a field takes numbers (int or float, possibly optional or constrained) and no
    booleans."""
    kinds: set[Any] = set()

    def walk(a: Any) -> None:
        args = get_args(a)
        if get_origin(a) is Annotated:
            walk(args[0])
        elif args and get_origin(a) in (Union, UnionType):
            for arg in args:
                walk(arg)
        else:
            kinds.add(a)

    walk(annotation)
    kinds.discard(type(None))
    return bool(kinds) and kinds <= {int, float}


def error_at(kind: str, message: str, where: tuple[Any, ...], **ctx: Any) -> PydanticCustomError:
    """An error of a model validator that points below the model, at ``where`` (e.g. a list item).

    The config loader appends ``where`` to the error's location, so its line number is exact.
    """
    return PydanticCustomError(kind, message, {**ctx, "at": tuple(where)})


def plugin_name(kind: str) -> AfterValidator:
    """Validator of a field naming a registered plugin of ``kind``; stores the normalised name."""

    def check(name: str) -> str:
        if not registry.exists(kind, name):
            raise PydanticCustomError("unknown_plugin", registry.unknown_message(kind, name))
        try:  # a plugin provided twice, or one that fails to import, is reported at its line
            registry.get(kind, name)
        except registry.PluginError as e:
            raise PydanticCustomError("broken_plugin", str(e)) from None
        return registry.normalize(name)

    return AfterValidator(check)


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (names read from non-UTF-8 bytes cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
