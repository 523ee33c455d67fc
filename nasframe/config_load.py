"""Reading a config: the YAML file, ``--set`` overrides, then validation against the schema of
:mod:`nasframe.config`, with every problem reported as ``file:line: where: what`` (or
``--set item: where: what`` for a value from the command line; see
:class:`nasframe.errors.ConfigError`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import STAGE_NAME, Config
from .config_base import is_utf8, value_kind
from .config_source import ConfigSource, default_stage_name, item_index, no_item, override_of
from .errors import ConfigError, Problem, UserError, counted, did_you_mean
from .yaml_io import LineMap, load_yaml, parse_scalar

__all__ = ["load_config", "validate_data"]

_TAGS = {"const", "choice", "chain_space", "cell_space"}


def _pretty_loc(loc: tuple[Any, ...], raw: Any) -> str:
    """Dotted path, with stages named as choice paths and ``--set`` name them
    (``space.stages.s1.width``): by the name they go by, where that name is theirs alone; by
    index otherwise (a name that is not an identifier, such as ``2``, or one two stages share)."""
    parts: list[str] = []
    node = raw
    for i, key in enumerate(loc):
        shown = str(key)
        if isinstance(key, int) and i > 0 and loc[i - 1] == "stages" and isinstance(node, list):
            shown = _stage_label(node, key)
        parts.append(shown)
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            node = None
    return ".".join(parts)


def _stage_label(stages: list, index: int) -> str:
    """How a path names item ``index`` of a raw ``stages`` list: the name it goes by (given, or
    ``s1``, ``s2``, ... where none is), if that is an identifier no other stage goes by, else
    its index."""
    names = [_stage_name(item, k) for k, item in enumerate(stages)]
    name = names[index] if 0 <= index < len(names) else None
    if name is None or not STAGE_NAME.fullmatch(name) or names.count(name) > 1:
        return str(index)
    return name


def _stage_name(item: Any, index: int) -> str | None:
    """The name stage ``item`` goes by (None for one that is not a mapping)."""
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    if name is None or name == "":
        return default_stage_name(index)
    return name if isinstance(name, str) else None


def _problems(
    err: ValidationError,
    raw: Any,
    lines: LineMap,
    file: str,
    overridden: dict[tuple[Any, ...], str] | None = None,
) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for e in err.errors(include_url=False):
        loc = tuple(k for k in e["loc"] if k not in _TAGS)
        ctx = e.get("ctx") or {}
        if e["type"] == "unknown_key" and "key" in ctx:
            loc = (*loc, ctx["key"])
        elif isinstance(ctx.get("at"), tuple):  # a model validator pointing below its model
            loc = (*loc, *ctx["at"])
        kind = None
        if e["type"] == "space_type" and isinstance(e.get("input"), dict) and "type" in e["input"]:
            loc, kind = (*loc, "type"), e["input"]["type"]  # the key that is wrong, at its line
        given = override_of(loc, overridden or {}, lines.known_prefix(loc) == loc)
        msg = _message(e, loc) + _hint(e, loc, lines, given)
        if isinstance(kind, str):
            msg += did_you_mean(kind, ("chain", "cells"))
        if e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] in ("model_type", "dict_type"):  # not "... instance of ChainSpace"
            msg = f"expected a mapping of keys, got {value_kind(e.get('input'))}"
        if given is not None:  # the value came from the command line, not from the file
            problem = Problem(f"--set {given}", None, _pretty_loc(loc, raw), msg)
        else:
            shown = _pretty_loc(lines.known_prefix(loc) if e["type"] != "missing" else loc, raw)
            problem = Problem(file, lines.line(loc), shown, msg)
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


#: pydantic's bound errors: the bound's key in the error's context, and how to say it
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}
#: pydantic's errors for a value of the wrong kind: what the field takes, in words
_KINDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "finite_number": "a finite number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _message(e: Any, loc: tuple[Any, ...]) -> str:
    """What is wrong, in the project's words rather than pydantic's (``must be at least 2, got
    1``, ``expected text, got a mapping``); pydantic's own message for the other errors."""
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        key, words = _BOUNDS[kind]
        return f"must be {words} {_number(ctx[key])}, got {_number(value)}"
    if kind == "int_parsing_size":
        return f"too large a number: {_number(value)}"
    if kind == "too_short" and "min_length" in ctx:  # pydantic: List should have at least ...
        return f"must list at least {counted(ctx['min_length'], 'item')}, got {ctx.get('actual_length', 0)}"
    if kind == "literal_error" and "expected" in ctx:  # pydantic: Input should be 'a' or 'b'
        if _looks_like_a_choice(value, loc):
            return f"takes one value, not a choice; write {ctx['expected']}"
        hint = ""
        if isinstance(value, str):
            hint = did_you_mean(value, re.findall(r"'([^']*)'", ctx["expected"]))
        return f"must be {ctx['expected']}, got {value_kind(value)}{hint}"
    if kind not in _KINDS:
        return e["msg"]
    if isinstance(value, list) and _takes_a_choice(loc):
        written = ", ".join(str(v) for v in value) or "a, b, ..."
        return f"a choice is written {{choices: [{written}]}}, not as a plain list"
    if _looks_like_a_choice(value, loc):
        if loc[-2:] == ("stem", "op"):
            return "the stem's op is fixed (not a choice); write one op name"
        named = "op name" if loc[-1] == "op" else str(loc[-1])
        one = f"one {named}" if kind == "string_type" else _KINDS[kind]
        return f"takes one value, not a choice; write {one}"
    given = f"the date {value}" if isinstance(value, datetime.date) else value_kind(value)
    return f"expected {_KINDS[kind]}, got {given}"


def _takes_a_choice(loc: tuple[Any, ...]) -> bool:
    """Whether the field at ``loc`` of a chain space takes a choice: the stem's channels, a
    stage's depth and width, a layer's op and width."""
    if loc == ("space", "stem", "channels"):
        return True
    if loc[:2] != ("space", "stages") or len(loc) < 4:
        return False
    rest = loc[3:]
    return rest in (("depth",), ("width",), ("layer", "op"), ("layer", "width")) or (
        len(rest) == 3 and rest[0] == "layers" and rest[2] in ("op", "width")
    )


def _looks_like_a_choice(value: Any, loc: tuple[Any, ...]) -> bool:
    """Whether ``value``, given to a field that takes one value, reads as a choice of several:
    a mapping of ``choices``, or a list of op names for an op."""
    if isinstance(value, dict):
        return "choices" in value
    return isinstance(value, list) and loc[-1:] == ("op",)


def _number(value: Any) -> str:
    """A number as a config would write it (``2``, ``0.5``, ``1e-05``); another value in words."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value_kind(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _hint(e: Any, loc: tuple[Any, ...], lines: LineMap, given: str | None) -> str:
    """A fix for a value of the wrong kind: quotes for a text field given what YAML reads as a
    boolean, number or date (``name: no``), the plain integer for a whole number written another
    way in a strict integer field (``width: 1e3``, ``width: 1_000``); '' otherwise."""
    value = e.get("input")
    if e["type"] == "int_type" and isinstance(value, float | str):
        try:
            number = float(value)  # 1e3 -> 1000.0, "1_000" -> 1000.0
        except ValueError:
            return ""
        whole = number.is_integer() and 0 <= number < 2**53  # exact, and no sign to refuse
        return f"; write {int(number)}" if whole else ""
    if e["type"] != "string_type" or not isinstance(value, bool | int | float | datetime.date):
        return ""
    if given is not None:
        path, _, written = given.partition("=")
        if path.strip().split(".")[-1] == str(loc[-1]):  # the --set value is this field's
            return f"; quote it: --set '{path}=\"{written.strip()}\"'"
        return f"; quote that item inside the value of --set {path}"
    written = lines.text(loc) or str(value)
    key = f"{loc[-1]}: " if loc and isinstance(loc[-1], str) else ""
    return f'; quote it: {key}"{written}"'


def _apply_overrides(raw: dict, overrides: list[str]) -> tuple[dict, dict[tuple[Any, ...], str]]:
    """Apply ``key.path=value`` overrides (stages may be named: ``space.stages.s1.width=64``);
    also where each override landed (list items by index)."""
    raw = _unshared(raw)
    landed: dict[tuple[Any, ...], str] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item}: expected key.path=value")
        if not is_utf8(item):
            shown = item.encode("unicode_escape").decode("ascii")
            raise UserError(f"--set {shown}: not valid UTF-8; type the key and value again")
        path, _, text = item.partition("=")
        keys = path.strip().split(".")
        if not all(keys):
            raise UserError(f"--set {item}: an empty key in '{path}'; write key.path=value")
        node: Any = raw
        loc: list[Any] = []
        for j, key in enumerate(keys):
            last = j == len(keys) - 1
            if isinstance(node, list):
                idx = _list_index(node, key, item, ".".join(keys[:j]))
                loc.append(idx)
                if last:
                    node[idx] = parse_scalar(text)
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                loc.append(key)
                if last:
                    node[key] = parse_scalar(text)
                else:
                    if node.get(key) is None:  # absent, or null: a section left at its default
                        node[key] = {}
                    node = node[key]
            else:
                raise UserError(f"--set {item}: '{'.'.join(keys[:j])}' is not a mapping")
        landed[tuple(loc)] = item
    return raw, landed


def _unshared(data: Any) -> Any:
    """A copy of ``data`` in which no two places share a mapping or list (YAML aliases and merge
    keys share them, and ``copy.deepcopy`` keeps them shared): an override changes one place."""
    if isinstance(data, dict):
        return {key: _unshared(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_unshared(value) for value in data]
    return data


def _list_index(node: list, key: str, item: str, where: str) -> int:
    """The index of the item of list ``node`` (at path ``where``) that ``--set item``'s key
    ``key`` names; a UserError naming the items there when none is."""
    index = item_index(node, key)
    if index is not None:
        return index
    raise UserError(f"--set {item}: {no_item(node, key, where)}")


def validate_data(
    raw: Any,
    lines: LineMap | None = None,
    file: str = "<config>",
    overridden: dict[tuple[Any, ...], str] | None = None,
    unused: Collection[str] = (),
) -> Config:
    """Validate already-loaded YAML data; problems raise :class:`ConfigError` (those in values
    that ``overridden`` says came from ``--set`` items name the item instead of a line).
    ``unused``: sections whose plugins the command does not use, left unlooked-up (``search``
    for a training: its strategy may be installed only where the search ran)."""
    lines = lines or LineMap()
    if not isinstance(raw, dict):
        what = f"expected a mapping of sections (version, space, search, ...), got {type(raw).__name__}"
        raise ConfigError([Problem(file, lines.line(()), "", what)])
    try:
        return Config.model_validate(raw, context={"unused": tuple(unused)})
    except ValidationError as e:
        raise ConfigError(_problems(e, raw, lines, file, overridden)) from None
    except UserError as e:  # a broken plugin met during validation
        raise ConfigError([Problem(file, None, "", str(e))]) from None


def load_config(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    adjust: Callable[[dict], dict] | None = None,
    unused: Collection[str] = (),
) -> tuple[Config, dict]:
    """Read, override and validate a config file; returns the config and the raw mapping.
    ``adjust`` changes the raw mapping after the overrides (a setting a command fixes, which no
    error message then attributes to a ``--set`` item); ``unused``: as for
    :func:`validate_data`."""
    raw, lines = load_yaml(path)
    landed: dict[tuple[Any, ...], str] = {}
    if overrides:
        if not isinstance(raw, dict):
            validate_data(raw, lines, str(path))
        raw, landed = _apply_overrides(raw, overrides)
    if adjust is not None and isinstance(raw, dict):
        raw = adjust(raw)
    config = validate_data(raw, lines, str(path), landed, unused)
    config._source = ConfigSource(str(path), raw, lines, landed, frozenset(Config.model_fields))
    return config, raw
