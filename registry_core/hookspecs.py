"""The plugin contract: every hook a plugin can implement, in the order a registry uses them.

Hooks are called with keyword arguments; an implementation may accept any subset of them, so a
hook can grow an argument without breaking plugins. `None` always means "no opinion". The core's
own defaults are plugins registered through these same hooks: filesystem storage and read-only
mode (registry_core/default_plugins.py), and with accounts on, authentication and the default
access policy (registry_core/index/auth.py; open_access.py when auth is off).

Each hook is documented for people in docs/plugins.md; tests/test_docs.py fails when a hook here
is missing there or has no test.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("registry_core")
hookimpl = pluggy.HookimplMarker("registry_core")


# --- configuration and start-up ------------------------------------------------------------------

@hookspec
def plugin_config_schema():
    """Return ``{section: json_schema}`` for the plugin's sections of ``pluginConfig`` in
    registry.yaml. Each section present in the config is validated against its schema at start-up;
    a problem is reported with the config file, the key and the schema's message."""


@hookspec
def plugin_config_formats():
    """Return ``{format_name: check}`` for the ``format`` keywords of the plugin's config schemas,
    for what a pattern cannot check (a network, a URL, a size). ``check(text)`` is called with each
    string of that format and raises ``ValueError`` with a message saying what is wrong; what it
    returns is ignored. A failure is reported like any other schema problem, with the key."""


@hookspec
def register_storage_drivers():
    """Return ``{driver_name: factory}``; ``factory(root=..., options=...)`` returns an object with
    the interface of ``registry_core.storage.driver.StorageDriver``. ``storage.driver`` in
    registry.yaml picks one by name."""


@hookspec
def startup(registry):
    """Called once in every worker process after the registry (``registry_core.app.Registry``) is
    built and before it serves: open connections, start background threads, read plugin config
    (``registry.config.plugin_config``)."""


@hookspec
def register_routes(app, registry):
    """Add routes to the bottle ``app`` (the root application of the process), e.g. an admin API.
    Routes added here run after ``filter_request``; they should call
    ``registry.authorize(request, repository, action)`` to get the acting user."""


@hookspec
def register_commands(cli):
    """Add commands to the ``registry`` click group ``cli``."""


# --- each request --------------------------------------------------------------------------------

@hookspec(firstresult=True)
def filter_request(request, registry):
    """Called first for every request, before routing. Return a ``bottle.HTTPResponse`` or a
    ``registry_core.errors.RegistryError`` to answer the request right away (firewalls, rate
    limits, maintenance mode); ``None`` lets it through. The first non-None answer wins."""


@hookspec(firstresult=True)
def actor_from_request(request, registry):
    """Return the acting user of ``request`` as a ``registry_core.context.Actor`` (or a dict with at
    least ``name``), or ``None`` when this plugin does not recognise the credentials. Raise
    ``RegistryError("UNAUTHORIZED")`` to refuse credentials that are present but wrong. With no
    actor the request is anonymous. The first non-None answer wins."""


@hookspec
def permission_allowed(actor, action, repository, registry):
    """May ``actor`` (an ``Actor`` or ``None`` for anonymous) do ``action`` (``pull``, ``push``,
    ``delete``, ``catalog``, ``login``, ``admin``, or ``signup``: create an account without
    credentials) on ``repository`` (a name, or ``None`` for registry-wide actions)? Return
    ``False`` to deny, ``True`` to allow, ``None`` for no opinion. Any ``False`` denies; otherwise
    any ``True`` allows; otherwise the request is denied."""


@hookspec
def before_pull(event, method, registry):
    """Called before a manifest is served (``method`` ``GET`` or ``HEAD``), after the access
    policy allowed the pull; ``event`` is the ``pull`` Event (``repository``, ``digest``, ``tag``
    when pulled by tag, ``actor``, ``client_addr``). Return a ``RegistryError`` (or a message,
    which becomes ``DENIED``) to refuse it, a dict of headers to add to the answer (rate limits),
    or ``None``. The first refusal stops the call; implementations after it are not asked."""


# --- content -------------------------------------------------------------------------------------

@hookspec
def validate_manifest(repository, reference, manifest, body, context, registry):
    """Check a manifest before it is stored. ``manifest`` is a
    ``registry_core.registry.mediatypes.ParsedManifest`` (media type, config, layers, child
    manifests, subject, artifactType, annotations); ``body`` the exact bytes pushed. Return a list
    of problems (strings a person can act on), or ``None``/``[]``. Any problem rejects the push with
    ``MANIFEST_INVALID`` and the problems as its message."""


@hookspec(firstresult=True)
def resolve_upstream(repository, registry):
    """For a pull-through mirror: return an upstream for ``repository`` (the name in this
    registry), or ``None``. The first non-None answer wins. The upstream is an object with
    ``manifest(repository, reference) -> (body: bytes, media_type: str) | None`` and
    ``blob(repository, digest) -> iterable of bytes | None`` (with a ``size`` attribute when the
    size is known: the blob is then streamed to the client while it is stored); what it returns is
    verified by digest, stored (in a repository owned by the mirror, authored ``registry``) and
    served. Optional members: ``visibility`` (``public``, the default, or ``private``: of the
    repositories it fills, and how the access policy judges one not filled yet), ``tag_ttl``
    (seconds after which a manifest pulled by tag is revalidated; ``None``: never),
    ``head_manifest(repository, tag) -> digest | None``, ``tags(repository) -> list | None``,
    ``referrers(repository, digest) -> list of descriptors``, ``describe(repository) -> str`` (the
    ``upstream`` of the repository's document) and ``url`` (named in the log). A method raises
    ``RegistryError`` with a 5xx status when the upstream fails (timeout, refused, 429, 5xx): cached
    content is then served instead, and what is not cached answers that error."""


# --- events --------------------------------------------------------------------------------------

@hookspec(firstresult=True)
def before_event(event, manifest, registry):
    """Called before a change is made (``event.action`` is ``push``, ``delete``, ``mount``,
    ``star``, ``unstar``, ``comment``, ``comment-edited``, ``comment-deleted``, ``readme``,
    ``bookmark`` or ``unbookmark``; a tag moved by a push is asked as that
    ``push``, with ``event.tag`` and ``event.previous_digest``, where the tag points now, ``None``
    for a new tag; ``event`` a ``registry_core.events.Event``). For a manifest push, ``manifest``
    is its ``ParsedManifest`` (``None`` for everything else). Return a ``RegistryError`` (or a
    message string, which becomes ``DENIED``) to refuse it: read-only mode, quotas. ``None``
    allows."""


@hookspec
def track_event(event, registry):
    """Called after an operation succeeded (push, pull, delete, mount, tag, untag,
    repository-created, star, unstar, comment, comment-edited, comment-deleted, readme,
    bookmark, unbookmark, mirror-fill): webhooks, audit
    logs, metrics. An exception is logged and never fails the
    request. Keep it fast or hand work to a thread: it runs on the request path."""


# --- user interface ------------------------------------------------------------------------------

@hookspec
def ui_panels(page, repository, actor, registry):
    """Return a panel (or a list of panels) to show on the web UI page ``page`` (``home``, or
    ``repository`` for ``repository``; ``None`` on home) to ``actor`` (``None``: anonymous): each
    a dict with ``title`` (text) and either ``text`` (escaped) or ``html`` (cleaned against the
    Markdown allow-list: no script, handler or style survives). ``None`` adds nothing."""


@hookspec
def ui_settings_sections(repository, actor, registry):
    """Return a section (or a list of sections) for the web UI's settings page of ``repository``,
    which its admins alone see: ``actor`` may ``admin`` it (the UI checked before asking). Each is
    a ``registry_core.ui.sections.Section``: an ``id``, a ``title``, a Jinja2 ``template``
    (rendered with every value escaped) with its ``values``, and ``actions``: the handlers of its
    forms' POSTs to ``/r/<repository>/settings/<id>/<action>``, which the UI calls only after it
    checked the form's CSRF token and that the visitor is an admin. ``None`` adds nothing."""
