"""Webhooks after a push: the built-in plugin `webhooks` (`plugins: [webhooks]` in registry.yaml).

Per-repository hooks managed by the repository's admins (routes.py, definitions.py), registry-wide
endpoints in `pluginConfig.webhooks` (settings.py); every event a hook wants is recorded in a
durable outbox under `<store>/state/webhooks/` before the request is answered (service.py,
outbox.py) and delivered, signed, in order per hook, with retries (worker.py), by one process per
store beside the server's workers (delivery.py), woken through a doorbell (doorbell.py); secrets
are sealed with a key outside git (sealing.py); targets on private networks are refused
(targets.py). Payload formats: payloads.py; `registry webhook …`: commands.py; the section of the
web UI's repository settings page: ui.py.
Written against docs/plugins.md only.
"""

from __future__ import annotations


from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry

from .delivery import DeliveryProcess
from .routes import WebhooksApi
from .service import Webhooks
from .settings import SCHEMA


@per_registry
def service(registry) -> Webhooks:
    """The webhooks of `registry`."""
    return Webhooks.of(registry)


@per_registry
def delivery_process(registry) -> DeliveryProcess:
    """What starts the store's delivery process from this server process when it is its turn."""
    webhooks = service(registry)
    return DeliveryProcess(webhooks.outbox, webhooks.settings, webhooks.spec)


@hookimpl
def plugin_config_schema():
    return {"webhooks": SCHEMA}


@hookimpl
def register_routes(app, registry):
    WebhooksApi(registry, service(registry)).register(app)


@hookimpl
def startup(registry):
    delivery_process(registry).start()


@hookimpl
def track_event(event, registry):
    service(registry).record(event)


@hookimpl
def register_commands(cli):
    from .commands import register
    register(cli)


@hookimpl
def ui_settings_sections(repository, registry):
    from .ui import WebhooksSection
    return WebhooksSection(service(registry), repository).section()
