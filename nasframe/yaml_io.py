"""Safe YAML reading with line numbers, and writing.

Only ``yaml.SafeLoader`` is used: YAML can never construct Python objects. ``load_yaml`` returns the
data and a :class:`LineMap` that tells on which line each key or item was written, so that every
validation error can name its line.

Numbers are read as the YAML 1.2 core schema defines them, not as PyYAML's YAML 1.1: ``1e-3`` is
a float (1.1: a string), ``017`` is 17 (1.1: octal 15), ``0o17`` is octal, and ``1:30`` and
``1_000`` are strings (1.1: 90 and 1000). Booleans (``yes``/``no`` too), null and dates are
unchanged. :func:`dump_yaml` quotes every string that either version would read as something
else, so that its output reads back the same with nasframe or with any other YAML reader.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_write
from .errors import ConfigError, Problem, counted
from .run_files import ARCH, RUN_CONFIG

__all__ = ["LineMap", "Loader", "Dumper", "load_yaml", "dump_yaml", "yaml_text", "parse_scalar"]

Loc = tuple[Any, ...]

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
#: YAML 1.2 core schema: decimal (leading zeros allowed), octal 0o, hexadecimal 0x.
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the ints and floats of YAML 1.2's core schema (see the module)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        if not _INT_RE.fullmatch(text):
            raise ValueError
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)
    except ValueError:  # an explicit !!int of something else, or more than 4300 digits
        what = f"cannot read {text[:40]!r} as an integer"
        raise yaml.constructor.ConstructorError(None, None, what, node.start_mark) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    if not _FLOAT_RE.fullmatch(text):  # an explicit !!float of something else
        what = f"cannot read {text[:40]!r} as a number"
        raise yaml.constructor.ConstructorError(None, None, what, node.start_mark)
    lower = text.lower()
    if lower.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if lower == ".nan" else float(text)


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_INT, re.compile(f"^(?:{_INT_RE.pattern})$"), list("-+0123456789"))
Loader.add_implicit_resolver(
    _FLOAT, re.compile(f"^(?:{_FLOAT_RE.pattern})$"), list("-+.0123456789")
)
Loader.add_constructor(_INT, _construct_int)
Loader.add_constructor(_FLOAT, _construct_float)


class Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes a string whenever YAML 1.2 (:class:`Loader`) or YAML 1.1
    (any other reader, e.g. ``yaml.safe_load``) would read it as something else (``'1e3'``,
    ``'0o17'``, ``'1_000'``); numbers are written in forms both read alike."""


Dumper.yaml_implicit_resolvers = {
    first: Loader.yaml_implicit_resolvers.get(first, [])
    + [
        r
        for r in yaml.SafeLoader.yaml_implicit_resolvers.get(first, [])
        if r not in Loader.yaml_implicit_resolvers.get(first, [])
    ]
    for first in {*Loader.yaml_implicit_resolvers, *yaml.SafeLoader.yaml_implicit_resolvers}
}


class LineMap:
    """Line numbers (1-based) of every key and sequence item of a YAML document, and the text of
    every scalar value as written (``no``, ``1e3``), for messages that quote the user."""

    def __init__(
        self, lines: dict[Loc, int] | None = None, texts: dict[Loc, str] | None = None
    ) -> None:
        self.lines = lines or {}
        self.texts = texts or {}

    @classmethod
    def from_node(cls, node: yaml.Node | None) -> LineMap:
        lines: dict[Loc, int] = {}
        texts: dict[Loc, str] = {}

        def walk(n: yaml.Node, loc: Loc) -> None:
            if isinstance(n, yaml.ScalarNode):
                texts[loc] = n.value
            elif isinstance(n, yaml.MappingNode):
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
        return cls(lines, texts)

    def text(self, loc: Sequence[Any]) -> str | None:
        """The scalar at exactly ``loc`` as the file writes it (None if not a scalar there)."""
        return self.texts.get(tuple(loc))

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
        data_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(shown, None, "", is_a_directory(path))]) from None
    except OSError as e:
        raise ConfigError([Problem(shown, None, "", f"cannot read: {e}")]) from None
    try:
        text = data_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data_bytes[: e.start].count(b"\n") + 1
        what = f"not UTF-8 text (byte 0x{data_bytes[e.start]:02x}); save the file as UTF-8"
        raise ConfigError([Problem(shown, line, "", what)]) from None
    try:
        loader = Loader(text)
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
        elif line is not None and ("<block end>" in what or "mapping values" in what):
            what += _indent_hint(text, line)
        raise ConfigError([Problem(shown, line, "", f"invalid YAML: {what}")]) from None
    except yaml.reader.ReaderError as e:  # a control character; position is in characters
        before = text[: e.position]  # lines end in \n, \r\n or a lone \r, as YAML reads them
        line = before.count("\n") + before.count("\r") - before.count("\r\n") + 1
        what = f"invalid YAML: character #x{e.character:04x} is not allowed; remove it"
        raise ConfigError([Problem(shown, line, "", what)]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(shown, None, "", f"invalid YAML: {e}")]) from None
    except RecursionError:
        what = "invalid YAML: nested too deeply (a config is a few levels deep)"
        raise ConfigError([Problem(shown, None, "", what)]) from None
    if data is None:
        raise ConfigError([Problem(shown, 1, "", "the file is empty; expected a nasframe config")])
    return data, LineMap.from_node(node)


def is_a_directory(path: Path, names: Sequence[str] = (ARCH, RUN_CONFIG)) -> str:
    """What to say of a directory given as a YAML file: the first of ``names`` it holds is
    suggested (a run directory given for its ``arch.yaml``)."""
    found = next((path / n for n in names if (path / n).is_file()), None)
    hint = f"; did you mean {found}?" if found is not None else ""
    return f"is a directory, expected a YAML file{hint}"


MAX_NODES = 100_000  # a config is a few hundred; aliases can multiply a short file past any size


def _indent_hint(text: str, line: int) -> str:
    """For YAML's indentation errors (``expected <block end>``, ``mapping values are not
    allowed here``): how line ``line`` (1-based) is indented against the key above it, when
    they differ; '' otherwise."""
    lines = text.splitlines()
    if not 1 < line <= len(lines):
        return ""
    here = lines[line - 1]
    above = next(
        (t for t in reversed(lines[: line - 1]) if t.strip() and not t.lstrip().startswith("#")), ""
    )
    if ":" not in here or ":" not in above:
        return ""
    indent = len(here) - len(here.lstrip(" "))
    key_above = len(above) - len(above.lstrip(" -"))  # "  - width: 8": its key is at 4
    if indent == key_above:
        return ""
    return (
        f"; this line's key is indented {counted(indent, 'space')}, the key above it "
        f"{key_above}: the keys of one mapping line up"
    )


def _check_structure(root: yaml.Node, shown: str) -> None:
    """Refuse what SafeLoader would accept but a config never needs: a key that is not text
    (``~: 1`` would become the key None, far from its line), a key given twice in one mapping
    (the last would silently win), an alias inside itself, or aliases expanding the document
    past :data:`MAX_NODES`."""

    def refused(line: int | None, where: str, what: str) -> ConfigError:
        return ConfigError([Problem(shown, line, where, what)])

    seen = 0
    stack: list[tuple[yaml.Node, frozenset[int], tuple[str, ...]]] = [(root, frozenset(), ())]
    while stack:
        node, ancestors, path = stack.pop()
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
                _check_key(key, shown, path)
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in first:
                        what = f"duplicate key (first given on line {first[key.value]}); keep one"
                        raise refused(line, ".".join((*path, key.value)), f"{what} of them")
                    first[key.value] = line
                stack.append((value, inner, (*path, str(getattr(key, "value", "?")))))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, inner, (*path, str(i))) for i, item in enumerate(node.value))


#: What YAML reads a key as, when that is not text (a key is a name, always text).
_KINDS = {
    f"tag:yaml.org,2002:{tag}": kind
    for tag, kind in [
        ("null", "null"),
        ("bool", "a boolean"),
        ("int", "a number"),
        ("float", "a number"),
        ("timestamp", "a date"),
    ]
}


def _check_key(key: yaml.Node, shown: str, path: tuple[str, ...]) -> None:
    """Refuse a mapping key that YAML reads as null, a boolean, a number or a date (``~``,
    ``yes``, ``1``), at its line and path as written, and a list or mapping as a key."""
    line = key.start_mark.line + 1
    if not isinstance(key, yaml.ScalarNode):
        what = "invalid YAML: a key must be text, not a list or mapping"
        raise ConfigError([Problem(shown, line, ".".join(path), what)])
    kind = _KINDS.get(key.tag)
    if kind is not None:  # text, << and = pass; another tag is judged when constructed
        hint = f'; quote it ("{key.value}") if that is the name you mean' if key.value else ""
        what = f"a key must be text, not {kind}{hint}"
        raise ConfigError([Problem(shown, line, ".".join((*path, key.value)), what)])


def parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value the way a config file would (``3`` -> int, ``1e-3`` -> float,
    ``[1, 2]`` -> list)."""
    try:
        return yaml.load(text, Loader=Loader) if text.strip() else ""  # noqa: S506 (safe)
    except yaml.YAMLError:
        return text


def yaml_text(data: Any) -> str:
    """``data`` as the YAML text :func:`dump_yaml` writes."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=None)


def dump_yaml(data: Any, path: str | os.PathLike) -> None:
    """Write YAML atomically (:func:`~nasframe.atomic.atomic_write`). A failure to write (no
    space, no permission, a directory in the way) is a :class:`UserError` naming the path and
    why; no temporary file is left behind."""
    text = yaml_text(data).encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(text))
