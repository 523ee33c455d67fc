"""The kinds of a plugin's options, from its signature, checked before nasframe calls it.

A dataset's ``data.options`` and a strategy's ``search.strategy_options`` are passed to the plugin
as keyword arguments. A value of the wrong kind (``n_train: abc`` where the plugin declares
``n_train: int = 800``) would only make the plugin fail in its own code, where it looks like the
plugin's bug; checked here, it is the user's mistake, reported at its key in the config.
"""

from __future__ import annotations

import inspect
import math
import numbers
import typing
from collections.abc import Callable, Mapping
from types import NoneType, UnionType
from typing import Any, Union

import numpy as np

from .config_base import bool_hint, value_kind
from .errors import UserError
from .values import is_number
from .yaml_io import parse_scalar

__all__ = ["checked_options"]

_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


def checked_options(
    fn: Callable[..., Any], options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``options`` (the user's keyword arguments to plugin ``fn``, set at config key ``where``,
    e.g. ``data.options``) checked against ``fn``'s signature: a UserError at
    ``where.<key>`` for a value of the wrong kind, else the options, with whole numbers given as
    floats (``1e4``) made ints for an ``int`` option.

    An option annotated ``bool``, ``int``, ``float``, ``str`` (``int | float``: a number;
    ``| None`` or a default of None: null too) must be of that kind (NumPy scalars count); an
    unannotated one whose default is a number refuses only a number written as text (None, a
    list or a word may be what the plugin takes there). Any other annotation, an
    option the signature does not name (``**kwargs``), or a callable without a readable
    signature is left for the plugin to judge."""
    checked = dict(options)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return checked
    hints = _hints(fn)
    for key, value in options.items():
        param = params.get(str(key))
        if param is None or param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        checked[key] = _checked(f"{where}.{key}", value, param, hints.get(param.name))
    return checked


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations (a class's: its ``__init__``'s); empty where they do not
    resolve (the raw annotations are then read as text, by :func:`_kind`)."""
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # a name the plugin's module does not define, say
        return {}


def _kind(annotation: Any) -> tuple[type | None, bool] | None:
    """(the kind an annotation asks for: bool, int, float or str, or None for any other; whether
    it allows None), or None for no annotation."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):  # unresolved text: 'int', 'float | None', 'Optional[int]'
        text = annotation.replace(" ", "").removeprefix("typing.")
        takes_none = False
        if text.startswith("Optional[") and text.endswith("]"):
            text, takes_none = text[len("Optional[") : -1], True
        parts = text.split("|")
        if "None" in parts:
            parts, takes_none = [p for p in parts if p != "None"], True
        kinds = {_KINDS.get(p) for p in parts}
    else:
        union = typing.get_origin(annotation) in (Union, UnionType)
        args = typing.get_args(annotation) if union else (annotation,)
        takes_none = NoneType in args or None in args
        kinds = {
            a if a in (bool, int, float, str) else None for a in args if a not in (NoneType, None)
        }
    if kinds == {int, float}:  # a number
        return float, takes_none
    if len(kinds) == 1:
        return next(iter(kinds)), takes_none
    return None, takes_none


def _checked(where: str, value: Any, param: inspect.Parameter, hint: Any) -> Any:
    """``value`` for ``param`` (its resolved annotation ``hint``), or a UserError at ``where``."""
    default = param.default
    declared = _kind(hint if hint is not None else param.annotation)
    if declared is None:  # no annotation: a default says little (None, a list, 'auto' may do)
        return _unannotated(where, value, default)
    kind, takes_none = declared
    if kind is None or (value is None and (takes_none or default is None)):
        return value
    if kind is bool:
        if isinstance(value, bool | np.bool_):  # NumPy's from a config built in Python
            return value
        raise _refused(where, "true or false", value, bool_hint(value))
    if kind is str:
        if isinstance(value, str):
            return value
        raise _refused(where, "text", value)
    whole = kind is int
    what = "a whole number" if whole else "a number"
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        is_whole = isinstance(value, numbers.Integral) or (
            math.isfinite(value) and float(value).is_integer()
        )
        if whole and not is_whole:
            raise _refused(where, what, value)
        if whole and not isinstance(value, numbers.Integral):
            return int(value)  # 1e4, as YAML 1.2 reads it
        return value
    hint = ""
    if isinstance(value, str):  # a number quoted by mistake: say how to write it
        number = parse_scalar(value)
        if is_number(number) and (not whole or float(number).is_integer()):
            hint = f"; write {value.strip()} without quotes"
    raise _refused(where, what, value, hint)


def _unannotated(where: str, value: Any, default: Any) -> Any:
    """An option without an annotation whose default is a number: only a number written as
    text (``"0.5"``, quoted by mistake) is refused; anything else is the plugin's to judge,
    as research code takes None, lists or words where its default is a number."""
    if not (is_number(default) and isinstance(value, str)):
        return value
    number = parse_scalar(value)
    if is_number(number):
        raise _refused(where, "a number", value, f"; write {value.strip()} without quotes")
    return value


def _refused(where: str, what: str, value: Any, hint: str = "") -> UserError:
    """``where: expected WHAT, got the text 'abc'`` (the wording of the config's own checks)."""
    return UserError(f"{where}: expected {what}, got {value_kind(value)}{hint}")
