"""The token endpoint of the Index: `GET /token` (Docker token spec) and `POST /token` (its OAuth2
form), where clients trade credentials for a registry token after a registry's Bearer challenge.

    GET  /token?service=registry&scope=repository:alice/app:pull,push[&scope=…][&offline_token=true&client_id=…]
         Authorization: Basic …   (none: anonymous)
      -> {"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}
    POST /token   grant_type=password&username=…&password=…  |  grant_type=refresh_token&refresh_token=…
                  &service=…&client_id=…&scope=<space separated>[&access_type=offline]
      -> {"access_token", "token_type": "Bearer", "expires_in", "issued_at", "scope"[, "refresh_token"]}

The token grants the intersection of what was asked and what the policy allows; granting less, or
nothing, is not an error. Failures answer OAuth2-style JSON, `{"error", "error_description"}`,
plus `details`, which Docker's client shows to the user; wrong credentials are 401.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qs

import bottle

from registry_core.errors import RegistryError
from registry_core.index.tokens import InvalidScope, format_scopes, grant, parse_scopes
from registry_core.web import read_body

FORM_LIMIT = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenRequestError(Exception):
    """A refused token request: HTTP status, OAuth2 error code, and a message for the person."""

    def __init__(self, status: int, error: str, description: str, headers: dict | None = None):
        self.status, self.error, self.description = status, error, description
        self.headers = headers or {}
        super().__init__(description)

    def response(self) -> bottle.HTTPResponse:
        body = {"error": self.error, "error_description": self.description, "details": self.description}
        return _json(body, self.status, self.headers)


def register_token_routes(app: bottle.Bottle, registry) -> None:
    """Add GET and POST /token to `app`. A process without a signing key (`--role registry`) issues
    no tokens and gets no routes: its clients are sent to the Index's realm."""
    if registry.token_issuer is None:
        return
    endpoint = TokenEndpoint(registry)
    app.route("/token", "GET", endpoint.answer(endpoint.get), name="token")
    app.route("/token", "POST", endpoint.answer(endpoint.post), name="token_oauth2")


class TokenEndpoint:
    def __init__(self, registry):
        self.registry = registry

    def answer(self, handler):
        def callback():
            try:
                return handler(bottle.request)
            except TokenRequestError as refused:
                return refused.response()
            except RegistryError as error:  # from accounts: 429 with Retry-After, 503…
                return TokenRequestError(error.status, error.code.lower(), error.message, error.headers).response()
        return callback

    # --- GET: the token spec --------------------------------------------------------------------

    def get(self, request: bottle.BaseRequest) -> bottle.HTTPResponse:
        query = parse_qs(request.environ.get("QUERY_STRING", ""), keep_blank_values=True)
        self._check_service(_first(query, "service"))
        scopes = self._scopes(" ".join(query.get("scope", [])))
        actor = None
        header = request.environ.get("HTTP_AUTHORIZATION")
        if header:
            name, secret = self._basic_credentials(header)
            actor = self._authenticate(request, name, secret, challenge=True)
        issued, granted = self._issue(actor, scopes)
        body = {"token": issued.token, "access_token": issued.token, "expires_in": issued.expires_in,
                "issued_at": issued.issued_at}
        if actor is not None and _first(query, "offline_token").lower() == "true":
            body["refresh_token"] = self.registry.accounts.issue_refresh_token(actor, _first(query, "client_id"))
        return _json(body)

    # --- POST: OAuth2 (docs/spec/auth/oauth.md) ---------------------------------------------------

    def post(self, request: bottle.BaseRequest) -> bottle.HTTPResponse:
        form = self._form(request)
        grant_type = _first(form, "grant_type")
        client_id = _first(form, "client_id")
        if not grant_type:
            raise TokenRequestError(400, "invalid_request", "grant_type is required: password or refresh_token")
        if grant_type not in ("password", "refresh_token"):
            raise TokenRequestError(400, "unsupported_grant_type",
                                    f"grant_type {grant_type!r} is not supported: use password or refresh_token")
        if not client_id:
            raise TokenRequestError(400, "invalid_request", "client_id is required: a name for your client, "
                                    "recorded with the refresh tokens it gets")
        self._check_service(_first(form, "service"))
        scopes = self._scopes(_first(form, "scope"))
        refresh_token = None
        if grant_type == "password":
            username, password = _first(form, "username"), _first(form, "password")
            if not username or not password:
                raise TokenRequestError(400, "invalid_request", "grant_type=password needs username and password")
            actor = self._authenticate(request, username, password, challenge=False)
            if _first(form, "access_type") == "offline":
                refresh_token = self.registry.accounts.issue_refresh_token(actor, client_id)
        else:
            refresh_token = _first(form, "refresh_token")
            if not refresh_token:
                raise TokenRequestError(400, "invalid_request", "grant_type=refresh_token needs refresh_token")
            actor = self.registry.accounts.actor_from_refresh_token(refresh_token)
            if actor is None:
                raise TokenRequestError(401, "invalid_grant", "the refresh token is unknown, expired or revoked: "
                                        "log in again")
        issued, granted = self._issue(actor, scopes)
        body = {"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in,
                "issued_at": issued.issued_at, "scope": format_scopes(granted)}
        if refresh_token:
            body["refresh_token"] = refresh_token
        return _json(body)

    # --- shared steps ---------------------------------------------------------------------------

    def _issue(self, actor, scopes):
        granted = grant(self.registry.policy, actor, scopes)
        return self.registry.token_issuer.issue(actor.name if actor else "", granted), granted

    def _check_service(self, service: str) -> None:
        ours = self.registry.token_issuer.service
        if service and service != ours:
            raise TokenRequestError(400, "invalid_request", f"this token service issues tokens for the service "
                                    f"{ours!r}, not {service!r}: check the registry's auth.token.service")

    @staticmethod
    def _scopes(text: str):
        try:
            return parse_scopes(text)
        except InvalidScope as e:
            raise TokenRequestError(400, "invalid_scope", str(e)) from None

    def _authenticate(self, request, name: str, secret: str, challenge: bool):
        actor = self.registry.accounts.authenticate(name, secret, request.environ.get("REMOTE_ADDR"))
        if actor is None:
            headers = {"WWW-Authenticate": self._basic_challenge()} if challenge else None
            raise TokenRequestError(401, "invalid_grant", "incorrect username or password", headers)
        return actor

    def _basic_challenge(self) -> str:
        return f'Basic realm="{self.registry.token_issuer.service}"'

    def _basic_credentials(self, header: str) -> tuple[str, str]:
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise TokenRequestError(401, "invalid_request", f"the token endpoint takes Basic credentials, "
                                    f"not {scheme}; send none for anonymous access",
                                    {"WWW-Authenticate": self._basic_challenge()})
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        name, separator, secret = _text(decoded).partition(":")
        if not separator or not name:
            raise TokenRequestError(400, "invalid_request", "the Basic credentials are not base64 of "
                                    "<username>:<password>")
        return name, secret

    def _form(self, request: bottle.BaseRequest) -> dict[str, list[str]]:
        content_type = request.environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise TokenRequestError(400, "invalid_request", "POST /token takes an "
                                    "application/x-www-form-urlencoded form (RFC 6749)")
        try:
            body = read_body(request.environ, FORM_LIMIT, code="SIZE_INVALID")
        except RegistryError as e:
            raise TokenRequestError(e.status, "invalid_request", e.message) from None
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise TokenRequestError(400, "invalid_request", "the form is not valid UTF-8 "
                                    "application/x-www-form-urlencoded") from None


def _first(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _json(document: dict, status: int = 200, headers: dict | None = None) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(document), status=status,
                               headers={"Content-Type": "application/json", **_NO_STORE, **(headers or {})})
