"""/healthz, /readyz and /metrics: served in every role, without the registry's own auth.

- /healthz: 200 `{"status": "ok"}` whenever the process answers; touches nothing of the store.
- /readyz: the checks of health.py; 200 `{"status": "ready", "checks": {…}}`, or 503
  UNAVAILABLE in the spec's error shape, its detail naming each check's result and reason.
- /metrics: Prometheus text (metrics.py). `metrics:` in registry.yaml may turn it off (404),
  keep it to loopback clients (403 DENIED to others) or ask for a bearer token (401).
"""

from __future__ import annotations

import hmac
import ipaddress

import bottle

from registry_core.errors import RegistryError
from registry_core.observability.health import readiness
from registry_core.observability.metrics import Metrics
from registry_core.web import RegistryErrors, json_response

HEALTH_PATH, READY_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"


def build_observability_app(registry, metrics: Metrics) -> bottle.Bottle:
    app = bottle.Bottle()
    app.install(RegistryErrors())
    app.route(HEALTH_PATH, ["GET", "HEAD"], lambda: json_response({"status": "ok"}))
    app.route(READY_PATH, ["GET", "HEAD"], lambda: ready(registry))
    if registry.config.metrics.enabled:
        app.route(METRICS_PATH, "GET", lambda: scrape(registry.config.metrics, metrics))
    return app


def ready(registry) -> bottle.HTTPResponse:
    checks = readiness(registry)
    results = {check.name: "ok" if check.ok else check.reason for check in checks}
    failing = [check for check in checks if not check.ok]
    if failing:
        raise RegistryError("UNAVAILABLE", "not ready: " + "; ".join(f"{check.name}: {check.reason}"
                                                                     for check in failing),
                            detail={"failing": [check.name for check in failing], "checks": results})
    return json_response({"status": "ready", "checks": results})


def scrape(settings, metrics: Metrics) -> bottle.HTTPResponse:
    environ = bottle.request.environ
    if settings.loopback_only and not is_loopback(environ.get("REMOTE_ADDR")):
        raise RegistryError("DENIED", "/metrics answers only clients on this machine (metrics.loopbackOnly "
                            "in registry.yaml); scrape it from 127.0.0.1 or ::1")
    if settings.bearer_token is not None and not bearer_matches(environ.get("HTTP_AUTHORIZATION"),
                                                                settings.bearer_token):
        raise RegistryError("UNAUTHORIZED", "/metrics needs the bearer token of metrics.bearerToken in "
                            "registry.yaml: send `Authorization: Bearer <token>`",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    text, content_type = metrics.exposition()
    return bottle.HTTPResponse(text, status=200, headers={"Content-Type": content_type})


def is_loopback(address: str | None) -> bool:
    try:
        found = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(found, "ipv4_mapped", None)  # ::ffff:127.0.0.1, a dual-stack listener's IPv4 client
    return (mapped or found).is_loopback


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether `header` is `Bearer <token>` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
