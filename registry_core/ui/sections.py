"""Plugins' sections of a repository's settings page (the `ui_settings_sections` hook).

A plugin answers `Section`s for the admins of a repository. Each is drawn on /r/<name>/settings
under its title from the plugin's Jinja2 template, in the UI's own environment (every value
escaped), and its forms POST to /r/<name>/settings/<section id>/<action>. That route is the UI's
(settings_routes.py): it checks the form's CSRF token and that the visitor is an admin of the
repository, then asks the plugins for their sections again, for this repository and this admin,
and calls the action's handler with a `SectionRequest`. A plugin adds no route of its own for its
forms, so neither check can be left out.

A handler answers None (back to the settings page, at the section), an anchor (`"#hook-1"`: back
to the page there) or `Show(values)` (the page rendered at once with `values` added to the
section's: what is shown once, such as a new secret). A RegistryError it raises with a 4xx status
other than 403 and 404 shows the page again with the message at the section; any other is the
UI's error page. A section of another shape is left out and logged; a hook or a template that
fails costs the page that section (logged), never the page.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

from markupsafe import Markup

from registry_core.context import Actor, Context
from registry_core.ui.render import environment

SECTION_ID = re.compile(r"[a-z][a-z0-9-]{0,31}")
ACTION = re.compile(r"[a-z][a-z0-9-]{0,31}")
ANCHOR = re.compile(r"#[A-Za-z][A-Za-z0-9_-]{0,99}")
RESERVED = frozenset({"collaborators", "delete-tag"})  # the settings page's own form paths
MAX_TITLE = 200
log = logging.getLogger("registry_core.ui")


class SectionForm:
    """The fields of a section's form (text, with a browser's CRLF line ends as LF)."""

    def __init__(self, fields: dict[str, list[str]]):
        self._fields = {key: [value.replace("\r\n", "\n").replace("\r", "\n") for value in values]
                        for key, values in fields.items()}

    def get(self, key: str, default: str = "") -> str:
        """The field's (first) value; `default` when the form has none."""
        values = self._fields.get(key)
        return values[0] if values else default

    def getall(self, key: str) -> list[str]:
        """Every value of the field (checkboxes of one name), in the form's order."""
        return list(self._fields.get(key, []))

    def __contains__(self, key: str) -> bool:
        return key in self._fields


@dataclass(frozen=True)
class SectionRequest:
    """What an action's handler is given: the repository, the admin who sent the form (as an
    `Actor`, and as the `Context` that authors the commits of what they change) and the form."""
    repository: str
    actor: Actor
    context: Context
    form: SectionForm


@dataclass(frozen=True)
class Show:
    """A handler's answer: render the settings page at once (with `status`), `values` added to
    the section's values, instead of redirecting to it. For what is shown once only."""
    values: dict
    status: int = 200


@dataclass(frozen=True)
class Section:
    """A plugin's section of a repository's settings page.

    `id`: `[a-z][a-z0-9-]{0,31}`, the section's anchor (`#<id>`) and the folder of its forms'
    paths (`/r/<name>/settings/<id>/<action>`); `title`: text; `template`: Jinja2 source, rendered
    with `section` (`values`), `problem` (the message of a refused action, else None), `csrf` (the
    token every form must send as the field `csrf`), `action` (`/r/<name>/settings/<id>`),
    `repository` (its name) and `site` (the registry's base URL); `actions`: action name
    (`[a-z][a-z0-9-]{0,31}`) → handler(SectionRequest)."""
    id: str
    title: str
    template: str
    values: dict = field(default_factory=dict)
    actions: dict[str, Callable[[SectionRequest], object]] = field(default_factory=dict)


def plugin_sections(registry, repository: str, actor: Actor) -> list[Section]:
    """The plugins' sections of `repository`'s settings page for `actor`, an admin of it (the
    caller checked), in the plugins' order; malformed ones and duplicate ids left out."""
    try:
        answers = registry.hooks.ui_settings_sections(repository=repository, actor=actor, registry=registry)
    except Exception:
        log.exception("a plugin's ui_settings_sections failed for %s; its settings page has no plugin sections",
                      repository)
        return []
    found, seen = [], set()
    for answer in answers:
        for section in answer if isinstance(answer, list) else [answer]:
            if not well_formed(section) or section.id in seen:
                log.warning("a plugin's ui_settings_sections answered a section the settings page cannot show "
                            "(a registry_core.ui.sections.Section with an id of its own): %.200r", section)
                continue
            seen.add(section.id)
            found.append(section)
    return found


def well_formed(section) -> bool:
    return isinstance(section, Section) and isinstance(section.id, str) and bool(SECTION_ID.fullmatch(section.id)) \
        and section.id not in RESERVED and isinstance(section.title, str) and 0 < len(section.title.strip()) \
        and len(section.title) <= MAX_TITLE and isinstance(section.template, str) \
        and isinstance(section.values, dict) and isinstance(section.actions, dict) \
        and all(isinstance(name, str) and ACTION.fullmatch(name) and callable(handler)
                for name, handler in section.actions.items())


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    return environment().from_string(source)


def render_section(section: Section, values: dict, problem: str | None, *, csrf: str, repository: str,
                   site: str) -> Markup:
    """The section's body as the page shows it; a note (and a log line) when its template fails."""
    try:
        html = _compiled(section.template).render(section=values, problem=problem, csrf=csrf, repository=repository,
                                                  action=f"/r/{repository}/settings/{section.id}", site=site)
    except Exception:
        log.exception("the template of the settings section %r failed for %s", section.id, repository)
        return Markup('<p class="problem">This section could not be shown: its plugin failed (see the '
                      "registry's log).</p>")
    # Rendered by the autoescaping environment: what the values hold reached the markup as text.
    return Markup(html)
