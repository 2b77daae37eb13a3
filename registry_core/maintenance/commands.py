"""`registry garbage-collect`, `registry fsck`, `registry audit` and `registry tag restore`:
maintenance of a store, beside a serving registry or not.

Like the account commands (index/commands.py) they work on the store directly: `--store DIR` or
`--config registry.yaml` (whose storage driver is used), and `--as NAME` for the author of the
commits they make (default: your login name). `registry audit` only reads, and takes no `--as`.
"""

from __future__ import annotations

import json
import os

import click

from registry_core.context import Context
from registry_core.meta.store import MetaStore, limit_caches
from registry_core.maintenance.fsck import Checker
from registry_core.storage.driver import StorageUnavailable
from registry_core.command_line import load_config, plugin_manager, repository_name, store_command
from registry_core.errors import RegistryError
from registry_core.maintenance.audit import Unverified, json_line, timeline, unverified
from registry_core.maintenance.history import parse_date
from registry_core.maintenance.restore import TagRestorer, parse_target
from registry_core.names import check_tag
from registry_core.registry.blobs import BlobService
from registry_core.maintenance.gc import HOUR, GarbageCollectionRefused, GarbageCollector, Options
from registry_core.maintenance.marking import MARK_OBJECT_CACHE_BYTES, MarkFailed
from registry_core.meta.paths import META_DIR



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
    try:
        return factory(root=config.store, options={**config.storage_options, "durable": config.durable})
    except StorageUnavailable as e:  # no bucket, wrong credentials…: one line, not a traceback
        raise click.ClickException(f"storage: {e}") from None


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
    limit_caches(MARK_OBJECT_CACHE_BYTES)  # the mark reads each tree once
    try:
        report = GarbageCollector(store.driver, store.meta, store.context, options, store=store.root).run()
    except (GarbageCollectionRefused, MarkFailed) as e:
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


@click.command("audit")
@click.argument("name", required=False)
@click.option("--since", metavar="DATE",
              help="Only what was done at or after DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]; UTC "
                   "unless a zone is given).")
@click.option("--author", metavar="NAME", help="Only what the account NAME did (the commits' Actor).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and event.")
@click.option("--verify", is_flag=True,
              help="Instead, list every commit not signed by a trusted node key (exit status 1 if any).")
@click.option("--store", "store_dir", type=click.Path(file_okay=False),
              help="Store root [default: the config's store, else ./registry-data].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="registry.yaml naming the store.")
def audit(name, since, author, as_json, verify, store_dir, config_path):
    """Show the metadata history as a timeline, newest first: pushes, tag moves and deletes,
    visibility, collaborators, tokens, users, stars and comments, each with the acting user, the
    client address and the request id. NAME shows one repository only.

    With --verify: every commit that is not signed by a node key the store trusts
    (keys/meta-allowed-signers), with its id; exit status 1 when there is one."""
    if verify and name is not None:
        raise click.UsageError("--verify checks every commit of the store: give no NAME")
    name = repository_name(name) if name is not None else None
    try:
        since = parse_date(since) if since is not None else None
    except RegistryError as e:
        raise click.BadParameter(e.message, param_hint="--since") from None
    root = load_config(config_path, store_dir).store
    if not os.path.isdir(os.path.join(root, META_DIR)):
        raise click.ClickException(f"no store in {root}: give --store or --config")
    meta = MetaStore(os.path.join(root, META_DIR), create=False)
    if verify:
        verify_signatures(meta, since, author, as_json)
        return
    for entry in timeline(meta, name, since, author):
        click.echo(json_line(entry) if as_json else entry.line())


def verify_signatures(meta: MetaStore, since, author, as_json: bool) -> None:
    checked = failed = 0
    for found in unverified(meta, since, author):
        checked += 1
        if isinstance(found, Unverified):
            failed += 1
            click.echo(json_line(found) if as_json else found.line())
    if not as_json:
        click.echo(f"{checked} commit(s) checked: {failed} not signed by a trusted node key"
                   if failed else f"{checked} commit(s) checked: all signed by a trusted node key")
    if failed:
        raise SystemExit(1)


@click.group("tag")
def tag():
    """Restore a tag to what it pointed to earlier."""


@tag.command("restore")
@click.argument("target", metavar="NAME:TAG")
@click.option("--at", "at", required=True, metavar="COMMIT|DATE",
              help="A commit id of meta.git (at least 4 hex digits) or a date (YYYY-MM-DD or "
                   "YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM], UTC unless a zone is given): the newest commit then.")
@on_store
def tag_restore(store: MaintainedStore, target, at):
    """Point NAME:TAG back to the digest it had at a commit or date, as a new commit by --as.

    Refused, changing nothing, when the tag did not exist then, or when the manifest or any blob
    it needs is no longer in blob storage (the missing digests are listed)."""
    name, tag_name = parse_target(target)
    name = repository_name(name)
    check_tag(tag_name)
    restorer = TagRestorer(store.meta, BlobService(store.driver), store.context)
    for line in restorer.restore(name, tag_name, at).lines():
        click.echo(line)


COMMANDS = (garbage_collect, fsck, audit, tag)


def register(cli) -> None:
    """Add the maintenance commands to the `registry` click group."""
    for command in COMMANDS:
        cli.add_command(command)
