"""A test plugin that implements every hook, loaded from a plugins dir (tests/test_plugins.py).

Its behaviour is keyed on repository names and headers so each test can trigger one hook, and it
records what it sees as JSON lines in the file `pluginConfig.everything.log`.
"""

import json
import urllib.error
import urllib.request

import bottle
import click

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.storage.filesystem import FilesystemDriver

_config = {}


def record(**entry):
    if _config.get("log"):
        with open(_config["log"], "a") as f:
            f.write(json.dumps(entry) + "\n")


@hookimpl
def plugin_config_schema():
    return {"everything": {"type": "object", "additionalProperties": False,
                           "properties": {"log": {"type": "string"},
                                          "upstream": {"type": "string", "format": "everything-url"}}}}


@hookimpl
def plugin_config_formats():
    def http_url(text):
        if not text.startswith(("http://", "https://")):
            raise ValueError("the upstream must be an http:// or https:// URL")
    return {"everything-url": http_url}


@hookimpl
def register_storage_drivers():
    def factory(root, options):
        driver = FilesystemDriver(root)
        driver.put_content("everything-driver", b"created by the everything plugin's driver")
        return driver
    return {"everything-fs": factory}


@hookimpl
def startup(registry):
    _config.update(registry.config.plugin_config.get("everything", {}))
    record(hook="startup", store=registry.config.store)


@hookimpl
def register_routes(app, registry):
    @app.route("/_everything/ping")
    def ping():
        context = registry.authorize(bottle.request, None, "login")
        return {"pong": True, "actor": context.actor}


@hookimpl
def register_commands(cli):
    @cli.command(name="everything-hello")
    @click.argument("who")
    def hello(who):
        """Say hello (added by the everything test plugin)."""
        click.echo(f"hello {who} from a plugin")


@hookimpl
def filter_request(request, registry):
    if request.headers.get("X-Everything-Block") == "error":
        return RegistryError("DENIED", "blocked by the everything plugin's request filter")
    if request.headers.get("X-Everything-Block") == "teapot":
        return bottle.HTTPResponse("short and stout", status=418)
    return None


@hookimpl
def actor_from_request(request):
    user = request.headers.get("X-Everything-User")
    if user == "wrong":
        raise RegistryError("UNAUTHORIZED", "the everything plugin refuses this user")
    return Actor(name=user) if user else None


@hookimpl
def permission_allowed(actor, action, repository):
    if repository and repository.startswith("everything-denied/"):
        return False
    return None


@hookimpl
def validate_manifest(repository, manifest):
    if (manifest.annotations or {}).get("everything.reject"):
        return [f"{repository}: the everything plugin rejects manifests annotated everything.reject"]
    return None


class HttpUpstream:
    """Fetches from another registry over HTTP (the real session registry in the tests)."""

    def __init__(self, base, strip_prefix):
        self.base = base.rstrip("/")
        self.strip_prefix = strip_prefix

    def _open(self, path, accept=None):
        request = urllib.request.Request(self.base + path, headers={"Accept": accept} if accept else {})
        try:
            return urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def manifest(self, repository, reference):
        accept = ",".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                           "application/vnd.docker.distribution.manifest.v2+json",
                           "application/vnd.docker.distribution.manifest.list.v2+json"])
        response = self._open(f"/v2/{repository[len(self.strip_prefix):]}/manifests/{reference}", accept)
        if response is None:
            return None
        with response:
            return response.read(), response.headers["Content-Type"]

    def blob(self, repository, digest):
        response = self._open(f"/v2/{repository[len(self.strip_prefix):]}/blobs/{digest}")
        if response is None:
            return None

        def chunks():
            with response:
                while chunk := response.read(65536):
                    yield chunk
        return chunks()


@hookimpl
def before_pull(event, method):
    if event.repository.startswith("everything-unpulled/"):
        return f"{event.repository} may not be pulled (everything plugin, {method})"
    return {"X-Everything-Pulled": f"{method} {event.tag or event.digest}"}


@hookimpl
def resolve_upstream(repository):
    if repository.startswith("everything-mirror/") and _config.get("upstream"):
        return HttpUpstream(_config["upstream"], "everything-mirror/")
    return None


@hookimpl
def before_event(event):
    if event.repository and event.repository.startswith("everything-readonly/"):
        return f"{event.repository} is read-only (everything plugin)"
    return None


@hookimpl
def track_event(event):
    record(hook="track_event", **event.to_dict())
    if event.repository and event.repository.startswith("everything-crash/"):
        raise RuntimeError("the everything plugin fails on purpose; the request must still succeed")


PANEL_MARKUP = ('<script>alert("everything panel")</script><img src="x" onerror="alert(3)">'
                '<a href="javascript:alert(2)">a scripted link</a> <a href="https://example.com/scan">the report</a>')


@hookimpl
def ui_panels(page, repository, actor):
    """An HTML panel with markup that must not run, and a text panel whose markup must stay text."""
    who = actor.name if actor else "anonymous"
    return [{"title": "Everything <i>panel</i>", "html": f"<p>{page} {repository or ''} for {who}</p>{PANEL_MARKUP}"},
            {"title": "Everything text", "text": "<b>plain text</b>"}]


SECTION_TEMPLATE = """<p class="everything-who">for {{ section.who }}: {{ section.markup }}</p>
{% if problem %}<p class="problem">{{ problem }}</p>{% endif %}
{% if section.said %}<p id="everything-said">{{ section.said }}</p>{% endif %}
<form action="{{ action }}/note" method="post"><input type="hidden" name="csrf" value="{{ csrf }}">
<label for="everything-text">Text</label><input id="everything-text" name="text"><button>Note</button></form>"""


@hookimpl
def ui_settings_sections(repository, actor, registry):
    """A section whose values carry markup (which must stay text) and whose action records who
    sent what to `<store>/everything-section.jsonl`; and two sections the page must leave out."""
    from registry_core.ui.sections import Section, Show

    def note(request):
        with open(f"{registry.config.store}/everything-section.jsonl", "a") as f:
            f.write(json.dumps({"repository": request.repository, "actor": request.actor.name,
                                "author": request.context.actor, "text": request.form.get("text")}) + "\n")
        if request.form.get("text") == "refuse":
            raise RegistryError("UNSUPPORTED", "the everything section refuses <this>", status=400)
        return Show({"said": request.form.get("text")})
    return [Section(id="everything", title="Everything <i>section</i>", template=SECTION_TEMPLATE,
                    values={"who": actor.name, "markup": '<script>alert("section")</script>', "said": None},
                    actions={"note": note}),
            Section(id="collaborators", title="Everything shadowing the collaborators", template="<p>no</p>"),
            {"id": "a-dict", "title": "Everything as a dict", "template": "<p>no</p>"}]
