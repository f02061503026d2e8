"""The engines a run can choose: the built-in ones, and any a deployment adds by naming them in
MOVIELENS_ENGINES ("package.module:ENGINE,..."), each an object with protocol.Engine's attributes."""
import functools
import importlib
import os

from movielens_emr.config.params import DEFAULT_ENGINE

ENGINES_ENV = "MOVIELENS_ENGINES"
BUILT_IN = {DEFAULT_ENGINE: "movielens_emr.engine.similarity.engine:ENGINE",
            "als": "movielens_emr.engine.als.engine:ENGINE"}
ENGINE_ATTRIBUTES = ("name", "stage_names", "shipped_files", "prepare", "job", "collect", "figures")


class UnknownEngine(ValueError):
    """An engine name that nothing registered, or a MOVIELENS_ENGINES entry that is not an engine."""


def engine_names(environ=None):
    """The registered engines' names, the built-in ones first."""
    return tuple(_engine_locations(_extra_engines(environ)))


def engine_named(name, environ=None):
    """The registered Engine called name; UnknownEngine naming the registered ones for any other."""
    locations = _engine_locations(_extra_engines(environ))
    if name not in locations:
        raise UnknownEngine(f"engine: {name!r} is not registered (registered: {', '.join(locations)}; "
                            f"more are added by {ENGINES_ENV})")
    return _load(locations[name], name)


def _extra_engines(environ):
    return (os.environ if environ is None else environ).get(ENGINES_ENV, "")


@functools.cache
def _engine_locations(extra):
    """{name: "module:attribute"}: the built-in engines, then MOVIELENS_ENGINES' (named by their own name)."""
    locations = dict(BUILT_IN)
    for location in filter(None, (part.strip() for part in extra.split(","))):
        engine = _load(location, None)
        if engine.name in locations and locations[engine.name] != location:
            raise UnknownEngine(f"{ENGINES_ENV}: {location} is called {engine.name!r}, "
                                f"as {locations[engine.name]} is")
        locations[engine.name] = location
    return locations


@functools.cache
def _load(location, expected_name):
    module_name, _, attribute = location.partition(":")
    try:
        engine = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UnknownEngine(f"{ENGINES_ENV}: cannot load {location!r} ({error})") from error
    missing = [name for name in ENGINE_ATTRIBUTES if not hasattr(engine, name)]
    if missing:
        raise UnknownEngine(f"{ENGINES_ENV}: {location} is not an engine: it has no {', '.join(missing)}")
    if expected_name is not None and engine.name != expected_name:
        raise UnknownEngine(f"{location} is called {engine.name!r}, not {expected_name!r}")
    return engine
