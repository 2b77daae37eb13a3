"""The Index role's HTTP surface: the token service and the accounts API (/api/v1/)."""

from __future__ import annotations

import bottle

from registry_core.web import RegistryErrors


def build_index_app(registry) -> bottle.Bottle:
    from registry_core.index.api import register_api_routes
    from registry_core.index.token_routes import register_token_routes

    app = bottle.Bottle()
    app.install(RegistryErrors())
    register_token_routes(app, registry)
    register_api_routes(app, registry)
    return app
