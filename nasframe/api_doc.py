"""The Python API reference (docs/api.md) generated from ``nasframe.__all__``, so it is never out
of date: every public name with its kind, signature (type hints as written) and docstring."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

import nasframe

__all__ = ["GROUPS", "api_reference", "public_members"]

#: The sections of the page: (title, what the names have in common, names of ``nasframe.__all__``).
#: Every exported name is in exactly one group (the generator refuses the page otherwise).
GROUPS: list[tuple[str, str, list[str]]] = [
    (
        "Search loop and strategies",
        "What runs a search and retrains its result, and the strategies that propose "
        "architectures (`Strategy` is the contract a strategy plugin keeps). `Group` and "
        "`join_group` share a run among the processes `torchrun` starts.",
        [
            "run_search",
            "search_iteration",
            "run_train",
            "Strategy",
            "ASNG",
            "RandomSearch",
            "ranking_utility",
            "join_group",
            "Group",
        ],
    ),
    (
        "Spaces and networks",
        "A config's choices as a search space, the weight-sharing supernets that run sampled "
        "architectures, and the fixed networks retrained and exported.",
        [
            "load_space",
            "SearchSpace",
            "ChoicePoint",
            "make_supernet",
            "Supernet",
            "CellSupernet",
            "build_network",
            "CellNetwork",
            "FactorizedReduce",
        ],
    ),
    (
        "Configs and errors",
        "Reading and validating configs (their keys are in the [config reference](config.md)), "
        "and the errors that report bad input in one line per problem with exit status 2.",
        ["load_config", "validate_data", "Config", "Choice", "UserError", "ConfigError", "Problem"],
    ),
    (
        "Data",
        "What a dataset plugin returns, and the batch augmentation of image datasets (whole, "
        "and each step alone, with random or given per-sample offsets).",
        [
            "Dataset",
            "augment_batch",
            "random_crop",
            "random_flip",
            "cutout",
            "crop_flip_at",
            "cutout_at",
        ],
    ),
    (
        "Plugins and the registry",
        "Registering plugins in user code, looking them up, and what op plugins build on "
        "(see [Writing a plugin](plugins.md)).",
        ["register", "registry", "Op", "layer_types", "LAYOUTS"],
    ),
    (
        "Utilities",
        "Small helpers the run loops use that plugins may want too.",
        ["count_parameters", "count_macs", "l2_penalty", "__version__"],
    ),
]

HEADER = """# Python API

<!-- Generated from nasframe/__init__.py by `python -m nasframe.api_doc > docs/api.md`;
     a test fails when this file is out of date. -->

Everything on this page is imported from `nasframe` itself (`from nasframe import ASNG`), and
nothing else is public: plugins import only from `nasframe` (see
[Writing a plugin](plugins.md)); the modules behind it are internal and may change. Signatures
show the type hints as the source writes them, so some name internal types (`CellSpace`,
`Node`). `run_search`, `search_iteration` and `run_train` are imported on first use, so that
`import nasframe` stays light.
"""

#: Descriptions of exported constants that have no ``#:`` comment where they are defined.
CONSTANT_DOCS: dict[str, str] = {"__version__": "The version of this nasframe package."}

WIDTH = 88  # signatures longer than this are written one parameter per line

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")
_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Yields|Attributes|Note|Example):\s*$")
_ITEM = re.compile(r"^(\*{0,2}[\w.]+)(\s*\([^)]*\))?:\s*(.*)$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _in_nasframe(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "nasframe" or module.startswith("nasframe.")


def _own_doc(obj: Any) -> str:
    """The object's own docstring, cleaned (``inspect.getdoc`` would inherit torch's)."""
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else ""
    if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # the dataclass's generated signature, not a docstring
    return inspect.cleandoc(doc) if doc else ""


def _first_paragraph(doc: str) -> str:
    return doc.split("\n\n")[0].strip()


def _markdown(doc: str) -> str:
    """A docstring as Markdown: Sphinx roles and ``literals`` as code, Google-style sections
    (``Args:``) as lists."""
    doc = _ROLE.sub(lambda m: f"`{m[2].split('.')[-1] if m[1] else m[2]}`", doc)
    doc = re.sub(r"``([^`]+)``", r"`\1`", doc)
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        head = _SECTION.match(lines[i])
        if not head:
            out.append(lines[i])
            i += 1
            continue
        i += 1
        items: list[str] = []
        while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
            line = lines[i]
            i += 1
            if not line.strip():
                continue
            if len(line) - len(line.lstrip()) <= 4 or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        out += ["", f"**{head[1]}:**", ""]
        for item in items:
            m = _ITEM.match(item)
            out.append(f"- `{m[1]}`{m[2] or ''}: {m[3]}" if m else f"- {item}")
        out.append("")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):  # `from __future__ import annotations`: as written
        return annotation
    text = inspect.formatannotation(annotation)
    return _ADDRESS.sub("", text.replace("typing.", ""))


def _default(value: Any) -> str:
    return _ADDRESS.sub("", repr(value))


class _Written:
    """A default shown as source text (``list()`` for a dataclass's ``default_factory=list``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _value(prefix: str, value: Any) -> str:
    """``prefix`` and a constant's value; a long mapping one item per line."""
    text = prefix + _default(value)
    if len(text) <= WIDTH or not isinstance(value, dict) or not value:
        return text
    items = "".join(f"    {_default(k)}: {_default(v)},\n" for k, v in value.items())
    return prefix + "{\n" + items + "}"


def _parameters(params: list[inspect.Parameter]) -> list[str]:
    """Parameters as written in a ``def``, with the ``/`` and ``*`` markers."""
    out: list[str] = []
    kinds = inspect.Parameter
    for k, p in enumerate(params):
        if k and p.kind != kinds.POSITIONAL_ONLY and params[k - 1].kind == kinds.POSITIONAL_ONLY:
            out.append("/")
        if p.kind == kinds.KEYWORD_ONLY and all(
            q.kind not in (kinds.KEYWORD_ONLY, kinds.VAR_POSITIONAL) for q in params[:k]
        ):
            out.append("*")
        text = {kinds.VAR_POSITIONAL: "*", kinds.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + _default(p.default)
        out.append(text)
    if params and params[-1].kind == kinds.POSITIONAL_ONLY:
        out.append("/")
    return out


def _signature_text(name: str, params: list[str], returns: str | None) -> str:
    tail = f" -> {returns}" if returns else ""
    one_line = f"{name}({', '.join(params)}){tail}"
    if len(one_line) <= WIDTH or not params:
        return one_line
    return f"{name}(\n" + "".join(f"    {p},\n" for p in params) + f"){tail}"


def _function_signature(name: str, func: Callable[..., Any], drop_first: bool = False) -> str:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1 if drop_first else 0 :]
    returns = None
    if sig.return_annotation is not sig.empty:
        returns = _annotation(sig.return_annotation)
    return _signature_text(name, _parameters(params), returns)


def _is_pydantic(cls: type) -> bool:
    return any(
        base.__name__ == "BaseModel" and base.__module__.startswith("pydantic")
        for base in cls.__mro__
    )


def _class_annotations(cls: type) -> dict[str, Any]:
    """Annotations of a class and its bases, as written (the nearest definition wins)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(inspect.get_annotations(klass))
    return out


def _class_signature(name: str, cls: type) -> str:
    if _is_pydantic(
        cls
    ):  # keyword fields, typed as written (pydantic's own signature resolves them)
        hints = _class_annotations(cls)
        params = []
        for field_name, field in cls.model_fields.items():
            text = f"{field_name}: {_annotation(hints.get(field_name, field.annotation))}"
            if not field.is_required():
                if field.default_factory is not None:
                    factory = field.default_factory
                    text += f" = {getattr(factory, '__name__', 'factory')}()"
                else:
                    text += f" = {_default(field.default)}"
            params.append(text)
        return _signature_text(name, ["*", *params] if params else [], None)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # e.g. exceptions without an __init__ of their own
        return f"{name}(*args)"
    params = list(sig.parameters.values())
    if dataclasses.is_dataclass(cls):  # `<factory>` in inspect's words: the factory called
        factories = {
            f.name: f.default_factory
            for f in dataclasses.fields(cls)
            if f.default_factory is not dataclasses.MISSING
        }
        params = [
            p.replace(default=_Written(f"{getattr(factories[p.name], '__name__', 'factory')}()"))
            if p.name in factories
            else p
            for p in params
        ]
    return _signature_text(name, _parameters(params), None)


def _public_base(cls: type) -> str | None:
    """The nearest base worth naming: an exported nasframe class, or one from another package
    under its shortest import path (``torch.nn.Module``, ``pydantic.BaseModel``)."""
    exported = {id(getattr(nasframe, n)) for n in nasframe.__all__}
    for base in cls.__mro__[1:]:
        if base in (object,) or base.__name__ == "Generic":
            continue
        if _in_nasframe(base):
            if id(base) in exported:
                return f"`{base.__name__}`"
            continue
        module = base.__module__
        if module == "builtins":
            return f"`{base.__name__}`"
        parts = module.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            try:
                if getattr(importlib.import_module(prefix), base.__name__, None) is base:
                    return f"`{prefix}.{base.__name__}`"
            except ImportError:  # pragma: no cover - a base's package is imported already
                continue
        return f"`{module}.{base.__name__}`"
    return None


def _comment_docs(source: str) -> dict[str, str]:
    """``#:`` comments right above an assignment, by the assigned name (Sphinx's convention)."""
    out: dict[str, str] = {}
    comment: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
            continue
        m = re.match(r"(\w+)\s*[:=]", stripped)
        if m and comment:
            out.setdefault(m[1], " ".join(comment))
        comment = []
    return out


def _defining_module(name: str) -> types.ModuleType:
    """The module ``nasframe/__init__.py`` imports an exported name from."""
    tree = ast.parse(inspect.getsource(nasframe))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            if any((a.asname or a.name) == name for a in node.names):
                return importlib.import_module(f"nasframe.{node.module}")
    return nasframe


def _constant_doc(name: str, module: types.ModuleType) -> str:
    docs = _comment_docs(inspect.getsource(module))
    return docs.get(name) or CONSTANT_DOCS.get(name, "")


def _exported_classes() -> set[int]:
    from . import registry

    found = [getattr(nasframe, n) for n in nasframe.__all__]
    found += [getattr(registry, n) for n in registry.__all__]
    return {id(obj) for obj in found if inspect.isclass(obj)}


def public_members(cls: type) -> Iterator[tuple[str, str, Any]]:
    """(name, kind, object) of the public methods, properties and class attributes of a class,
    defined in nasframe (in its class or its internal nasframe bases, in source order): nothing
    inherited from torch, pydantic or ``object``, nor from an exported base (documented there).
    Methods yield their function, properties their getter."""
    seen: set[str] = set()
    foreign = [klass for klass in cls.__mro__ if not _in_nasframe(klass)]
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    exported = _exported_classes()
    documented_elsewhere: set[type] = set()
    for klass in cls.__mro__[1:]:
        if id(klass) in exported:
            documented_elsewhere.update(klass.__mro__)
    for klass in cls.__mro__:
        if not _in_nasframe(klass) or klass in documented_elsewhere:
            continue
        for name, raw in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(raw, property):
                if raw.fget is not None and _in_nasframe(raw.fget):
                    yield name, "property", raw.fget
            elif isinstance(raw, classmethod | staticmethod):
                if _in_nasframe(raw.__func__):
                    yield name, type(raw).__name__, raw.__func__
            elif inspect.isfunction(raw):
                if _in_nasframe(raw):
                    yield name, "method", raw
            elif name not in fields and not any(hasattr(f, name) for f in foreign):
                yield name, "attribute", raw


def _member_section(owner: type, name: str, kind: str, obj: Any, level: int) -> list[str]:
    title = f"{owner.__name__}.{name}"
    parts = [f"{'#' * level} `{title}`\n", f"*{kind}*\n"]
    if kind == "property":
        sig = inspect.signature(obj)
        returns = sig.return_annotation
        text = name + (f": {_annotation(returns)}" if returns is not sig.empty else "")
    elif kind == "attribute":
        hint = _class_annotations(owner).get(name)
        text = _value(name + (f": {_annotation(hint)}" if hint is not None else "") + " = ", obj)
    else:
        text = _function_signature(name, obj, drop_first=kind in ("method", "classmethod"))
    parts.append(f"```python\n{text}\n```\n")
    if kind == "attribute":
        for klass in owner.__mro__:
            if name in vars(klass):
                doc = _comment_docs(inspect.getsource(klass)).get(name, "")
                break
    else:
        doc = _own_doc(obj)
    if doc:
        parts.append(_markdown(_first_paragraph(doc)) + "\n")
    return parts


def _section(name: str, obj: Any, level: int, title: str, lazy: bool = False) -> list[str]:
    """One exported object: heading, kind, signature, docstring (and members of classes and
    modules, one level deeper)."""
    parts = [f"{'#' * level} `{title}`\n"]
    if inspect.ismodule(obj):
        parts.append("*module*\n")
        parts.append(_markdown(_own_doc(obj)) + "\n")
        exported = {id(getattr(nasframe, n)): n for n in nasframe.__all__}
        for sub in getattr(obj, "__all__", []):
            value = getattr(obj, sub)
            if id(value) in exported and not isinstance(value, int | str):
                top = exported[id(value)]
                parts += [
                    f"{'#' * (level + 1)} `{name}.{sub}`\n",
                    f"The same object as [`{top}`](#{top.lower()}).\n",
                ]
                continue
            if inspect.isclass(value) or callable(value):
                parts += _section(sub, value, level + 1, f"{name}.{sub}")
            else:
                parts += _constant(sub, value, obj, level + 1, f"{name}.{sub}")
        return parts
    if inspect.isclass(obj):
        kind = "class"
        if dataclasses.is_dataclass(obj):
            kind = "class (a dataclass)"
        base = _public_base(obj)
        parts.append(f"*{kind}*" + (f", subclass of {base}" if base else "") + "\n")
        parts.append(f"```python\n{_class_signature(name, obj)}\n```\n")
        doc = _own_doc(obj)
        if doc:
            parts.append(_markdown(doc) + "\n")
        if _is_pydantic(obj):
            parts.append(
                "A pydantic model: its fields are keyword arguments, and it also has pydantic's "
                "methods (`model_validate`, `model_dump`, ...).\n"
            )
        for member, member_kind, member_obj in public_members(obj):
            parts += _member_section(obj, member, member_kind, member_obj, level + 1)
        return parts
    kind = "function" + (", imported on first use" if lazy else "")
    parts.append(f"*{kind}*\n")
    parts.append(f"```python\n{_function_signature(name, obj)}\n```\n")
    doc = _own_doc(obj)
    if doc:
        parts.append(_markdown(doc) + "\n")
    return parts


def _constant(name: str, value: Any, module: types.ModuleType, level: int, title: str) -> list[str]:
    hint = inspect.get_annotations(module).get(name)
    text = _value(name + (f": {_annotation(hint)}" if hint is not None else "") + " = ", value)
    parts = [f"{'#' * level} `{title}`\n", "*constant*\n", f"```python\n{text}\n```\n"]
    doc = _constant_doc(name, module)
    if doc:
        parts.append(_markdown(doc) + "\n")
    return parts


def _check_groups() -> None:
    grouped = [n for _, _, names in GROUPS for n in names]
    exported = list(nasframe.__all__)
    missing = [n for n in exported if n not in grouped]
    unknown = [n for n in grouped if n not in exported]
    twice = sorted({n for n in grouped if grouped.count(n) > 1})
    if missing or unknown or twice:
        raise RuntimeError(
            "nasframe/api_doc.py GROUPS out of step with nasframe.__all__: "
            f"not in a group {missing}, not exported {unknown}, in two groups {twice}"
        )


def api_reference() -> str:
    """The Markdown of docs/api.md: every name of ``nasframe.__all__``, by group."""
    _check_groups()
    parts = [HEADER]
    for title, intro, names in GROUPS:
        parts.append(f"\n## {title}\n")
        parts.append(f"{intro}\n")
        for name in names:
            lazy = name not in vars(nasframe)  # served by nasframe.__getattr__
            obj = getattr(nasframe, name)
            if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
                parts += _section(name, obj, 3, name, lazy=lazy)
            else:
                parts += _constant(name, obj, _defining_module(name), 3, name)
    text = "\n".join(parts)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(api_reference(), end="")
