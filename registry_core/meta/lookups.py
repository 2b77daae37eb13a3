"""Path lookups in libgit2 trees that do not keep their path alive.

pygit2 (1.16 to 1.21, the newest on PyPI) turns a path argument into a C string with
`pgit_borrow_fsdefault`, which takes a new reference from `PyOS_FSPath` and never gives it back:
every `tree[path]`, `path in tree` and `TreeBuilder.insert(name, ...)` keeps its path string for
the life of the process. Request paths are built per request, so a worker serving manifest GETs
kept two paths (~300 bytes) per request: 20 MiB every 70,000 requests, without bound
(bench/soak.py).

`call_with_path` passes pygit2 a private copy of the path and, when pygit2 kept a reference to
it, gives that reference back. The copy is referenced by nothing else, so its reference count
moves only through this call; should pygit2 stop keeping it, nothing is given back.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Callable, TypeVar

import pygit2

T = TypeVar("T")

_release = ctypes.pythonapi.Py_DecRef
_release.argtypes = [ctypes.py_object]
_release.restype = None
_MISSING = object()


def call_with_path(call: Callable[[str], T], path: str) -> T:
    """`call(path)` for a pygit2 call that takes `path` as a file-system path, without pygit2
    keeping the string alive. A KeyError from `call` is raised again after the reference is settled."""
    if len(path) < 2:
        return call(path)  # "" and one-character strings are shared singletons: keeping one costs nothing
    key = path[:1] + path[1:]  # a new string object, referenced only here
    held = sys.getrefcount(key)
    try:
        result = call(key)
    except KeyError:
        result = _MISSING  # (the KeyError, which holds `key`, is gone once this block ends)
    if sys.getrefcount(key) > held:
        _release(key)
    if result is _MISSING:
        raise KeyError(path)
    return result


def tree_entry(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    """The object at `path` (a slash-separated path) under `tree`, or None."""
    try:
        return call_with_path(tree.__getitem__, path)
    except KeyError:
        return None
