"""Policy kinds researchers bring: an installed package's entry point or ``register_policy``.

A plugin kind is a name bound to a *factory*, ``factory(env, seed, **kwargs) -> Policy``. It
comes from one of two places, and from nowhere else:

- an installed distribution's entry point in the group :data:`ENTRY_POINT_GROUP`
  (``[project.entry-points."shopgym.policies"] my_kind = "my_pkg:MyPolicy"``), loaded the
  first time that kind is used;
- :func:`register_policy` called from Python before the runner's API.

A config or a run directory only *names* a kind; the code behind the name is the one the
installed package's metadata or the calling program registered, so nothing is imported
because a file says so. The protocol (what ``predict``, ``update``, ``learn``, ``save`` and
``load`` receive) is documented in ``docs/POLICIES.md``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

#: The entry-point group installed packages declare their policy kinds in.
ENTRY_POINT_GROUP = "shopgym.policies"
#: How a plugin kind trains before evaluation (its factory's ``training`` attribute; default ``episodes``).
TRAINING_MODES = ("none", "episodes", "timesteps")
#: Names a plugin kind may take (the config's policy-name rule: no path separators).
_KIND_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
#: Where the protocol is documented (named in every message about plugins).
PROTOCOL_DOC = "docs/POLICIES.md"

PolicyFactory = Callable[..., Any]
Training = Literal["none", "episodes", "timesteps"]


class PluginError(ValueError):
    """A plugin kind is badly registered, cannot be loaded or does not follow the protocol."""


@dataclass(frozen=True)
class PolicyPlugin:
    """A registered policy kind: its factory and where it came from (for messages and workers)."""

    name: str
    factory: PolicyFactory
    origin: str
    """``entry point <dist>: <module:attr>`` or ``register_policy <module:qualname>``."""

    @property
    def training(self) -> Training:
        """How the runner trains it: ``timesteps`` (``learn``), ``episodes`` (``update``) or ``none``."""
        mode = getattr(self.factory, "training", "episodes")
        if mode not in TRAINING_MODES:
            raise PluginError(
                f"policy kind {self.name!r} ({self.origin}): training = {mode!r} not allowed; "
                f"one of {list(TRAINING_MODES)} (see {PROTOCOL_DOC})"
            )
        return "timesteps" if mode == "timesteps" else "none" if mode == "none" else "episodes"

    @property
    def reproducible(self) -> bool:
        """Whether the same seed gives bit-identical results (the regression gate then compares exactly)."""
        return bool(getattr(self.factory, "reproducible", self.training != "timesteps"))

    def load(self, directory: Path, env: Any = None) -> Any:
        """Read a policy this kind saved, through the factory's ``load(directory, env)``."""
        loader = getattr(self.factory, "load", None)
        if not callable(loader):
            raise PluginError(
                f"policy kind {self.name!r} ({self.origin}) has no load(directory, env); it cannot read "
                f"back what it saved (see {PROTOCOL_DOC})"
            )
        return loader(directory, env)


_registered: dict[str, PolicyPlugin] = {}
_entry_points: dict[str, metadata.EntryPoint] | None = None


def _builtin_kinds() -> tuple[str, ...]:
    from policies.registry import BUILTIN_KINDS

    return BUILTIN_KINDS


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Register ``factory`` as policy kind ``name`` for this process (call before the runner).

    ``factory(env, seed, **kwargs)`` returns a policy following the protocol of
    ``docs/POLICIES.md``; a class with a ``load(directory, env)`` classmethod is the usual form.
    Built-in kinds cannot be replaced; re-registering a plugin name replaces it.
    """
    if not isinstance(name, str) or not _KIND_PATTERN.match(name):
        raise PluginError(
            f"policy kind name {str(name)[:80]!r} not allowed; a letter, then up to 63 letters, digits, "
            "'_', '.' or '-'"
        )
    if name in _builtin_kinds():
        raise PluginError(f"policy kind {name!r} is built in; register your policy under another name")
    if not callable(factory):
        raise PluginError(f"policy kind {name!r}: the factory must be callable, got {type(factory).__name__}")
    _registered[name] = PolicyPlugin(name, factory, f"register_policy {_reference(factory)}")


def unregister_policy(name: str) -> None:
    """Forget a kind registered with :func:`register_policy` (entry points stay installed)."""
    _registered.pop(name, None)


def _reference(factory: PolicyFactory) -> str:
    """``module:qualname`` of a factory (how worker processes find it again)."""
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', type(factory).__name__)}"


def installed_entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points of group :data:`ENTRY_POINT_GROUP` by name (read from metadata; nothing imported)."""
    global _entry_points
    if _entry_points is None:
        found: dict[str, metadata.EntryPoint] = {}
        for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if _KIND_PATTERN.match(point.name) and point.name not in _builtin_kinds():
                found.setdefault(point.name, point)
        _entry_points = found
    return _entry_points


def refresh_entry_points() -> None:
    """Forget the cached entry points (after installing a plugin package into a running process)."""
    global _entry_points
    _entry_points = None


def plugin_kinds() -> tuple[str, ...]:
    """Every plugin kind this process knows: registered from Python, then installed entry points."""
    return tuple(dict.fromkeys([*_registered, *installed_entry_points()]))


def get_plugin(name: str) -> PolicyPlugin | None:
    """The plugin of kind ``name`` (loading its entry point on first use), or ``None``."""
    if name in _registered:
        return _registered[name]
    point = installed_entry_points().get(name)
    if point is None:
        return None
    dist = point.dist.name if point.dist is not None else "?"
    try:
        factory = point.load()
    except Exception as error:  # a broken plugin package: one line naming it
        raise PluginError(
            f"policy kind {name!r}: entry point {point.value!r} of {dist} failed to load: "
            f"{type(error).__name__}: {str(error)[:200]}"
        ) from None
    if not callable(factory):
        raise PluginError(f"policy kind {name!r}: entry point {point.value!r} of {dist} is not callable")
    plugin = PolicyPlugin(name, factory, f"entry point {dist}: {point.value}")
    _registered[name] = plugin
    return plugin


def unknown_kind_message(kind: Any) -> str:
    """What an unknown kind's error says: the built-in and registered kinds, and how to register one."""
    plugins = list(plugin_kinds())
    registered = ", ".join(plugins[:8]) + (f" and {len(plugins) - 8} more" if len(plugins) > 8 else "")
    return (
        f"unknown policy kind {str(kind)[:80]!r}; built-in: {', '.join(_builtin_kinds())}; registered: "
        f"{registered or 'none'}; register one by entry point (group {ENTRY_POINT_GROUP!r}) or "
        f"shopgym.register_policy (see {PROTOCOL_DOC})"
    )


def worker_references() -> list[tuple[str, str]]:
    """(kind, ``module:qualname``) of every kind registered from Python, to re-register in workers."""
    return [
        (name, _reference(plugin.factory))
        for name, plugin in _registered.items()
        if plugin.origin.startswith("register_policy")
    ]


def register_references(references: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
    """Re-register the parent's Python-registered kinds in a worker process.

    The references come from the parent process's own registry (:func:`worker_references`),
    never from a file. A factory that is not importable by name (a lambda, a local class) is
    an error naming the kind.
    """
    for name, reference in references:
        if name in _registered:
            continue
        module, _, qualname = reference.partition(":")
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            raise PluginError(
                f"policy kind {name!r} was registered with {reference}, which a worker process cannot "
                "import; register a module-level class or function, or run with workers: 1"
            ) from None
        register_policy(name, target)
