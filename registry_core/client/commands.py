"""Client commands of the `registry` CLI: login, logout, push, pull, copy, tags, inspect, delete, graph,
and the Index's community commands: search, star, unstar, comment.

Every command takes `--json` (one JSON document on stdout, errors as `{"error": {…}}`) and exits
with the statuses listed in registry_core/client/errors.py. Images are named as docker names them
(`host/name:tag@digest`; `alpine` is `docker.io/library/alpine:latest`), local images as skopeo
names them (`oci:DIR[:tag]`, `docker-archive:FILE[:name:tag]`).
"""

from __future__ import annotations

import functools
import json
import re
import sys

import click

from registry_core.client import community as community_api
from registry_core.client import graph as graph_module
from registry_core.client import manifests as mf
from registry_core.client import transfer
from registry_core.client.archive import ArchiveDestination, ArchiveSource
from registry_core.client.credentials import Credential, CredentialStore
from registry_core.client.errors import ClientError, Interrupted, NotFound, UsageError
from registry_core.client.layout import LayoutDestination, LayoutSource
from registry_core.client.progress import Progress
from registry_core.client.references import (ArchiveLocation, LayoutLocation, Reference, normalize_host,
                                             parse, parse_location, parse_repository)
from registry_core.client.remote import RegistryDestination, RegistrySource
from registry_core.client.session import RegistrySession
from registry_core.client.uploads import DEFAULT_CHUNK_SIZE

EXIT_STATUSES = """\b
Exit status: 0 success, 1 failure, 2 usage, 3 authentication or access denied,
4 not found, 5 digest or size mismatch, 6 registry unreachable, 130 interrupted."""


class Options:
    """What every client command shares: how to reach registries and how to print."""

    def __init__(self, insecure=False, authfile=None, as_json=False, jobs=transfer.DEFAULT_JOBS,
                 chunk_size=DEFAULT_CHUNK_SIZE, quiet=False):
        self.insecure = insecure
        self.credentials = CredentialStore(authfile)
        self.as_json = as_json
        self.jobs = jobs
        self.chunk_size = chunk_size
        self.quiet = quiet
        self._sessions: dict[str, RegistrySession] = {}

    def session(self, reference: Reference, credential: Credential | None = None) -> RegistrySession:
        key = reference.host
        if credential is not None or key not in self._sessions:
            store = _FixedCredential(credential) if credential is not None else self.credentials
            session = RegistrySession(reference.host, api_host=reference.api_host, insecure=self.insecure,
                                      credentials=store, connections=self.jobs + 2)
            if credential is not None:
                return session
            self._sessions[key] = session
        return self._sessions[key]

    def progress(self) -> Progress:
        return Progress(False if (self.quiet or self.as_json) else None)

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


class _FixedCredential:
    def __init__(self, credential: Credential):
        self.credential = credential

    def get(self, host, repository=None):
        return self.credential


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kmgKMG]?)(?:i?[bB])?\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 16M, 1G, 1048576)")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


def common(function):
    """--insecure, --authfile, --json, and error handling: a ClientError becomes its exit status."""
    @click.option("--insecure", is_flag=True, help="Plain HTTP to non-loopback registries (loopback always is).")
    @click.option("--authfile", type=click.Path(dir_okay=False),
                  help="Logins file [default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json].")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document (errors too).")
    @functools.wraps(function)
    def wrapper(insecure, authfile, as_json, **kwargs):
        options = Options(insecure, authfile, as_json, kwargs.pop("jobs", transfer.DEFAULT_JOBS),
                          kwargs.pop("chunk_size", DEFAULT_CHUNK_SIZE), kwargs.pop("quiet", False))
        try:
            return function(options, **kwargs)
        except KeyboardInterrupt:
            fail(options, Interrupted("interrupted"))
        except ClientError as error:
            fail(options, error)
        finally:
            options.close()
    return wrapper


def transfer_options(function):
    @click.option("--platform", "platform_text", metavar="OS/ARCH[/VARIANT]",
                  help="Only this platform's image from an index.")
    @click.option("--all-platforms", is_flag=True, help="Every image of an index.")
    @click.option("-j", "--jobs", type=click.IntRange(1, 64), default=transfer.DEFAULT_JOBS, show_default=True,
                  help="Blobs transferred in parallel.")
    @click.option("--chunk-size", type=_size, default=f"{DEFAULT_CHUNK_SIZE >> 20}M", show_default=True,
                  help="Bytes per upload request; an interrupted upload resumes at a chunk boundary or later.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress bars (there are none unless stderr is a terminal).")
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)
    return wrapper


def fail(options: Options, error: ClientError):
    if options.as_json:
        click.echo(json.dumps(error.to_json()))
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


def emit(options: Options, document, lines) -> None:
    if options.as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        for line in lines() if callable(lines) else lines:
            click.echo(line)


# --- sources and destinations -------------------------------------------------------------------

def open_source(options: Options, location):
    if isinstance(location, LayoutLocation):
        return LayoutSource(location)
    if isinstance(location, ArchiveLocation):
        return ArchiveSource(location)
    return RegistrySource(options.session(location), location)


def open_destination(options: Options, location, source_location):
    if isinstance(location, LayoutLocation):
        default_tag = source_location.tag if isinstance(source_location, Reference) and not \
            source_location.digest else getattr(source_location, "tag", None)
        return LayoutDestination(location, default_tag)
    if isinstance(location, ArchiveLocation):
        repo_tag = source_location.familiar() if isinstance(source_location, Reference) else None
        return ArchiveDestination(location, repo_tag)
    return RegistryDestination(options.session(location), location, chunk_size=options.chunk_size)


def run_transfer(options: Options, verb: str, source_location, destination_location, platform_text,
                 all_platforms: bool, default_platform: mf.Platform | None):
    if platform_text and all_platforms:
        raise UsageError("--platform and --all-platforms exclude each other")
    platform = mf.Platform.parse(platform_text) if platform_text else None
    if platform is None and not all_platforms:
        platform = default_platform
    if isinstance(destination_location, Reference) and destination_location.digest \
            and destination_location.tag is None:
        tag = None
    else:
        tag = destination_location.tag if isinstance(destination_location, Reference) else None
    source = open_source(options, source_location)
    try:
        the_plan = transfer.plan(source, platform, all_platforms, strict=bool(platform_text))
        if isinstance(destination_location, Reference) and destination_location.digest and \
                destination_location.digest != the_plan.root.digest:
            raise UsageError(f"{destination_location} names digest {destination_location.digest}, but the "
                             f"image is {the_plan.root.digest}")
        destination = open_destination(options, destination_location, source_location)
        result = transfer.run(source, destination, the_plan, tag=tag, jobs=options.jobs,
                              progress=options.progress())
    finally:
        source.close()
    emit(options, result.to_json(), lambda: summary_lines(verb, result))


def summary_lines(verb: str, result: transfer.Result) -> list[str]:
    blobs = result.blobs
    notes = [f"{blobs[k]} {label}" for k, label in (("uploaded", "uploaded"), ("downloaded", "downloaded"),
                                                     ("exists", "already there"), ("mounted", "mounted"),
                                                     ("skipped", "foreign, skipped")) if blobs.get(k)]
    rate = result.bytes_transferred / result.seconds if result.seconds > 0 else 0
    lines = [f"{verb} {result.source} → {result.destination}",
             f"  digest     {result.digest}",
             f"  type       {result.media_type}"]
    if result.platforms:
        lines.append(f"  platforms  {', '.join(result.platforms)}")
    lines.append(f"  blobs      {blobs['total']}" + (f" ({', '.join(notes)})" if notes else ""))
    lines.append(f"  moved      {graph_module.human_size(result.bytes_transferred)} of "
                 f"{graph_module.human_size(result.bytes_total)} in {result.seconds:.2f} s"
                 + (f" ({graph_module.human_size(int(rate))}/s)" if result.bytes_transferred else ""))
    if result.resumed:
        lines.append(f"  resumed    {result.resumed} interrupted upload(s)")
    return lines


def registry_reference(text: str, role: str) -> Reference:
    location = parse_location(text)
    if not isinstance(location, Reference):
        raise UsageError(f"{role} must be a registry reference (host/name:tag), not {text!r}")
    return location


# --- commands -------------------------------------------------------------------------------------

@click.command(epilog=EXIT_STATUSES)
@click.argument("host")
@click.option("-u", "--username", help="User name (prompted for on a terminal).")
@click.option("-p", "--password", help="Password (visible to other users in `ps`: prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@common
def login(options: Options, host, username, password, password_stdin):
    """Log in to the registry HOST and keep the login where docker, podman and skopeo find it.

    The login is checked first (against the registry's Basic or Bearer challenge) and stored only
    when the registry accepts it."""
    host = normalize_host(host)
    if password_stdin:
        if password:
            raise UsageError("--password and --password-stdin exclude each other")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("give the user name with --username")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("give the password with --password-stdin")
        password = click.prompt("Password", hide_input=True)
    if not password:
        raise UsageError("the password is empty")
    reference = Reference(host, "library/x")
    session = options.session(reference, Credential(username, password, "the command line"))
    try:
        session.ping()  # answers the registry's challenge with this login, or raises AuthError
        scheme = session.auth.challenge.scheme if session.auth.challenge else None
    finally:
        session.close()
    where = options.credentials.store(host, Credential(username, password))
    emit(options, {"host": host, "username": username, "stored": where, "challenge": scheme},
         [f"Login Succeeded ({username} at {host}; saved in {where})"])


@click.command(epilog=EXIT_STATUSES)
@click.argument("host")
@common
def logout(options: Options, host):
    """Forget the login for the registry HOST (in every auth file where it is)."""
    host = normalize_host(host)
    removed = options.credentials.erase(host)
    emit(options, {"host": host, "removed": removed},
         [f"Removed the login for {host} from {', '.join(removed)}" if removed else f"Not logged in to {host}"])


@click.command(epilog=EXIT_STATUSES)
@click.argument("source")
@click.argument("destination")
@transfer_options
@common
def push(options: Options, source, destination, platform_text, all_platforms):
    """Push SOURCE (oci:DIR[:tag] or docker-archive:FILE[:name:tag]) to the registry as DESTINATION.

    An index is pushed with all its platforms unless --platform picks one. Blobs the registry has
    are skipped; the rest upload in parallel, in chunks that resume after a dropped connection."""
    source_location = parse_location(source)
    if isinstance(source_location, Reference):
        raise UsageError(f"push takes a local image (oci:DIR[:tag] or docker-archive:FILE), not {source!r}; "
                         "to copy between registries use `registry copy`")
    run_transfer(options, "Pushed", source_location, registry_reference(destination, "DESTINATION"),
                 platform_text, all_platforms, None)


@click.command(epilog=EXIT_STATUSES)
@click.argument("source")
@click.argument("destination")
@transfer_options
@common
def pull(options: Options, source, destination, platform_text, all_platforms):
    """Pull SOURCE from a registry into DESTINATION (oci:DIR[:tag] or docker-archive:FILE[:name:tag]).

    From an index, only this machine's platform is pulled unless --platform or --all-platforms
    says otherwise. Every blob is checked against its digest and size before it is written; a
    failed pull leaves DESTINATION as it was."""
    destination_location = parse_location(destination)
    if isinstance(destination_location, Reference):
        raise UsageError(f"pull writes a local image (oci:DIR[:tag] or docker-archive:FILE), not {destination!r}")
    run_transfer(options, "Pulled", registry_reference(source, "SOURCE"), destination_location,
                 platform_text, all_platforms, mf.host_platform())


@click.command(epilog=EXIT_STATUSES)
@click.argument("source")
@click.argument("destination")
@transfer_options
@common
def copy(options: Options, source, destination, platform_text, all_platforms):
    """Copy an image from SOURCE to DESTINATION: between registries (within one registry, blobs
    are mounted, not sent), or between any of registry, oci: and docker-archive: images.

    An index is copied with all its platforms unless --platform picks one."""
    run_transfer(options, "Copied", parse_location(source), parse_location(destination),
                 platform_text, all_platforms, None)


@click.command(epilog=EXIT_STATUSES)
@click.argument("repository")
@common
def tags(options: Options, repository):
    """List the tags of REPOSITORY (host/name), following the registry's pagination."""
    reference = parse_repository(repository)
    found = options.session(reference).tags(reference.repository)
    emit(options, {"repository": f"{reference.host}/{reference.repository}", "tags": found}, found)


@click.command(epilog=EXIT_STATUSES)
@click.argument("image")
@click.option("--raw", is_flag=True, help="Print the manifest exactly as stored (bytes whose digest is the image's).")
@click.option("--config", "show_config", is_flag=True, help="Print the image config exactly as stored.")
@click.option("--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Inspect this platform's image of an index.")
@common
def inspect(options: Options, image, raw, show_config, platform_text):
    """Show IMAGE: digest, media type, platforms, config (created, entrypoint, env…), layers and sizes.

    IMAGE is a registry reference, oci:DIR[:tag] or docker-archive:FILE."""
    platform = mf.Platform.parse(platform_text) if platform_text else None
    source = open_source(options, parse_location(image))
    try:
        if raw or show_config:
            if show_config:
                data = graph_module.config_bytes(source, platform)
            else:
                descriptor, data = source.root()
                if platform is not None:
                    manifest = mf.parse(data, descriptor.media_type)
                    if manifest.is_index:
                        data = source.manifest(mf.choose(manifest, platform))
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        summary = graph_module.describe(source, platform)
    finally:
        source.close()
    emit(options, summary, lambda: inspect_lines(summary))


def inspect_lines(summary: dict) -> list[str]:
    human = graph_module.human_size
    lines = [f"{'Reference':<12}{summary['reference']}", f"{'Digest':<12}{summary['digest']}",
             f"{'Type':<12}{summary['mediaType']}"]
    if "manifests" in summary:
        lines.append(f"{'Platforms':<12}{', '.join(summary['platforms']) or '-'}")
        lines.append("Manifests")
        for entry in summary["manifests"]:
            size = human(entry["imageSize"]) if "imageSize" in entry else human(entry["size"])
            lines.append(f"  {entry['platform'] or entry.get('artifactType') or '-':<20}{entry['digest']}  {size}")
        return lines
    for key, label in (("platform", "Platform"), ("created", "Created"), ("author", "Author"),
                       ("artifactType", "Artifact")):
        if summary.get(key):
            lines.append(f"{label:<12}{summary[key]}")
    for key, label in (("entrypoint", "Entrypoint"), ("cmd", "Cmd"), ("workingDir", "WorkingDir"),
                       ("user", "User")):
        if summary.get(key):
            value = summary[key]
            lines.append(f"{label:<12}{json.dumps(value) if isinstance(value, list) else value}")
    for variable in summary.get("env") or []:
        lines.append(f"{'Env':<12}{variable}")
    for name, value in (summary.get("labels") or {}).items():
        lines.append(f"{'Label':<12}{name}={value}")
    lines.append(f"{'Size':<12}{human(summary['totalSize'])} ({len(summary['layers'])} layers)")
    for layer in summary["layers"]:
        lines.append(f"  {layer['digest']}  {human(layer['size']):>10}  {layer['mediaType']}")
    return lines


@click.command(epilog=EXIT_STATUSES)
@click.argument("image")
@common
def delete(options: Options, image):
    """Delete IMAGE's manifest from its registry (a tag is resolved to its digest first, so every
    tag on that manifest goes with it). Blobs are left to the registry's garbage collection."""
    reference = registry_reference(image, "IMAGE")
    session = options.session(reference)
    digest = reference.digest
    if not digest:
        descriptor = session.head_manifest(reference.repository, reference.reference)
        if descriptor is None:
            raise NotFound(f"{reference}: no such manifest", code="MANIFEST_UNKNOWN")
        digest = descriptor.digest
    session.delete_manifest(reference.repository, digest)
    emit(options, {"reference": str(reference), "deleted": digest}, [f"Deleted {reference} ({digest})"])


@click.command(epilog=EXIT_STATUSES)
@click.argument("image")
@click.option("--no-referrers", is_flag=True, help="Do not look for artifacts that refer to the manifests.")
@common
def graph(options: Options, image, no_referrers):
    """Show IMAGE's graph as a tree: index → manifests → config and layers, with referrers
    (signatures, SBOMs…) under the manifest they refer to."""
    location = parse_location(image)
    source = open_source(options, location)
    referrers = None
    if isinstance(location, Reference) and not no_referrers:
        session = options.session(location)
        referrers = functools.partial(session.referrers, location.repository)
    try:
        root = graph_module.build(source, referrers)
    finally:
        source.close()
    emit(options, {"reference": str(location), **root.to_json()},
         lambda: graph_module.render(root, str(location)))


# --- the Index's community commands (they speak /api/v1/, with the stored login as Basic credentials)

def repository_reference(text: str) -> Reference:
    """HOST/NAME (a tag or digest is allowed and ignored: stars and comments belong to the repository)."""
    reference = parse(text)
    return Reference(reference.host, reference.repository)


def _stars(count) -> str:
    return "" if count is None else f" ({count} star{'' if count == 1 else 's'})"


@click.command(epilog=EXIT_STATUSES)
@click.argument("host")
@click.argument("term")
@click.option("--limit", type=click.IntRange(1, 100), default=25, show_default=True,
              help="At most this many results.")
@common
def search(options: Options, host, term, limit):
    """Search the registry HOST for repositories whose name or description holds every word of
    TERM, among those you may pull (with your stored login for HOST, or anonymously)."""
    host = normalize_host(host)
    found = community_api.search(options.session(Reference(host, "library/x")), term, limit)
    results = found.get("results") or []
    more = found.get("more", found.get("num_results", len(results)) > len(results))
    document = {"host": host, "query": term, "num_results": found.get("num_results", len(results)),
                "more": bool(more), "results": results}
    emit(options, document, lambda: search_lines(host, term, document))


def search_lines(host: str, term: str, document: dict) -> list[str]:
    results = document["results"]
    if not results:
        return [f"No repository on {host} matches {term!r}"]
    width = max(len("NAME"), *(len(r["name"]) for r in results))
    lines = [f"{'NAME':<{width}}  {'DESCRIPTION':<45}  {'STARS':>5}  OFFICIAL"]
    for result in results:
        description = " ".join((result.get("description") or "").split())
        if len(description) > 45:
            description = description[:44] + "…"
        lines.append(f"{result['name']:<{width}}  {description:<45}  {result.get('star_count', 0):>5}  "
                     f"{'[OK]' if result.get('is_official') else ''}".rstrip())
    if document["more"]:  # the registry stops counting after the page: num_results is a lower bound
        lines.append(f"({len(results)} shown; more match: raise --limit)")
    return lines


@click.command(epilog=EXIT_STATUSES)
@click.argument("repository")
@common
def star(options: Options, repository):
    """Star REPOSITORY (HOST/NAME) as the user logged in to HOST (`registry login HOST` first)."""
    _change_star(options, repository, community_api.star, "Starred")


@click.command(epilog=EXIT_STATUSES)
@click.argument("repository")
@common
def unstar(options: Options, repository):
    """Take back your star on REPOSITORY (HOST/NAME)."""
    _change_star(options, repository, community_api.unstar, "Unstarred")


def _change_star(options: Options, repository: str, call, done: str) -> None:
    reference = repository_reference(repository)
    answer = call(options.session(reference), reference.repository)
    where = f"{reference.host}/{answer.get('name', reference.repository)}"
    emit(options, {"repository": where, **answer}, [f"{done} {where}{_stars(answer.get('star_count'))}"])


@click.command(epilog=EXIT_STATUSES)
@click.argument("repository")
@click.argument("text", required=False)
@click.option("--list", "list_comments", is_flag=True, help="List the comments, oldest first.")
@click.option("--delete", "delete_id", metavar="ID",
              help="Delete the comment ID (your own, or any on a repository you administer).")
@common
def comment(options: Options, repository, text, list_comments, delete_id):
    """Comment on REPOSITORY (HOST/NAME) with TEXT ('-' reads it from standard input), list its
    comments with --list, or delete one with --delete ID. Comments are at most 4096 characters."""
    if sum((text is not None, list_comments, delete_id is not None)) != 1:
        raise UsageError("give either TEXT, --list or --delete ID")
    reference = repository_reference(repository)
    session = options.session(reference)
    if list_comments:
        name, found = community_api.comments(session, reference.repository)
        where = f"{reference.host}/{name}"
        emit(options, {"repository": where, "comments": found}, lambda: comment_lines(where, found))
        return
    if delete_id is not None:
        community_api.delete_comment(session, reference.repository, delete_id)
        where = f"{reference.host}/{reference.repository}"
        emit(options, {"repository": where, "deleted": delete_id}, [f"Deleted comment {delete_id} on {where}"])
        return
    if text == "-":
        text = sys.stdin.read().rstrip("\r\n")
    added = community_api.add_comment(session, reference.repository, text)
    where = f"{reference.host}/{reference.repository}"
    emit(options, {"repository": where, **added}, [f"Commented on {where} ({added['id']})"])


def comment_lines(where: str, found: list[dict]) -> list[str]:
    if not found:
        return [f"No comments on {where}"]
    lines = []
    for entry in found:
        lines.append(f"{entry['createdAt']}  {entry['author']}  {entry['id']}")
        lines += [f"    {line}" for line in entry["body"].splitlines() or [""]]
    return lines


COMMANDS = (login, logout, push, pull, copy, tags, inspect, delete, graph, search, star, unstar, comment)


def register(cli) -> None:
    """Add the client commands to the `registry` click group."""
    for command in COMMANDS:
        cli.add_command(command)
