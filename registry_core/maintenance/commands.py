"""`registry garbage-collect` and `registry fsck`: maintenance of a store, beside a serving registry or not.

Like the account commands (index/commands.py) they work on the store directly: `--store DIR` or
`--config registry.yaml` (whose storage driver is used), and `--as NAME` for the author of the
commits they make (default: your login name).
"""

from __future__ import annotations

import json
import os

import click

from registry_core.context import Context
from registry_core.meta.store import MetaStore
from registry_core.maintenance.fsck import Checker
from registry_core.command_line import plugin_manager, store_command
from registry_core.maintenance.gc import HOUR, GarbageCollectionRefused, GarbageCollector, Options

META_DIR = "meta.git"


class MaintainedStore:
    """The storage driver and metadata of one store, and who is acting on it."""

    def __init__(self, config, actor: str):
        root = config.store
        if not os.path.isdir(os.path.join(root, META_DIR)):
            raise click.ClickException(f"no store in {root}: give --store or --config (a store is made by "
                                       f"`registry init` or the first `registry serve`)")
        self.root = root
        self.meta = MetaStore(os.path.join(root, META_DIR), create=False, durable=config.durable,
                              writer=config.meta_writer)
        self.driver = open_driver(config, plugin_manager(config))
        self.context = Context(actor=actor, user_agent="registry-cli")


def open_driver(config, plugins):
    """The storage driver registry.yaml names, from the plugins that provide drivers (as app.py does)."""
    factories = {}
    for registered in plugins.hook.register_storage_drivers():
        factories.update(registered or {})
    factory = factories.get(config.storage_driver)
    if factory is None:
        raise click.ClickException(f"unknown storage driver {config.storage_driver!r} "
                                   f"(available: {', '.join(sorted(factories))})")
    return factory(root=config.store, options={**config.storage_options, "durable": config.durable})


on_store = store_command(MaintainedStore)


@click.command("garbage-collect")
@click.option("--dry-run", is_flag=True, help="Change nothing; report what would be removed.")
@click.option("--delete-untagged", is_flag=True,
              help="Also delete manifests no tag reaches (directly, as a child of a tagged index, or as a "
                   "referrer of a reachable manifest); one commit per repository.")
@click.option("--upload-age", type=click.FloatRange(min=0), default=24, show_default=True, metavar="HOURS",
              help="Remove upload sessions started longer ago than this.")
@click.option("--grace", type=click.FloatRange(min=0), default=60, show_default=True, metavar="MINUTES",
              help="Keep whatever was written (or linked, or pushed) more recently than this: pushes in progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@on_store
def garbage_collect(store: MaintainedStore, dry_run, delete_untagged, upload_age, grace, as_json):
    """Remove stale uploads, temporary files, and the blobs and links no manifest needs.

    Mark and sweep: every blob a manifest document of any repository refers to is kept; blob files
    and repository links nothing refers to, older than --grace, are removed. Safe while the registry
    serves, with one accepted race: a blob uploaded more than --grace ago whose manifest has not
    arrived is removed, and that push must upload it again. Last, meta.git's objects (small packs
    and loose files) are written as one pack; the history stays whole.
    """
    options = Options(dry_run=dry_run, delete_untagged=delete_untagged, upload_age=upload_age * HOUR,
                      grace=grace * 60)
    try:
        report = GarbageCollector(store.driver, store.meta, store.context, options, store=store.root).run()
    except GarbageCollectionRefused as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


@click.command("fsck")
@click.option("--repair", is_flag=True,
              help="Link blobs that exist back into their repositories; remove tags and referrer entries "
                   "that point at missing manifests; write missing referrer entries (commits by --as).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@on_store
def fsck(store: MaintainedStore, repair, as_json):
    """Check blob contents against their digests, every metadata document against its schema, and the
    image graph (blobs and links of every manifest, tags, referrers).

    Exit status 0 when the store is clean, 1 when problems were found (repaired or not: run it again
    to see what is left).
    """
    report = Checker(store.driver, store.meta, store.context, store=store.root).run(repair=repair)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.clean:
        raise SystemExit(1)


COMMANDS = (garbage_collect, fsck)


def register(cli) -> None:
    """Add the maintenance commands to the `registry` click group."""
    for command in COMMANDS:
        cli.add_command(command)
