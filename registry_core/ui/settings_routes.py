"""A repository's settings page, for its admins: visibility, descriptions, README, collaborators,
deleting a tag, and the plugins' sections (ui/sections.py: the webhooks plugin's hooks, say),
whose forms this page's routes check and hand to their plugin. A reader who is not an admin gets
the 403 page; anyone who may not see the repository, the 404 page."""

from __future__ import annotations

import bottle

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.index import collaborators as repository_access
from registry_core.index.accounts import check_account_name
from registry_core.names import canonical_name, is_tag
from registry_core.ui.sections import ANCHOR, SectionForm, SectionRequest, Show, plugin_sections, render_section
from registry_core.ui.site import MAX_DESCRIPTION, NotFound, Site, text_field
from registry_core.web import base_url, request_context


class SettingsRoutes(Site):
    def _admin_of(self, name: str) -> Actor:
        """The visitor, an admin of repository `name`; the 404 page to those who may not see it,
        the 403 page to its other readers."""
        _, actor = self.visitor()
        if not self.pages.readable(actor, name):
            raise NotFound()
        if actor is None or not self.registry.access.may(actor, name, "admin"):
            raise RegistryError("DENIED", f"only the admins of {name} change its settings")
        return actor

    def repository_settings(self, name: str):
        if canonical_name(name) != name:
            return self.redirect(f"/r/{canonical_name(name)}/settings")
        longer = self._named_like_a_page(name, "settings")
        if longer is not None:
            return self.repository(longer)
        return self._settings_page(name, self._admin_of(name))

    def _settings_page(self, name: str, actor: Actor, status: int = 200, section_id: str | None = None,
                       values: dict | None = None, problem: str | None = None):
        """The settings page; the section `section_id` shown with `values` added to its own and
        `problem` (what its action answered)."""
        shown = self.pages.repository(actor, name)
        collaborators = sorted(repository_access.collaborators(self.registry.meta, name), key=lambda c: c["user"])
        session, _ = self.visitor()
        csrf, site = self.sessions.csrf_token(session), base_url(bottle.request, self.config.public_url)
        sections = []
        for section in plugin_sections(self.registry, name, actor):
            mine = section.id == section_id
            body = render_section(section, {**section.values, **(values or {})} if mine else section.values,
                                  problem if mine else None, csrf=csrf, repository=name, site=site)
            sections.append({"id": section.id, "title": section.title, "body": body})
        return self.page("repository_settings.html", status, repository=shown, message=None,
                         collaborators=collaborators, roles=repository_access.ROLES, sections=sections)

    def section_action(self, name: str, section_id: str, action: str):
        """A form of a plugin's section: checked (CSRF, then admin) before its handler is called."""
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        section = next((s for s in plugin_sections(self.registry, name, actor) if s.id == section_id), None)
        handler = section.actions.get(action) if section is not None else None
        if handler is None:
            raise NotFound()
        decoded = form.decode()
        request = SectionRequest(name, actor, request_context(bottle.request, actor),
                                 SectionForm({key: decoded.getall(key) for key in decoded.keys()}))
        try:
            answer = handler(request)
        except RegistryError as error:
            if not 400 <= error.status < 500 or error.status in (403, 404):
                raise
            return self._settings_page(name, actor, error.status, section_id, problem=error.message)
        if isinstance(answer, Show):
            return self._settings_page(name, actor, answer.status, section_id, answer.values)
        anchor = answer if isinstance(answer, str) and ANCHOR.fullmatch(answer) else f"#{section_id}"
        return self.redirect(f"/r/{name}/settings{anchor}")

    def save_repository_settings(self, name: str):
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        context = request_context(bottle.request, actor)
        document = self.registry.repositories.require(name)
        visibility = form.getunicode("visibility") or document["visibility"]
        # A field the form leaves out is kept as it is (a missing README field is not an empty README).
        description = text_field(form, "description") if "description" in form else document.get("description", "")
        if "\n" in description:
            raise RegistryError("UNSUPPORTED", "the short description is one line: the README takes the rest",
                                status=400)
        if len(description) > MAX_DESCRIPTION:
            raise RegistryError("UNSUPPORTED", f"the short description is {len(description)} characters long; "
                                f"the limit is {MAX_DESCRIPTION}", status=400)
        changed_visibility = visibility if visibility != document["visibility"] else None
        changed_description = description if description != document.get("description", "") else None
        if changed_visibility is not None or changed_description is not None:
            repository_access.set_visibility(self.registry.meta, context, name, changed_visibility,
                                             changed_description)
        if "readme" in form:
            self.pages.readmes.set(context, name, text_field(form, "readme"))
        if not self.pages.readable(actor, name):
            return self.redirect("/")
        return self.redirect(f"/r/{name}/settings")

    def delete_tag(self, name: str):
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        tag = form.getunicode("tag") or ""
        if not is_tag(tag):
            raise RegistryError("TAG_INVALID", "give the name of one of the repository's tags", status=400)
        if not self.registry.access.may(actor, name, "delete"):
            raise RegistryError("DENIED", f"{actor.name} may not delete tags of {name}")
        self.registry.manifests.delete(name, tag, request_context(bottle.request, actor))
        return self.redirect(f"/r/{name}/settings")

    def set_collaborator(self, name: str):
        """Give a user a role on the repository, or change their role (one commit by the admin)."""
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        user = (form.getunicode("user") or "").strip()
        check_account_name(user)
        repository_access.set_collaborator(self.registry.meta, request_context(bottle.request, actor), name, user,
                                           form.getunicode("role") or "")
        return self.redirect(f"/r/{name}/settings#collaborators")

    def remove_collaborator(self, name: str, user: str):
        self.checked_form()
        actor = self._admin_of(name)
        check_account_name(user)
        repository_access.set_collaborator(self.registry.meta, request_context(bottle.request, actor), name, user,
                                           None)
        return self.redirect(f"/r/{name}/settings#collaborators")
