"""One registry per plugin kind, fed by entry points and by ``@register``.

Discovery reads package metadata only; a plugin's module is imported the first time the plugin is
requested, so one broken plugin never breaks the others or the CLI.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from .errors import UserError, did_you_mean, first_line, out_of_memory, traceback_wanted

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


class PluginFailure(PluginError):
    """A plugin that loaded but failed when nasframe used it: it raised something other than
    nasframe's :class:`~nasframe.UserError`, or returned the wrong kind of thing. A bug in the
    plugin, not in the user's input; the plugin's own exception is its ``__cause__``."""


#: Plugin kind -> what its entry point must name (for plugins that name something else).
WHAT: dict[str, str] = {
    "op": "an Op class with a build() classmethod",
    "cell_op": "a function (channels, stride, affine, track_running_stats) -> nn.Module",
    "strategy": "a strategy class",
    "optimizer": "an optimizer class or function",
    "growth": "a growth strategy class",
    "pruner": "a pruner class",
    "dataset": "a function (root=None, **options) -> nasframe.Dataset",
}

#: Plugin kind -> how nasframe calls it (for plugins that cannot be called so).
CALLS: dict[str, str] = {
    "op": "build(in_channels, out_channels, stride, layout) -> list of torch modules",
    "cell_op": "(channels, stride, affine, track_running_stats) -> nn.Module",
    "strategy": "(categories, *, lam, seed, **search.strategy_options)",
    "optimizer": "(params, lr=..., **options) -> torch.optim.Optimizer",
    "growth": "(**train.growth.options)",
    "pruner": "(threshold=...)",
    "dataset": "(root=None, **data.options) -> nasframe.Dataset",
}


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
    asked: bool = False  #: looked up by name in this process (a config naming it, say)
    conflicts: list[PluginInfo] = field(default_factory=list)

    def load(self) -> Any:
        """The plugin object, imported on first use; a plugin that fails to import raises a
        PluginError naming its entry point and distribution."""
        if not self.loaded:
            try:
                self.obj = self.entry_point.load()
            except Exception as e:  # a plugin's bug must not look like ours
                raise PluginError(
                    f"{self.kind} plugin '{self.name}' ({_origin(self)}) failed to load: "
                    f"{type(e).__name__}: {e}"
                ) from e
            self.loaded = True
        return self.obj


def _origin(info: PluginInfo) -> str:
    """Where a plugin comes from: its entry point and distribution, or the code that registered
    it."""
    if info.entry_point is None:
        return f"registered in code as {info.value}"
    return (
        f"entry point '{info.value}' in group {KINDS[info.kind]}, distribution {info.source} "
        f"{info.version}"
    )


def provider(kind: str, name: str) -> str:
    """Who provides plugin ``name`` of ``kind``, in a few words for a message about the user's
    use of it (``distribution acme-nas 0.3``, ``nasframe``, ``registered in code``)."""
    info = _discover().get(kind, {}).get(normalize(name))
    if info is None or info.entry_point is None:
        return "registered in code" if info is not None else "origin unknown"
    return (
        info.source if info.source == "nasframe" else f"distribution {info.source} {info.version}"
    )


def _advice(info: PluginInfo) -> str:
    if info.entry_point is None:
        return "a bug in that plugin: fix it, or report it to its authors"
    if info.source == "nasframe":
        return "a bug in nasframe: please report it"
    return f"a bug in that plugin: report it to its authors, or uninstall {info.source}"


def failure(kind: str, name: str, what: str, error: BaseException | None = None) -> PluginFailure:
    """The error for plugin ``name`` of ``kind`` having done ``what`` (``"returned None from
    build(...)"``): one line naming the plugin, where it comes from and what to do. With
    ``error`` (the plugin's exception, to chain as the cause), it says how to see its traceback."""
    info = _discover().get(kind, {}).get(normalize(name))
    if info is None:  # not (or no longer) registered: called through a monkeypatched lookup
        origin, advice = "origin unknown", "a bug in that plugin: report it to its authors"
    else:
        origin, advice = _origin(info), _advice(info)
    message = f"{kind} plugin '{name}' ({origin}) {what}; this is {advice}"
    if error is not None and not traceback_wanted():
        message += " (NASFRAME_TRACEBACK=1 shows its traceback)"
    return PluginFailure(message)


def error_line(e: BaseException) -> str:
    """``TypeError: what it says`` (its first line, at most 300 characters): a plugin's
    exception, as a message quotes it."""
    text = first_line(str(e))
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def shown(value: Any, width: int = 40) -> str:
    """``value`` for a message: its repr when short, else what it is (``a dict``)."""
    text = repr(value)
    if len(text) <= width and "\n" not in text:
        return text
    kind = type(value).__name__
    named = {"ndarray": "a NumPy array", "Tensor": "a tensor"}
    return named.get(kind) or f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _call_text(label: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    if label.endswith(")") and not args and not kwargs:  # shown as the caller wrote it
        return label
    parts = [shown(a, 20) for a in args] + [f"{k}={shown(v, 20)}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return f"{label}({text if len(text) <= 100 else text[:97] + '...'})"


def _ours(e: BaseException) -> bool:
    """Whether ``e`` is no bug of a plugin's: nasframe's own exception (a UserError the plugin
    raised or met, a stop signal), or memory running out (the user's sizes)."""
    if isinstance(e, UserError):
        return True
    module = type(e).__module__ or ""
    if module == "nasframe" or module.startswith("nasframe."):
        return True
    return isinstance(e, MemoryError | RuntimeError) and out_of_memory(e)


def _binds(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether ``fn`` can take ``args`` and ``kwargs`` (any arguments not given, allowed)."""
    try:
        inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


#: Words that, in the clause a key opens, make it a refusal of that key (``n must be positive``).
_REFUSAL = (
    r"must|should|cannot|can't|can\s+not|may\s+not|(?:has|have|needs?)\s+to|requires?|required"
    r"|invalid|not\s+(?:a\s+|an\s+)?(?:valid|supported|allowed)|out\s+of\s+range"
    r"|too\s+(?:large|small|big|long|short|many|few)"
)


@functools.lru_cache(maxsize=512)
def _naming(key: str) -> tuple[re.Pattern[str], ...]:
    """The ways a message names option ``key``, each with the key's own text as group ``key``."""
    k = rf"(?P<key>{re.escape(key)})"
    word = rf"(?<!\w){k}(?!\w)"
    ways = [
        rf"(?P<q>['\"`]){k}(?P=q)",  # quoted: 'size', "size", `size`
        rf"{word}\s*(?:=(?!=)|:(?!:))",  # given a value: size=3, lr: -1
        rf"\b(?:invalid|unknown|unsupported|unrecogni[sz]ed)\s+{word}",  # Invalid momentum value
        # opening the message or a clause that refuses it: n must be positive, got -1
        rf"(?:^|(?<=[.;:,!?])\s)\s*{word}(?:\s+\S*[^\s.;:,!?]){{0,4}}?\s+(?:{_REFUSAL})\b",
    ]
    if "_" in key or any(c.isdigit() for c in key):  # an identifier, never an everyday word
        ways.append(word)
    return tuple(re.compile(w, re.IGNORECASE | re.MULTILINE) for w in ways)


def named_option(message: str, options: Mapping[str, Any]) -> str | None:
    """The key of ``options`` that ``message`` names first, or None: a plugin's exception that
    names the user's option is the user's mistake, any other its own bug.

    A key counts as named where the message quotes it (``'size'``), gives it a value
    (``size=3``, ``lr: -1``), calls it invalid or unknown (``Invalid momentum value``), or opens a
    clause that refuses it (``n must be positive``, ``Nesterov momentum requires ...``); a key
    that is an identifier (``weight_decay``, ``t0``) counts wherever it stands as a word. A short
    everyday key in other words (``size mismatch for weight``, ``expected mode to be ...``) is
    the plugin's own text, not a refusal of the user's option."""
    found = []
    for key in options:
        text = str(key)
        if not text.strip():
            continue
        starts = [m.start("key") for way in _naming(text) for m in way.finditer(message)]
        if starts:
            found.append((min(starts), key))
    return min(found, key=lambda f: f[0])[1] if found else None


def call(
    kind: str,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    label: str | None = None,
    options: Mapping[str, Any] | None = None,
    where: str = "",
    blame: Callable[[Exception], str | None] | None = None,
    returns: tuple[Callable[[Any], bool], str] | None = None,
    passing: tuple[type[BaseException], ...] = (),
    calls: str | None = None,
) -> Any:
    """``fn(*args, **kwargs)``, a call into plugin ``name`` of ``kind``, with its failures told
    apart.

    The user's: a :class:`~nasframe.UserError` (or another nasframe error) the plugin raised, memory
    running out, an exception of ``passing`` (left to the caller), options the plugin's signature
    does not fit; and a TypeError, ValueError or RuntimeError that ``blame`` turns into a message
    (by default, a TypeError or ValueError that names a key of ``options``, the user's keyword
    arguments among ``kwargs``, reported as ``where: what``). Any other exception, arguments nasframe passes itself that the
    plugin does not take, or a result that ``returns`` (a check and what it expects) refuses, is
    the plugin's: a :class:`PluginFailure` naming it, where it comes from and what went wrong,
    with the plugin's exception as its cause. ``label``: how the call is shown (``build``);
    ``calls``: how nasframe calls it, said when it cannot be called so (default: how nasframe
    calls a plugin of ``kind``, :data:`CALLS`).
    """
    kwargs = dict(kwargs or {})
    options = dict(options or {})
    label = label or getattr(fn, "__name__", None) or name
    try:
        result = fn(*args, **kwargs)
    except Exception as e:
        if _ours(e) or isinstance(e, passing):
            raise
        said = f"{_call_text(label, args, kwargs)}: {error_line(e)}"
        if isinstance(e, TypeError) and not _binds(fn, args, kwargs):
            own = {k: v for k, v in kwargs.items() if k not in options}
            if _binds(fn, args, own):  # the plugin cannot take the user's options
                raise UserError(f"{where}: {kind.replace('_', ' ')} '{name}': {e}") from e
            raise failure(
                kind, name, f"failed in {said}; nasframe calls it as {calls or CALLS[kind]}", e
            ) from e
        if isinstance(e, (TypeError, ValueError, RuntimeError)):
            if blame is not None:
                told = blame(e)
            elif isinstance(e, RuntimeError):
                told = None
            else:
                told = f"{where}: {e}" if named_option(str(e), options) else None
            if told is not None:
                raise UserError(told) from e
        raise failure(kind, name, f"failed in {said}", e) from e
    if returns is not None and not returns[0](result):
        raise failure(
            kind,
            name,
            f"returned {shown(result)} from {_call_text(label, args, kwargs)}, not {returns[1]}",
        )
    return result


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
        if hasattr(obj, "__qualname__"):  # a class or function: where it is defined
            qual = f"{getattr(obj, '__module__', '?')}:{obj.__qualname__}"
        else:  # an instance: the module that registers it
            qual = f"{sys._getframe(1).f_globals.get('__name__', '?')}:{shown(obj)}"
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
            f"{kind} '{key}' is provided by several distributions: {sources}; uninstall one (in "
            f"a Python program, register('{kind}', '{key}', override=True) picks one for it)"
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
    info = _info(kind, name)
    obj = info.load()
    info.asked = True
    if not callable(obj):  # every kind is a class or a function
        raise failure(kind, info.name, f"is {shown(obj)}, not {WHAT[kind]}")
    return obj


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


def how_to_go_on(command: str, python: str) -> str:
    """The way to go on that a run prints: the ``nasframe ...`` ``command``, or, in a program
    whose runs use plugins registered in code (which the command line cannot find: those looked
    up by name, as a config's are), the ``python`` call that does the same, with the reason."""
    mine = [f"{p.kind} '{p.name}'" for p in plugins() if p.entry_point is None and p.asked]
    if not mine:
        return command
    return (
        f"{python} (in Python: {', '.join(mine[:3])}{', ...' if len(mine) > 3 else ''} "
        f"{'is' if len(mine) == 1 else 'are'} registered in code, not installed, so `{command}` "
        f"would not find {'it' if len(mine) == 1 else 'them'})"
    )


def failure_in_traceback(e: BaseException) -> PluginFailure | None:
    """The :class:`PluginFailure` for ``e`` if a loaded plugin's own code raised it, though
    nasframe did not call that code through :func:`call` (a strategy's method, an optimizer's
    ``step``, an op's ``forward``): the frame nearest to where it was raised that runs a
    plugin's own function or a method of its class names that plugin; failing that, one in the
    package of a single loaded plugin names that one. None for nasframe's own errors and
    torch's, and for a user's mistake (see :func:`_ours`)."""
    if _ours(e):
        return None
    loaded = [
        info
        for table in _discover().values()
        for info in table.values()
        if info.loaded and package(info.obj) not in ("", "nasframe", "torch", "builtins")
    ]
    codes = {code: info for info in loaded for code in _own_code(info.obj)}
    by_package: dict[str, list[PluginInfo]] = {}
    for info in loaded:
        by_package.setdefault(package(info.obj), []).append(info)
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    found = next((codes[f.f_code] for f in reversed(frames) if f.f_code in codes), None)
    if found is not None:
        mine = [f for f in frames if _package_of(f) == package(found.obj)] or frames
        what = f"failed in {mine[-1].f_code.co_name}: {error_line(e)}"
        return failure(found.kind, found.name, what, e)
    for frame in reversed(frames):  # raised in a helper of a plugin package, not a plugin's own
        owners = by_package.get(_package_of(frame))
        if owners is None:
            continue
        if len(owners) == 1:
            what = f"failed in {frame.f_code.co_name}: {error_line(e)}"
            return failure(owners[0].kind, owners[0].name, what, e)
        names = ", ".join(f"{o.kind} '{o.name}'" for o in owners)
        message = (
            f"code of package {_package_of(frame)} (which provides the plugins {names}) failed "
            f"in {frame.f_code.co_name}: {error_line(e)}; this is {_advice(owners[0])}"
        )
        if not traceback_wanted():
            message += " (NASFRAME_TRACEBACK=1 shows its traceback)"
        return PluginFailure(message)
    return None


def package(obj: Any) -> str:
    """The top-level package an object (a plugin's class or function) is defined in:
    ``nasframe`` for the built-ins, as told apart from a plugin's."""
    return (getattr(obj, "__module__", None) or "").split(".")[0]


def _package_of(frame: Any) -> str:
    return str(frame.f_globals.get("__name__", "")).split(".")[0]


def _own_code(obj: Any) -> list[Any]:
    """The code objects of a plugin's own function, or of the functions its class and the
    classes it derives from define outside nasframe and torch (a subclass of ``nasframe.ASNG``
    owns the methods it overrides)."""
    if not isinstance(obj, type):
        code = getattr(obj, "__code__", None)
        return [code] if code is not None else []
    codes = []
    for klass in obj.__mro__:
        if package(klass) in ("nasframe", "torch", "builtins", "typing"):
            continue
        for value in vars(klass).values():
            function = getattr(value, "__func__", value)  # classmethod, staticmethod
            code = getattr(function, "__code__", None)
            if code is not None:
                codes.append(code)
    return codes
