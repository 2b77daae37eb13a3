"""The Index's routes for its nodes; the body of each is a compact JWS a trusted node signed.

    POST /api/v1/nodes/reports   one report (receiver.py): 200 {"id", "applied", "changed"|"duplicate"}
    POST /api/v1/nodes/access    {"subject", "repositories"}: 200 {"repositories": those the subject may pull}

401 UNAUTHORIZED when no trusted node signed the body (or its signature is out of date), 400 when
the signed content is not a report or question, 413 over BODY_LIMIT.
"""

from __future__ import annotations

import bottle

from registry_core.web import json_response, read_body, request_id

BODY_LIMIT = 256 * 1024


class NodesApi:
    def __init__(self, reports):
        self.reports = reports

    def register(self, app: bottle.Bottle) -> None:
        app.route("/api/v1/nodes/reports", "POST", self.report)
        app.route("/api/v1/nodes/access", "POST", self.access)

    def report(self):
        body = read_body(bottle.request.environ, BODY_LIMIT, "SIZE_INVALID")
        environ = bottle.request.environ
        return json_response(self.reports.receive(body, environ.get("REMOTE_ADDR"), request_id(environ)))

    def access(self):
        body = read_body(bottle.request.environ, BODY_LIMIT, "SIZE_INVALID")
        return json_response({"repositories": self.reports.visible(body)})
