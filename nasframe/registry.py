"""One registry per plugin kind, fed by entry points and by ``@register``.

Discovery reads package metadata only; a plugin's module is imported the first time the plugin is
requested, so one broken plugin never breaks the others or the CLI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from .errors import UserError, did_you_mean

__all__ = [
    "KINDS",
    "PluginInfo",
    "PluginError",
    "register",
    "get",
    "exists",
    "names",
    "plugins",
    "normalize",
    "keywords",
]

#: Plugin kind -> entry-point group.
KINDS: dict[str, str] = {
    "op": "nasframe.ops",
    "cell_op": "nasframe.cell_ops",
    "strategy": "nasframe.strategies",
    "optimizer": "nasframe.optimizers",
    "growth": "nasframe.growth",
    "pruner": "nasframe.pruners",
    "dataset": "nasframe.datasets",
}


class PluginError(UserError):
    """An unknown, ambiguous or broken plugin."""


def normalize(name: str) -> str:
    """Registry names are case-insensitive and treat '-' as '_'."""
    return str(name).strip().lower().replace("-", "_")


@dataclass
class PluginInfo:
    """Where a plugin comes from, and the plugin once loaded."""

    kind: str
    name: str
    source: str  # distribution name, or "user code"
    version: str
    value: str  # "module:attr" for entry points, the object's qualified name otherwise
    entry_point: metadata.EntryPoint | None = None
    obj: Any = None
    loaded: bool = False
    conflicts: list[PluginInfo] = field(default_factory=list)

    def load(self) -> Any:
        """The plugin object, imported on first use; a plugin that fails to import raises a
        PluginError naming its entry point and distribution."""
        if not self.loaded:
            try:
                self.obj = self.entry_point.load()
            except Exception as e:  # a plugin's bug must not look like ours
                raise PluginError(
                    f"{self.kind} plugin '{self.name}' (entry point '{self.value}' in group "
                    f"{KINDS[self.kind]}, distribution {self.source} {self.version}) failed to "
                    f"load: {type(e).__name__}: {e}"
                ) from e
            self.loaded = True
        return self.obj


_entries: dict[str, dict[str, PluginInfo]] = {}


def _discover() -> dict[str, dict[str, PluginInfo]]:
    if _entries:
        return _entries
    for kind in KINDS:
        _entries[kind] = {}
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        for ep in dist.entry_points:
            kind = next((k for k, g in KINDS.items() if g == ep.group), None)
            if kind is None:
                continue
            info = PluginInfo(kind, normalize(ep.name), dist_name, dist.version, ep.value, ep)
            _add(info, override=False)
    return _entries


def _add(info: PluginInfo, override: bool) -> None:
    table = _entries[info.kind]
    old = table.get(info.name)
    if old is not None and not override:
        if old.source == info.source and old.value == info.value:
            return  # the same distribution seen twice on sys.path
        old.conflicts.append(info)
        return
    table[info.name] = info


def register(kind: str, name: str | None = None, *, override: bool = False) -> Callable[[Any], Any]:
    """Decorator registering user code as a plugin: ``@register("op", "my_conv")``.

    A name that is already taken is an error naming both sources, unless ``override=True``.
    """
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind '{kind}'{did_you_mean(kind, KINDS)}")

    def deco(obj: Any) -> Any:
        key = normalize(name or getattr(obj, "__name__", ""))
        table = _discover()[kind]
        qual = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
        old = table.get(key)
        if old is not None and not override:
            raise PluginError(
                f"{kind} '{key}' is registered twice: by {old.source} ({old.value}) and by user "
                f"code ({qual}); pass override=True to replace it"
            )
        table[key] = PluginInfo(kind, key, "user code", "", qual, obj=obj, loaded=True)
        return obj

    return deco


def _info(kind: str, name: str) -> PluginInfo:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind '{kind}'{did_you_mean(kind, KINDS)}")
    table = _discover()[kind]
    key = normalize(name)
    info = table.get(key)
    if info is None:
        raise PluginError(unknown_message(kind, name))
    if info.conflicts:
        sources = ", ".join(f"{i.source} ({i.value})" for i in [info, *info.conflicts])
        raise PluginError(
            f"{kind} '{key}' is provided by several distributions: {sources}; uninstall one, or "
            f"register the one you want with register('{kind}', '{key}', override=True)"
        )
    return info


def unknown_message(kind: str, name: str) -> str:
    """'unknown op 'x'; did you mean ...? (available: ...)'."""
    available = sorted(_discover()[kind])
    hint = did_you_mean(normalize(name), available)
    listing = f" (available: {', '.join(available)})"
    return f"unknown {kind.replace('_', ' ')} '{name}'{hint}{listing}"


def get(kind: str, name: str) -> Any:
    """The plugin object registered as ``name`` for ``kind`` (imported on first use)."""
    return _info(kind, name).load()


def keywords(factory: Callable[..., Any], exclude: tuple[str, ...] = ()) -> set[str] | None:
    """The keyword arguments a plugin factory takes, without ``exclude`` (the ones the caller
    fills in itself); None when it takes any (``**kwargs``) or has no signature to read, so that
    options are left for the call itself to judge."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in named} - set(exclude)


def exists(kind: str, name: str) -> bool:
    """Whether ``name`` is registered for ``kind`` (metadata only: nothing is imported)."""
    return normalize(name) in _discover().get(kind, {})


def names(kind: str) -> list[str]:
    """Registered names of one kind, sorted."""
    return sorted(_discover()[kind])


def plugins() -> list[PluginInfo]:
    """Every registered plugin of every kind, for listings."""
    table = _discover()
    return [table[k][n] for k in KINDS for n in sorted(table[k])]
