"""The plugin manager: the core's defaults, built-in plugins, entry points, and a plugins dir.

Where plugins come from:
- the core's defaults (registry_core/default_plugins.py), always registered, and the access
  policy: registry_core/index/auth.py, or registry_core/open_access.py when auth is off;
- modules in `--plugins-dir DIR` (every `*.py` there), loaded because the operator pointed at them;
- names listed under `plugins:` in registry.yaml, each found as (in this order) an installed
  package's entry point in the group `registry_core`, or a built-in module in plugins/.
An unknown name, a hook implementation with a misspelled name (pm.check_pending), or a plugin
config section that does not match the plugin's schema stops start-up with a clear message.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import threading
import weakref
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

import jsonschema
import pluggy

from registry_core import hookspecs
from registry_core.meta.documents import DocumentInvalid

ENTRY_POINT_GROUP = "registry_core"
BUILTIN_PACKAGE = "registry_core.builtin_plugins"
DEFAULT_PLUGINS = ("registry_core.default_plugins",)
# The access policy: the Index's (accounts, tokens, collaborators) or, with auth off, an open one.
ACCESS_PLUGINS = {True: "registry_core.index.auth", False: "registry_core.open_access"}


class PluginError(Exception):
    """A plugin could not be found, loaded or validated."""


@dataclass
class PluginInfo:
    name: str
    source: str        # "default", "built-in", "entry point <dist>", "plugins dir <path>"
    hooks: list[str]


def make_plugin_manager(enabled=(), plugins_dir: str | None = None, auth: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("registry_core")
    pm.add_hookspecs(hookspecs)
    pm.sources = {}
    for module_name in DEFAULT_PLUGINS + (ACCESS_PLUGINS[auth],):
        _register(pm, importlib.import_module(module_name), module_name.rsplit(".", 1)[-1], "default")
    if plugins_dir:
        for path in sorted(Path(plugins_dir).glob("*.py")):
            _register(pm, _load_file(path), path.stem, f"plugins dir {path}")
    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name in enabled:
        if pm.get_plugin(name) is not None:
            continue
        if name in points:
            point = points[name]
            dist = getattr(point, "dist", None)
            _register(pm, point.load(), name, f"entry point {dist.name if dist else point.value}")
        elif importlib.util.find_spec(f"{BUILTIN_PACKAGE}.{name}") is not None:
            _register(pm, importlib.import_module(f"{BUILTIN_PACKAGE}.{name}"), name, "built-in")
        else:
            raise PluginError(f"unknown plugin {name!r}: it is not a built-in plugin in plugins/, no "
                              f"installed package has an entry point {name!r} in the group "
                              f"{ENTRY_POINT_GROUP!r}, and no --plugins-dir has {name}.py")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"{e} (known hooks: {', '.join(hook_names())})") from None
    return pm


def _load_file(path: Path):
    module_name = f"registry_core_plugins_dir.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise PluginError(f"cannot load plugin {path}: {type(e).__name__}: {e}") from e
    return module


def _register(pm: pluggy.PluginManager, module, name: str, source: str) -> None:
    try:
        pm.register(module, name=name)
    except (pluggy.PluginValidationError, ValueError) as e:
        raise PluginError(f"plugin {name} ({source}): {e}") from None
    pm.sources[name] = source


def hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "registry_core_spec"))


def describe(pm: pluggy.PluginManager) -> list[PluginInfo]:
    result = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        result.append(PluginInfo(name=name, source=pm.sources.get(name, "?"), hooks=hooks))
    return result


def validate_plugin_config(pm: pluggy.PluginManager, plugin_config: dict, source: str) -> None:
    """Check each `pluginConfig` section against the schema its plugin declares, with the formats
    plugins declare (`plugin_config_formats`) beside jsonschema's own."""
    schemas: dict = {}
    for declared in pm.hook.plugin_config_schema():
        schemas.update(declared or {})
    formats = format_checker(pm)
    for section, value in (plugin_config or {}).items():
        if section not in schemas:
            raise DocumentInvalid(source, f"pluginConfig/{section}: no loaded plugin declares a config "
                                  f"section {section!r} (declared: {', '.join(sorted(schemas)) or 'none'})")
        validator_class = jsonschema.validators.validator_for(schemas[section])
        validator = validator_class(schemas[section], format_checker=formats)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(["pluginConfig", section, *map(str, error.absolute_path)])
            because = f" ({error.cause})" if error.cause is not None else ""
            raise DocumentInvalid(source, f"{where}: {error.message}{because}")


def format_checker(pm: pluggy.PluginManager) -> jsonschema.FormatChecker:
    """jsonschema's formats and those the plugins declare; a plugin's check sees strings only
    (a value of another type is for the schema's `type` to refuse)."""
    checker = jsonschema.FormatChecker()
    for declared in pm.hook.plugin_config_formats():
        for name, check in (declared or {}).items():
            def strings_only(value, check=check) -> bool:
                if isinstance(value, str):
                    check(value)
                return True
            checker.checks(name, raises=ValueError)(strings_only)
    return checker


class Hooks:
    """The one way the core calls hooks: `hooks.<name>(**kwargs)` answers as pluggy does (a
    firstresult hook: the first answer that is not None; any other: the list of answers that are
    not None). Made once, when a Registry is built (its plugins are fixed then):

    - a hook no plugin implements answers None or [] without a call (`implemented(name)` says
      which), so hooks nobody uses cost nothing on the request path;
    - a hook one plugin implements (not as a wrapper) is a plain call of that function: pluggy's
      dispatch costs about 1.7 µs a call here, a third of authorizing a request with a token
      (bench/profiles/notes.md);
    - `each(name)`: the implementations one by one, in pluggy's order (the last registered
      first), as calls of keyword arguments, for callers that stop at a refusal or go on past
      a failure (before_pull, track_event)."""

    def __init__(self, pm: pluggy.PluginManager):
        self._each: dict[str, list[tuple[str, Callable[..., object]]]] = {}
        for name in dir(pm.hook):
            caller = getattr(pm.hook, name)
            if isinstance(caller, pluggy.HookCaller) and caller.spec is not None:
                self._each[name] = [(impl.plugin_name, _call_of(impl)) for impl in reversed(caller.get_hookimpls())]
                setattr(self, name, self._direct(caller))

    def implemented(self, name: str) -> bool:
        return bool(self._each[name])

    def each(self, name: str) -> list[tuple[str, Callable[..., object]]]:
        """(plugin name, call) of each implementation of hook `name`, in the order pluggy calls them."""
        return self._each[name]

    @staticmethod
    def _direct(caller) -> Callable[..., object]:
        implementations = caller.get_hookimpls()
        firstresult = bool(caller.spec.opts.get("firstresult"))
        if not implementations:
            return (lambda **kwargs: None) if firstresult else (lambda **kwargs: [])
        if len(implementations) != 1 or implementations[0].wrapper or implementations[0].hookwrapper:
            return caller
        call = _call_of(implementations[0])
        if firstresult:
            return call

        def listed(**kwargs):
            answer = call(**kwargs)
            return [] if answer is None else [answer]
        return listed


def _call_of(implementation) -> Callable[..., object]:
    """The implementation as a call of keyword arguments (it may take fewer than the hook offers)."""
    function, argnames = implementation.function, implementation.argnames
    return lambda **kwargs: function(*[kwargs[name] for name in argnames])


def per_registry(make: Callable[[object], object]) -> Callable[[object], object]:
    """Decorate `make(registry)` so that it runs once per Registry object: a plugin's state (its
    settings, service, counters) for the registry whose hooks call it, made on first use and
    dropped with the registry. Tests build several registries in one process, so module globals
    would mix them up."""
    made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    @functools.wraps(make)
    def of(registry):
        try:
            return made[registry]
        except KeyError:
            with lock:
                if registry not in made:
                    made[registry] = make(registry)
                return made[registry]
    return of
