"""`registry webhook add|list|remove|deliveries|redeliver`: a store's hooks from the command line,
like `registry repo` (no server needed; whoever can write the store administers it). Each change
is a commit authored by the operating-system user, or by `--as NAME`. A running server's delivery
process sends what these commands queue (a redelivery) at once: they ring its doorbell.

The command is there when the configuration (`$REGISTRY_CONFIG`, or ./registry.yaml) enables the
plugin: `plugins: [webhooks]`.
"""

from __future__ import annotations

import functools
import os
import sys

import click

from registry_core.command_line import emit, repository_name, store_command
from registry_core.context import Context

from .routes import delivery_view
from .settings import EVENTS, FORMATS


class Store:
    """The webhooks of one store, and who is acting on it."""

    def __init__(self, config, acting: str):
        from registry_core.app import Registry

        from . import service

        if not os.path.isdir(os.path.join(config.store, "meta.git")):
            raise click.ClickException(f"no store in {config.store}: give --store or --config")
        self.registry = Registry(config)
        self.webhooks = service(self.registry)
        self.context = Context(actor=acting, user_agent="registry-cli")


def on_store(function):
    """The core's store_command (--store/--config/--as, errors as one line) with the repository
    NAME checked and known: the command gets `store` and `name`."""
    @store_command(Store)
    @functools.wraps(function)
    def with_repository(store: Store, name: str, **kwargs):
        name = repository_name(name)
        if not store.webhooks.definitions.repository_exists(name):
            raise click.ClickException(f"repository {name} is not known to this registry")
        return function(store=store, name=name, **kwargs)
    return with_repository


def _hook(store: Store, name: str, hook_id: str) -> dict:
    document = store.webhooks.definitions.get(name, hook_id)
    if document is None:
        raise click.ClickException(f"{name} has no webhook {hook_id}")
    return document


def register(cli) -> None:
    from .definitions import view

    @cli.group()
    def webhook():
        """Add, list and remove a repository's webhooks; see and redeliver their deliveries."""

    @webhook.command("add")
    @click.argument("name")
    @click.argument("url")
    @click.option("--event", "events", multiple=True, type=click.Choice(EVENTS),
                  help="An event to send (repeatable) [default: push].")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="distribution", show_default=True)
    @click.option("--tags", metavar="GLOB", help="Only events of tags matching GLOB.")
    @click.option("--secret-stdin", is_flag=True,
                  help="Read the secret from standard input (else the registry makes one, printed once).")
    @click.option("--inactive", is_flag=True, help="Add it switched off.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @on_store
    def add(store: Store, name, url, events, fmt, tags, secret_stdin, inactive, as_json):
        """Send the events of repository NAME to URL."""
        body = {"url": url, "format": fmt, "active": not inactive}
        if events:
            body["events"] = list(events)
        if tags:
            body["tags"] = tags
        if secret_stdin:
            body["secret"] = sys.stdin.read().rstrip("\r\n")
        document, generated = store.webhooks.definitions.create(store.context, name, body)
        answer = view(document)
        lines = [f"Added webhook {document['id']} to {name}: {', '.join(document['events'])} as "
                 f"{document['format']} to {document['url']}"]
        if generated:
            answer["secret"] = generated
            lines.append(f"secret (shown once): {generated}")
        emit(as_json, answer, lines)

    @webhook.command("list")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @on_store
    def list_hooks(store: Store, name, as_json):
        """List the webhooks of repository NAME."""
        hooks = [view(d) for d in store.webhooks.definitions.list(name)]
        emit(as_json, {"repository": name, "webhooks": hooks},
              [f"{h['id']}  {'active' if h['active'] else 'inactive'}  {','.join(h['events'])}  {h['format']}  "
               f"{h['url']}" + (f"  tags {h['tags']}" if "tags" in h else "") for h in hooks])

    @webhook.command("remove")
    @click.argument("name")
    @click.argument("hook_id", metavar="ID")
    @on_store
    def remove(store: Store, name, hook_id):
        """Remove the webhook ID of repository NAME."""
        _hook(store, name, hook_id)
        store.webhooks.definitions.delete(store.context, name, hook_id)
        click.echo(f"Removed webhook {hook_id} from {name}")

    @webhook.command("deliveries")
    @click.argument("name")
    @click.argument("hook_id", metavar="ID")
    @click.option("-n", "limit", type=click.IntRange(1, 1000), default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @on_store
    def deliveries(store: Store, name, hook_id, limit, as_json):
        """The newest deliveries of the webhook ID of repository NAME."""
        _hook(store, name, hook_id)
        found = [delivery_view(r) for r in store.webhooks.deliveries(hook_id, limit=limit)]
        emit(as_json, {"webhook": hook_id, "deliveries": found},
              [f"{d['id']}  {d['event']}  {d['state']}  attempts {d['attempts']}"
               + (f"  last {d['lastStatus']}" if d["lastStatus"] else "")
               + (f"  ({d['lastError']})" if d["lastError"] else "") for d in found])

    @webhook.command("redeliver")
    @click.argument("name")
    @click.argument("hook_id", metavar="ID")
    @click.argument("event_id", metavar="EVENT-ID")
    @on_store
    def redeliver(store: Store, name, hook_id, event_id):
        """Send the delivery EVENT-ID of the webhook ID again (a running server sends it)."""
        _hook(store, name, hook_id)
        if store.webhooks.redeliver(hook_id, event_id) is None:
            raise click.ClickException(f"webhook {hook_id} of {name} has no delivery {event_id}")
        click.echo(f"Queued {event_id} for webhook {hook_id} of {name} again")
