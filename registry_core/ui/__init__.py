"""The web UI: server-rendered pages (Jinja2, auto-escaped), one stylesheet, no script.

`routes.register_ui_routes(app, registry)` adds the pages to a bottle app, as a plugin's
`register_routes` would; `web_app.build_app` merges `routes.build_ui_app(registry)` where the Index is
served (its accounts log visitors in). routes.py parses requests and renders templates; pages.py decides what a visitor
sees (through the same access policy as the API); sessions.py signs the session cookie and its
CSRF tokens; render.py holds the templates' environment; templates/ and static/ ship in the package.
"""
