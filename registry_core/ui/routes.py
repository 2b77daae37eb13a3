"""The web UI's routes: which page family answers each URL (each parses the request, finds the
visitor, asks ui/pages.py or a service, renders a template).

browse_routes.py (reads only):
    GET  /                          repositories recently pushed and most starred; a search box; plugins' panels
    GET  /search?q=&page=           search results, 25 a page
    GET  /r/<name>                  a repository: description, pull command, tags, stars, comments, panels
    GET  /r/<name>/tags/<tag>       a tag: digest, labels, its image graph as SVG, platforms, layers
    GET  /r/<name>/history?before=  its events from meta.git, 25 a page (index/repository_history.py)
    GET  /u/<name>                  a user's or organisation's repositories; your stars and bookmarks
    GET  /static/ui.css, /static/ui.js
community_forms.py (logged in, readers of the repository):
    POST /r/<name>/star, /unstar, /bookmark, /unbookmark
    POST /r/<name>/comments, /r/<name>/comments/<id>/edit, …/<id>/delete
settings_routes.py (the repository's admins):
    GET  /r/<name>/settings         visibility, description, README, collaborators, delete a tag, and
                                    the plugins' sections (ui/sections.py: the webhooks plugin's hooks)
    POST /r/<name>/settings, …/settings/delete-tag, …/settings/collaborators, …/collaborators/<user>/remove
    POST /r/<name>/settings/<section>/<action>   a plugin section's form, checked here, handled by its plugin
account_routes.py:
    GET  /settings/tokens           your access tokens (a new one's secret shown once) and password
    POST /settings/tokens, /settings/tokens/<id>/revoke, /settings/password (logged in)
    GET  /login, POST /login        password login; `next` is followed only when it is a local path
    POST /logout
    GET  /signup, POST /signup      where the access decision `signup` allows it (else the 404 page)

What they share is site.py: who is visiting (the session cookie, ui/sessions.py, never an
Authorization header; a logged-in visitor is judged by the access policy as the user themself),
the CSRF check of every POST (403 without it), the security headers on every answer
(`SECURITY_HEADERS`: only the site's own script file may run, no page may be framed), and HTML
failures: a RegistryError raised by a route or a service becomes a page with its status and
message, and every 404 is one page whatever the cause, so a private repository cannot be told
from a missing one. Anything unexpected is left to `web.ErrorsAsJson`, which logs it and answers
the JSON 500 naming the request id (no traceback reaches the visitor).
"""

from __future__ import annotations

import bottle

from registry_core.ui.account_routes import AccountRoutes
from registry_core.ui.browse_routes import BrowseRoutes
from registry_core.ui.community_forms import CommunityForms
from registry_core.ui.settings_routes import SettingsRoutes
from registry_core.ui.site import UiResponses
from registry_core.web import ERROR_PAGE


def build_ui_app(registry) -> bottle.Bottle:
    """The UI's pages on a bottle app of their own (their bottle plugin applies to them only),
    for `web_app.build_app` to merge into the root."""
    app = bottle.Bottle()
    register_ui_routes(app, registry)
    return app


def register_ui_routes(app: bottle.Bottle, registry) -> None:
    """Add the pages to `app`, as a plugin's `register_routes` would."""
    ui = WebUi(registry)
    app.install(UiResponses(ui.error_page, ui.login_gate))
    app.config[ERROR_PAGE] = ui.refusal_page  # a request refused before routing (web.refusal_response)
    route = app.route
    route("/", "GET", ui.home, name="ui_home")
    route("/search", "GET", ui.search, name="ui_search")
    route("/login", "GET", ui.login_form, name="ui_login")
    route("/login", "POST", ui.login)
    route("/logout", "POST", ui.logout, name="ui_logout")
    route("/signup", "GET", ui.signup_form, name="ui_signup")
    route("/signup", "POST", ui.signup)
    route("/static/ui.css", "GET", ui.stylesheet, name="ui_css")
    route("/static/ui.js", "GET", ui.script, name="ui_js")
    route("/u/<account>", "GET", ui.account, name="ui_account")
    route("/settings/tokens", "GET", ui.tokens, name="ui_tokens")
    route("/settings/tokens", "POST", ui.create_token)
    route("/settings/tokens/<token_id>/revoke", "POST", ui.revoke_token, name="ui_revoke_token")
    route("/settings/password", "POST", ui.change_password, name="ui_password")
    route("/r/<name:path>/tags/<tag>", "GET", ui.tag, name="ui_tag")
    route("/r/<name:path>/history", "GET", ui.history, name="ui_history")
    route("/r/<name:path>/settings", "GET", ui.repository_settings, name="ui_repository_settings")
    route("/r/<name:path>/settings", "POST", ui.save_repository_settings)
    route("/r/<name:path>/settings/delete-tag", "POST", ui.delete_tag, name="ui_delete_tag")
    route("/r/<name:path>/settings/collaborators", "POST", ui.set_collaborator, name="ui_collaborators")
    route("/r/<name:path>/settings/collaborators/<user>/remove", "POST", ui.remove_collaborator,
          name="ui_remove_collaborator")
    route("/r/<name:path>/settings/<section_id>/<action>", "POST", ui.section_action, name="ui_section_action")
    route("/r/<name:path>/star", "POST", ui.star, name="ui_star")
    route("/r/<name:path>/unstar", "POST", ui.unstar, name="ui_unstar")
    route("/r/<name:path>/bookmark", "POST", ui.bookmark, name="ui_bookmark")
    route("/r/<name:path>/unbookmark", "POST", ui.unbookmark, name="ui_unbookmark")
    route("/r/<name:path>/comments/<comment_id>/edit", "POST", ui.edit_comment, name="ui_edit_comment")
    route("/r/<name:path>/comments/<comment_id>/delete", "POST", ui.delete_comment, name="ui_delete_comment")
    route("/r/<name:path>/comments", "POST", ui.add_comment, name="ui_comments")
    route("/r/<name:path>", "GET", ui.repository, name="ui_repository")


class WebUi(BrowseRoutes, CommunityForms, SettingsRoutes, AccountRoutes):
    """Every page of the UI on one object: one session key, one `Pages`, one visitor per request."""
