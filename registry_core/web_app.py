"""The WSGI application of one worker process: the routes of its roles over a `Registry`, the
web side of access (`registry.requests`, web_access.RequestAccess), and the error answers of
everything, bottle's own included, in the spec's JSON shape.
"""

from __future__ import annotations

import json

import bottle

from registry_core.web import ErrorsAsJson
from registry_core.web_access import RequestAccess

_CODES_BY_STATUS = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 405: "UNSUPPORTED",
                    413: "PAYLOAD_TOO_LARGE", 416: "RANGE_INVALID", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


def _json_error(error: bottle.HTTPError) -> str:
    """Bottle's own errors answer in the spec's JSON too (bottle would send an HTML page): an
    unrouted path (404), a method the path does not take (405), an HTTPError a plugin's route
    raised (`bottle.abort(403, "…")`: its text is the message)."""
    status = error.status_code
    if status == 405:
        message = f"{bottle.request.method} is not supported on {bottle.request.path}"
    elif status == 404:
        message = f"nothing is served at {bottle.request.path}"
    else:
        message = error.body if isinstance(error.body, str) and error.body else error.status_line
    bottle.response.content_type = "application/json; charset=utf-8"
    bottle.response.set_header("Docker-Distribution-Api-Version", "registry/2.0")
    return json.dumps({"errors": [{"code": _CODES_BY_STATUS.get(status, "UNKNOWN"), "message": message}]})


def request_access(registry) -> RequestAccess:
    """The web side of `registry.access`, with the request hooks as plain calls of the request."""
    hooks = registry.hooks

    def hook_of(name: str):
        if not hooks.implemented(name):
            return None
        call = getattr(hooks, name)
        return lambda request: call(request=request, registry=registry)

    return RequestAccess(registry.access, registry.config.public_url,
                         actor_from_request=hook_of("actor_from_request"),
                         filter_request=hook_of("filter_request"))


def build_app(registry):
    """The WSGI application of one worker process, for the roles in `config.role`: the bottle app
    inside `ErrorsAsJson`, so that every failure, on any route, answers JSON, inside
    `ObservedRequests` (request ids, metrics, the access log; registry_core/observability/).
    `registry` is a `registry_core.app.Registry`; its `requests` is set here, before any route or
    plugin hook that asks it is called."""
    from registry_core.observability.metrics import Metrics
    from registry_core.observability.middleware import JsonAccessLog, ObservedRequests
    from registry_core.observability.routes import build_observability_app
    from registry_core.registry.routes import build_registry_app

    role = registry.config.role
    registry.requests = requests = request_access(registry)
    root = bottle.Bottle()
    root.config["catchall"] = False  # what the routes do not answer goes to ErrorsAsJson
    # Plugins' routes first: bottle tries routes in the order they were added, and the core's
    # `/api/v1/repositories/<name:path>` would otherwise take `…/<name>/webhooks` as a name.
    registry.hooks.register_routes(app=root, registry=registry)
    if role in ("all", "registry"):
        root.merge(build_registry_app(registry))
    if role in ("all", "index") and registry.config.auth.enabled:
        from registry_core.index.routes import build_index_app
        from registry_core.ui.routes import build_ui_app
        root.merge(build_index_app(registry))
        root.merge(build_ui_app(registry))  # after the API's routes: it never takes a /v2/ or /api/ path
    metrics = Metrics(registry)
    root.merge(build_observability_app(registry, metrics))  # /healthz, /readyz, /metrics: in every role
    if registry.hooks.implemented("filter_request"):
        root.add_hook("before_request", lambda: requests.filter_request(bottle.request))
    root.default_error_handler = _json_error
    registry.hooks.startup(registry=registry)
    access_log = JsonAccessLog() if registry.config.access_log == "json" else None
    return ObservedRequests(ErrorsAsJson(root), metrics, access_log)
