"""The base model of every config section: unknown keys are errors, with the closest known key.

Kept apart from :mod:`nasframe.config` so that other schema modules (cell spaces) can build on it
without importing the whole experiment schema.
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from . import registry
from .errors import did_you_mean

__all__ = ["Strict", "error_at", "plugin_name"]


class Strict(BaseModel):
    """Unknown keys are errors (they are usually typos), reported with the closest known key;
    numbers are finite (an infinite learning rate or penalty is never what was meant)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            known = set(cls.model_fields)
            for key, value in data.items():
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'{hint}",
                        {"key": str(key), "hint": did_you_mean(str(key), known)},
                    )
                if isinstance(value, bool) and _numeric_only(cls.model_fields[key].annotation):
                    raise error_at(  # pydantic would read yes/true as 1
                        "bool_number",
                        "expected a number, got the boolean {value}",
                        (key,),
                        value=str(value).lower(),
                    )
        return data


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
