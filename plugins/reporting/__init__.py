"""Split roles that share what they know: the built-in plugin `reporting` (`plugins: [reporting]`).

On a registry-role node with its own store (`pluginConfig.reporting.index` and `node`): every
manifest push, tag removal and manifest delete becomes a report, written to a durable outbox
under `<store>/state/reports/` before the request is answered and delivered in order, signed
with the node's key, to the Index by one process of the store (node.py, signing.py); and the
catalog asks the Index which repositories a token's user may see (the node keeps no accounts).

On the Index (`pluginConfig.reporting.nodes`: the nodes it trusts and their public keys):
`POST /api/v1/nodes/reports` records each report in meta.git, so search, stars, visibility,
collaborators and the UI cover every node, and `POST /api/v1/nodes/access` answers the nodes'
access questions (receiver.py, routes.py). `registry node-key` prints a node's public key
(commands.py). Settings: settings.py.
"""

from __future__ import annotations

import logging

from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry

from .settings import SCHEMA, Settings

log = logging.getLogger("registry_core.reporting")


def settings_of(registry) -> Settings:
    return Settings.from_config(registry.config.plugin_config.get("reporting"))


@per_registry
def reporter(registry):
    """The node side of `registry`, or None where this process does not report: not a
    registry-role node, or no `index` configured."""
    settings = settings_of(registry)
    if settings.index and registry.config.role == "registry":
        from .node import Reporter
        return Reporter(registry, settings)
    return None


def serves_index(registry) -> bool:
    return registry.config.role in ("all", "index") and registry.config.auth.enabled


@hookimpl
def plugin_config_schema():
    return {"reporting": SCHEMA}


@hookimpl
def plugin_config_formats():
    """A node's public key is read whole at start-up: a wrong one stops it with one line."""
    from .signing import public_key_file, public_key_text
    return {"node-public-key": public_key_text, "node-key-file": public_key_file}


@hookimpl
def register_routes(app, registry):
    if serves_index(registry):
        from .receiver import NodeReports
        from .routes import NodesApi
        NodesApi(NodeReports(registry, settings_of(registry))).register(app)


@hookimpl
def startup(registry):
    settings = settings_of(registry)
    if settings.index and registry.config.role != "registry":
        log.warning("reporting: pluginConfig.reporting.index is set, but this process serves role %s: "
                    "only registry-role nodes report to an Index", registry.config.role)
    found = reporter(registry)
    if found is not None:
        registry.access.visible_to_account = found.visible
        found.worker.start()


@hookimpl
def track_event(event, registry):
    found = reporter(registry)
    if found is not None:
        found.record(event)


@hookimpl
def register_commands(cli):
    from .commands import register
    register(cli)
