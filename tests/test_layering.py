"""Routes parse and shape; services decide; no service sees bottle. The services, the metadata
store, the storage drivers, the Index's services, the access decisions (access.py) and the wiring
that builds them (app.py) import bottle neither themselves nor through any module of
registry_core they import, lazily imported ones included: the web side (web.py, web_access.py,
web_app.py, the *routes modules, index/api.py) reads the request and hands them plain values."""

from __future__ import annotations

import ast

from tests.test_imports import ROOT, import_graph

WEB_FRAMEWORK = "bottle"


def imports_of(source: str) -> set[str]:
    """The top-level packages `source` imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def module_path(name: str):
    path = ROOT.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_web_side(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.endswith("routes") or last in ("api", "commands")


def must_not_see_the_web(name: str) -> bool:
    if name in ("registry_core.app", "registry_core.access", "registry_core.context",
                "registry_core.events", "registry_core.errors"):
        return True
    for package in ("registry_core.registry", "registry_core.meta", "registry_core.storage",
                    "registry_core.index"):
        if name == package or name.startswith(package + "."):
            return not is_web_side(name)
    return False


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """`start` and every module of registry_core it imports, directly or through others."""
    seen, todo = {start}, [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def web_reached(graph: dict[str, set[str]], framework_users: set[str]) -> dict[str, list[str]]:
    """For each module that must not see the web: the modules it reaches that import the framework."""
    found = {}
    for name in sorted(graph):
        if must_not_see_the_web(name):
            users = sorted(reached(graph, name) & framework_users)
            if users:
                found[name] = users
    return found


def test_services_the_access_decisions_and_the_wiring_never_import_bottle():
    graph = import_graph()
    framework_users = {name for name in graph if WEB_FRAMEWORK in imports_of(module_path(name).read_text())}
    checked = [name for name in graph if must_not_see_the_web(name)]
    assert {"registry_core.app", "registry_core.access", "registry_core.registry.manifests",
            "registry_core.registry.blob_links", "registry_core.meta.store", "registry_core.storage.s3",
            "registry_core.index.accounts", "registry_core.index.policy",
            "registry_core.index.community_services"} <= set(checked)
    assert "registry_core.registry.routes" in framework_users  # the check reads real imports
    assert web_reached(graph, framework_users) == {}


def test_an_import_of_bottle_anywhere_in_a_module_is_found():
    assert imports_of("import bottle") == {"bottle"}
    assert imports_of("def f():\n    from bottle import request\n") == {"bottle"}
    assert imports_of("import os, bottle.ext as ext") == {"os", "bottle"}
    assert imports_of("from . import bottle") == set()  # a module of the package, not the framework


def test_a_service_that_reaches_bottle_through_another_module_is_found():
    graph = {"registry_core.app": {"registry_core.web"}, "registry_core.web": set(),
             "registry_core.registry.routes": {"registry_core.web"}}
    assert web_reached(graph, {"registry_core.web"}) == {"registry_core.app": ["registry_core.web"]}
