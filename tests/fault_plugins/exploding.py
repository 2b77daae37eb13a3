"""A test plugin that fails on purpose, loaded from a plugins dir (tests/test_hostile_input.py):
the registry's last-resort error handling is what a failing plugin meets.

- GET /_exploding/boom: its route raises an exception nobody expects;
- GET /_exploding/denied: its route aborts with bottle's HTTPError (403 and a text);
- GET /_exploding/refused: its route raises a RegistryError (no route plugin answers it there);
- any /v2/ request for a repository under exploding/: its `permission_allowed` raises.
"""

import bottle

from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl

SECRET = "exploding-plugin-internal-detail"


@hookimpl
def register_routes(app):
    @app.route("/_exploding/boom")
    def boom():
        raise RuntimeError(f"the exploding plugin fails on purpose ({SECRET})")

    @app.route("/_exploding/denied")
    def denied():
        bottle.abort(403, "the exploding plugin says no")

    @app.route("/_exploding/refused")
    def refused():
        raise RegistryError("NAME_UNKNOWN", "the exploding plugin knows no such thing")


@hookimpl
def permission_allowed(repository):
    if repository and repository.startswith("exploding/"):
        raise KeyError(SECRET)
    return None
