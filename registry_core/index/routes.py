"""The Index role's HTTP surface: the token service, the accounts API (/api/v1/), and the
community API (stars, comments, search; also Docker's /v1/search)."""

from __future__ import annotations

import bottle

from registry_core.web import RegistryErrors


def build_index_app(registry) -> bottle.Bottle:
    from registry_core.index.api import register_api_routes
    from registry_core.index.community_routes import register_community_routes
    from registry_core.index.token_routes import register_token_routes

    app = bottle.Bottle()
    app.install(RegistryErrors())
    register_token_routes(app, registry)
    add_summary = register_community_routes(app, registry)  # before the accounts API's PATCH <name:path>
    register_api_routes(app, registry)
    add_summary()  # GET <name:path> last: after the accounts API's <name:path>/collaborators
    return app
