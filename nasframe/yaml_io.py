"""Safe YAML reading with line numbers, and writing.

Only ``yaml.SafeLoader`` is used: YAML can never construct Python objects. ``load_yaml`` returns the
data and a :class:`LineMap` that tells on which line each key or item was written, so that every
validation error can name its line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

__all__ = ["LineMap", "load_yaml", "dump_yaml", "parse_scalar"]

Loc = tuple[Any, ...]


class LineMap:
    """Line numbers (1-based) of every key and sequence item of a YAML document."""

    def __init__(self, lines: dict[Loc, int] | None = None) -> None:
        self.lines = lines or {}

    @classmethod
    def from_node(cls, node: yaml.Node | None) -> LineMap:
        lines: dict[Loc, int] = {}

        def walk(n: yaml.Node, loc: Loc) -> None:
            if isinstance(n, yaml.MappingNode):
                for key, value in n.value:
                    if isinstance(key, yaml.ScalarNode):
                        sub = (*loc, key.value)
                        lines[sub] = key.start_mark.line + 1
                        walk(value, sub)
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[(*loc, i)] = item.start_mark.line + 1
                    walk(item, (*loc, i))

        if node is not None:
            lines[()] = node.start_mark.line + 1
            walk(node, ())
        return cls(lines)

    def line(self, loc: Sequence[Any]) -> int | None:
        """Line of the deepest prefix of ``loc`` that the file contains."""
        loc = tuple(loc)
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def known_prefix(self, loc: Sequence[Any]) -> Loc:
        """The deepest prefix of ``loc`` written in the file."""
        loc = tuple(loc)
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return loc[:n]
        return ()


def load_yaml(path: str | os.PathLike) -> tuple[Any, LineMap]:
    """Read one YAML document safely; problems become a :class:`ConfigError` with a line."""
    path = Path(path)
    shown = str(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block
        raise ConfigError([Problem(shown, None, "", "not a regular file, expected a YAML file")])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError(
            [Problem(shown, None, "", "is a directory, expected a YAML file")]
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(shown, None, "", f"cannot read: {e}")]) from None
    try:
        loader = yaml.SafeLoader(text)
        try:  # parsed once: the checked node tree is the one constructed
            node = loader.get_single_node()
            data = None
            if node is not None:
                _check_structure(node, shown)
                data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        what = (e.problem or str(e)).strip()
        if "could not determine a constructor" in what or "tag" in what and "!!" in text:
            what = f"{what}; nasframe configs are plain YAML, tags that build objects are refused"
        raise ConfigError([Problem(shown, line, "", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(shown, None, "", f"invalid YAML: {e}")]) from None
    except RecursionError:
        what = "invalid YAML: nested too deeply (a config is a few levels deep)"
        raise ConfigError([Problem(shown, None, "", what)]) from None
    if data is None:
        raise ConfigError([Problem(shown, 1, "", "the file is empty; expected a nasframe config")])
    return data, LineMap.from_node(node)


MAX_NODES = 100_000  # a config is a few hundred; aliases can multiply a short file past any size


def _check_structure(root: yaml.Node, shown: str) -> None:
    """Refuse what SafeLoader would accept but a config never needs: a key given twice in one
    mapping (the last would silently win), an alias inside itself, or aliases expanding the
    document past :data:`MAX_NODES`."""

    def refused(line: int | None, where: str, what: str) -> ConfigError:
        return ConfigError([Problem(shown, line, where, what)])

    seen = 0
    stack: list[tuple[yaml.Node, frozenset[int]]] = [(root, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            what = f"more than {MAX_NODES:,} values once its aliases are expanded"
            raise refused(None, "", f"invalid YAML: {what}")
        if id(node) in ancestors:
            what = "an alias refers to a value that contains it"
            raise refused(node.start_mark.line + 1, "", f"invalid YAML: {what}")
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in first:
                        what = f"duplicate key (first given on line {first[key.value]}); keep one"
                        raise refused(line, str(key.value), f"{what} of them")
                    first[key.value] = line
                stack.append((value, inner))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, inner) for item in node.value)


def parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value the way YAML would (``3`` -> int, ``[1, 2]`` -> list)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def dump_yaml(data: Any, path: str | os.PathLike) -> None:
    """Write YAML atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), encoding="utf-8")
    os.replace(tmp, path)
