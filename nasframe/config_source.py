"""Where a config's values came from, so that problems found while running point at their line.

Validation reports ``file:line: where: what`` itself. Some problems only show when a run starts
(an architecture over its parameter budget, images too small for the reductions, a strategy option
the plugin does not take); those errors begin with the config path they concern
(``space.retrain.param_budget: ...``). :meth:`ConfigSource.locate` adds the file and line of that
path, or names the ``--set`` item that gave the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import counted, did_you_mean
from .yaml_io import LineMap

__all__ = ["ConfigSource", "override_of", "item_index", "no_item", "default_stage_name"]

_PATH = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*")


def override_of(
    loc: tuple[Any, ...], overridden: dict[tuple[Any, ...], str], in_file: bool = True
) -> str | None:
    """The ``--set`` item that gave the value at ``loc`` (or one above it), if any; where the
    file has nothing at ``loc`` (not ``in_file``), also one that made it by setting a key below
    it (``--set search.latency.device=cpu`` makes ``search.latency``)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in overridden:
            return overridden[loc[:n]]
    if not in_file:
        return next((item for at, item in overridden.items() if at[: len(loc)] == loc), None)
    return None


def item_index(node: list, key: str) -> int | None:
    """The list item a path key names: its index (``0``) or its ``name`` (stages, whose name is
    ``s1``, ``s2``, ... where the file gives none); None if none."""
    if key.isdigit() and int(key) < len(node):
        return int(key)
    for i, el in enumerate(node):
        if isinstance(el, dict) and el.get("name") == key:
            return i
    for i, el in enumerate(node):
        if isinstance(el, dict) and not el.get("name") and key == default_stage_name(i):
            return i
    return None


def default_stage_name(index: int) -> str:
    """The name of stage ``index`` (from 0) where the config gives none: ``s1``, ``s2``, ..."""
    return f"s{index + 1}"


def no_item(node: list, key: str, where: str) -> str:
    """Why path key ``key`` names no item of the list ``node`` at ``where`` (``space.stages``),
    with the names it could use (stages' names, else the indices) and the closest of them."""
    count = len(node)
    indices = "0" if count == 1 else f"0 to {count - 1}"
    names = []
    if where.split(".")[-1] == "stages":  # stages go by name (given, else s1, s2, ...)
        names = [
            str(el.get("name")) if el.get("name") else default_stage_name(i)
            for i, el in enumerate(node)
            if isinstance(el, dict)
        ]
    if not count:
        has = "it is empty"
    elif names:
        has = f"its items are {', '.join(names)} (or by index, {indices})"
    else:
        has = f"its {counted(count, 'item')} go by index, {indices}"
    return f"{where} has no item '{key}'; {has}{did_you_mean(key, names)}"


@dataclass(frozen=True)
class ConfigSource:
    """A config file's name, its raw mapping (after ``--set``), the line of every key and which
    keys ``--set`` gave."""

    file: str
    raw: dict
    lines: LineMap
    overridden: dict[tuple[Any, ...], str] = field(default_factory=dict)
    sections: frozenset[str] = frozenset()  #: the top-level keys a config path starts with

    def locate(self, message: str) -> str:
        """``message`` with each line that starts with a config path (``search.lam: ...``)
        prefixed by ``file:line:`` (or ``--set ITEM:`` where that value came from the command
        line); other lines unchanged."""
        return "\n".join(self._locate_line(line) for line in message.splitlines())

    def _locate_line(self, line: str) -> str:
        where, sep, _ = line.partition(": ")
        if not sep or not _PATH.fullmatch(where) or where.split(".")[0] not in self.sections:
            return line
        loc = self._loc(where.split("."))
        given = override_of(loc, self.overridden, self.lines.known_prefix(loc) == loc)
        if given is not None:
            return f"--set {given}: {line}"
        number = self.lines.line(loc)
        return f"{self.file}:{number}: {line}" if number else f"{self.file}: {line}"

    def _loc(self, keys: list[str]) -> tuple[Any, ...]:
        """Keys as the file holds them: list items (stages) by index instead of by name."""
        loc: list[Any] = []
        node: Any = self.raw
        for key in keys:
            if isinstance(node, list):
                index = item_index(node, key)
                if index is None:
                    break
                loc.append(index)
                node = node[index]
            else:
                loc.append(key)
                node = node.get(key) if isinstance(node, dict) else None
        return tuple(loc)
