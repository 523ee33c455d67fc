"""The Python API reference (docs/api.md) is generated, complete, and documents typed, described
functions: the project's rule is type hints on public functions and short docstrings."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ROOT

import nasframe
from nasframe import registry
from nasframe.api_doc import api_reference

API_MD = ROOT / "docs" / "api.md"

# Public functions and methods that break the rule (none today), with what they lack. Known, so that the
# check below fails for any *new* one; fix the source and delete the entry (a stale entry fails
# too). "docstring": no docstring of its own; "hint: NAME": parameter without a type hint;
# "return hint": no return annotation.
KNOWN_UNDOCUMENTED: dict[str, set[str]] = {}


def _in_nasframe(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "nasframe" or module.startswith("nasframe.")


def _public_callables() -> Iterator[tuple[str, Callable[..., Any], str]]:
    """(qualified name, function, kind) of every public function of ``nasframe.__all__`` and of
    ``nasframe.registry.__all__``, and of every public method, classmethod, staticmethod and
    property (its getter) of their classes that is defined in nasframe (own class or a nasframe
    base; torch's and pydantic's are not ours), plus constructors (``__init__`` written in
    nasframe) for their parameters' hints."""
    tops = [(n, getattr(nasframe, n)) for n in nasframe.__all__]
    tops += [(f"registry.{n}", getattr(registry, n)) for n in registry.__all__]
    for name, obj in tops:
        if inspect.isfunction(obj):
            yield name, obj, "function"
        if not inspect.isclass(obj):
            continue
        seen: set[str] = set()
        for klass in obj.__mro__:
            if not _in_nasframe(klass):
                continue
            for member, raw in vars(klass).items():
                if member in seen or (member.startswith("_") and member != "__init__"):
                    continue
                seen.add(member)
                func, kind = raw, "method"
                if isinstance(raw, property):
                    func, kind = raw.fget, "property"
                elif isinstance(raw, classmethod | staticmethod):
                    func, kind = raw.__func__, type(raw).__name__
                if not inspect.isfunction(func) or not _in_nasframe(func):
                    continue
                if member == "__init__":
                    if "<string>" in (inspect.getsourcefile(func) or "<string>"):
                        continue  # a dataclass's generated constructor: typed by its fields
                    kind = "constructor"
                yield f"{name}.{member}", func, kind


def _problems(func: Callable[..., Any], kind: str) -> set[str]:
    """What ``func`` lacks: its own docstring (a constructor's is its class's), a hint on every
    parameter but ``self``/``cls`` (``*args``/``**kwargs`` included), a return hint."""
    out: set[str] = set()
    if kind != "constructor" and not (func.__doc__ or "").strip():
        out.add("docstring")
    params = list(inspect.signature(func).parameters.values())
    if kind in ("method", "classmethod", "property", "constructor"):
        params = params[1:]
    for p in params:
        if p.annotation is p.empty:
            out.add(f"hint: {p.name}")
    if inspect.signature(func).return_annotation is inspect.Signature.empty:
        out.add("return hint")
    return out


def _documented_names() -> set[str]:
    return set(re.findall(r"^#{3,5} `([^`]+)`$", API_MD.read_text(), re.M))


def test_api_reference_is_up_to_date():
    assert API_MD.read_text() == api_reference(), (
        "regenerate with: python -m nasframe.api_doc > docs/api.md"
    )


def test_api_reference_is_deterministic_and_relative():
    text = api_reference()
    assert text == api_reference()
    assert not re.search(r"0x[0-9a-fA-F]{6,}", text), "a memory address on the page"
    assert str(ROOT) not in text and "/home/" not in text and "site-packages" not in text


def test_every_public_name_is_documented():
    documented = _documented_names()
    missing = [n for n in nasframe.__all__ if n not in documented]
    missing += [f"registry.{n}" for n in registry.__all__ if f"registry.{n}" not in documented]
    assert not missing, f"not on docs/api.md: {missing}"
    for name in ("run_search", "search_iteration", "run_train"):  # the lazily imported ones
        assert f"### `{name}`\n\n*function, imported on first use*" in API_MD.read_text()


def test_every_public_method_is_documented():
    """Under ``Class.member``, or under the exported base class that defines it."""
    documented = _documented_names()
    exported = set(nasframe.__all__) | set(registry.__all__)
    missing = []
    for name, _, kind in _public_callables():
        if kind in ("constructor", "function"):
            continue
        *_, owner, member = name.split(".")
        cls = getattr(nasframe, owner, None) or getattr(registry, owner)
        definer = next(k for k in cls.__mro__ if member in vars(k))
        heading = definer.__name__ if definer.__name__ in exported else owner
        if f"{heading}.{member}" not in documented:
            missing.append(name)
    assert not missing, f"methods not on docs/api.md: {missing}"


def test_public_functions_have_docstrings_and_type_hints():
    """Every public function (``nasframe.__all__``, ``nasframe.registry.__all__``) and every
    public method and property of their classes, defined in nasframe, has its own docstring and
    type hints on all parameters and the return. ``self``/``cls`` need none; ``*args`` and
    ``**kwargs`` need them like any parameter; a constructor needs hints (its docstring is its
    class's). Known exceptions are listed in ``KNOWN_UNDOCUMENTED``."""
    new = {}
    for name, func, kind in _public_callables():
        problems = _problems(func, kind) - KNOWN_UNDOCUMENTED.get(name, set())
        if problems:
            line = inspect.getsourcelines(func)[1]
            where = f"{inspect.getsourcefile(func)}:{line}".replace(f"{ROOT}/", "")
            new[name] = f"{sorted(problems)} at {where}"
    assert not new, f"public functions without docstring or type hints: {new}"


def test_known_undocumented_list_has_no_stale_entries():
    found = {name: _problems(func, kind) for name, func, kind in _public_callables()}
    stale = {
        name: sorted(lacks - found.get(name, set()))
        for name, lacks in KNOWN_UNDOCUMENTED.items()
        if not lacks <= found.get(name, set())
    }
    assert not stale, f"fixed or gone: remove from KNOWN_UNDOCUMENTED in this file: {stale}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(x: int) -> int:\n    'Doc.'\n    return x", set()),
        ("def f(x) -> int:\n    'Doc.'\n    return x", {"hint: x"}),
        ("def f(x: int):\n    'Doc.'\n    return x", {"return hint"}),
        ("def f(*a, **k) -> None:\n    'Doc.'", {"hint: a", "hint: k"}),
        ("def f(x: int) -> int:\n    return x", {"docstring"}),
    ],
)
def test_the_check_finds_what_is_missing(source, expected):
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    assert _problems(namespace["f"], "function") == expected
