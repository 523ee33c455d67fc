"""The YAML reference (docs/config.md) generated from the schema, so it is never out of date."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import Choice, Config

__all__ = ["config_reference"]

HEADER = """# Config reference

<!-- Generated from nasframe/config.py by `python -m nasframe.reference_doc > docs/config.md`;
     a test fails when this file is out of date. -->

One YAML file is one runnable experiment. Any field marked *choice* takes either a constant
(`width: 32`) or `{choices: [16, 32, 64]}`; every choice becomes one categorical variable of the
search, named by its path (e.g. `space.stages.s1.layer0.op`), and the order of `choices` is its
one-hot index. `{choices: [16, 32, 64], ordinal: true}` says the options are
ordered (numbers, increasing): ASNG then searches the choice with a rounded Gaussian over its indices instead (see
[ASNG, exactly](asng.md#ordinal-choices)). Unknown keys are errors. `--set key.path=value` overrides any field from the command
line (stages may be named: `--set space.stages.s1.width=64`).

Numbers are read as YAML 1.2 defines them (not as YAML 1.1): `1e-3` and `1e3` are numbers,
`017` is 17 (octal is written `0o17`, hexadecimal `0x1f`), and `1:30` and `1_000` are text;
write quotes for text that YAML would read as a number, boolean or date (`name: "2024"`).
A field that takes a number takes only numbers: `epochs: "15"`, `seed: 1_000` and `lr: yes` are
refused (with the number to write, where there is one).
"""


def _models(annotation: Any) -> list[type[BaseModel]]:
    out = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not issubclass(annotation, Choice):
            out.append(annotation)
    for arg in typing.get_args(annotation):
        out.extend(_models(arg))
    return out


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0])
    text = repr(annotation)
    if "Choice" in text:
        return "choice"
    models = _models(annotation)
    if len(models) > 1:  # a union of sections (chain or cell spaces): name each by its `type`
        return " \\| ".join(_kind(m) or m.__name__ for m in models)
    if typing.get_origin(annotation) is typing.Annotated:  # a type with validators: the type
        return _type_name(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and not models:
        return " \\| ".join(_type_name(a) for a in args)  # e.g. int | 'auto'
    for a, b in [
        ("typing.", ""),
        ("nasframe.config.", ""),
        ("nasframe.cell_config.", ""),
        ("Annotated[", ""),
        ("<class '", ""),
        ("'>", ""),
    ]:
        text = text.replace(a, b)
    if "Literal" in text:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation) if a is not None) or text
    for simple in ("int", "float", "str", "bool"):
        if text.startswith(simple):
            return simple
    if text.startswith("list["):
        return "list"
    if text.startswith("dict["):
        return "mapping"
    return text.split("|")[0].split(",")[0].strip(" []")


def _kind(model: type[BaseModel]) -> str | None:
    """The ``type`` literal of a section that is one of several kinds (e.g. spaces)."""
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return str(args[0]) if len(args) == 1 else None


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        return "" if field.default is None else f"`{field.default}`"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return ""
        return "" if isinstance(value, BaseModel) else f"`{value}`"
    return "**required**"


def config_reference() -> str:
    """Markdown tables of every section of the schema, from the top."""
    parts = [HEADER]
    seen: set[type] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("(top level)", Config)]
    while queue:
        where, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        kind = _kind(model)
        parts.append(f"\n## `{where}`" + (f" (type: {kind})" if kind else "") + "\n")
        if doc and not doc.startswith("!!!"):
            parts.append(f"{doc}\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, field in model.model_fields.items():
            kind = _type_name(field.annotation)
            desc = (field.description or "").replace("|", "\\|")
            parts.append(f"| `{name}` | {kind} | {_default(field)} | {desc} |")
            for sub in _models(field.annotation):
                path = name if where == "(top level)" else f"{where}.{name}"
                if sub is model:
                    continue
                queue.append((path + ("[]" if "list" in kind else ""), sub))
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
