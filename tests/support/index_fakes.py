"""STAND-IN for the Index until accounts.py and policy.py are wired into app.py: fakes with exactly
the methods the token routes use, and a token endpoint served from the test process.

The contract they follow (the real ones live in registry_core/index/accounts.py and policy.py):

- `accounts.authenticate(name, secret, client_addr) -> Actor | None`, raising
  `RegistryError("TOOMANYREQUESTS", …, headers={"Retry-After": …})` when rate-limited
- `accounts.issue_refresh_token(actor, client_id) -> str`, `accounts.actor_from_refresh_token(token)`
- `policy.allowed_actions(actor_or_None, repository) -> set[str]`, `policy.may_list_catalog(actor_or_None)`

Once the real Index serves /token, the tests using `TokenServer` switch to the real server.
"""

from __future__ import annotations

import fnmatch
import secrets
import socketserver
import threading
from types import SimpleNamespace
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

from registry_core.config import AuthConfig, Config
from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.index.token_routes import register_token_routes


class FakeAccounts:
    """Users with passwords; a user named in `locked` is rate-limited."""

    def __init__(self, users: dict[str, str], locked: tuple[str, ...] = ()):
        self.users = dict(users)
        self.locked = set(locked)
        self.refresh_tokens: dict[str, tuple[str, str]] = {}
        self.attempts: list[tuple[str, str | None]] = []

    def authenticate(self, name: str, secret: str, client_addr: str | None) -> Actor | None:
        self.attempts.append((name, client_addr))
        if name in self.locked:
            raise RegistryError("TOOMANYREQUESTS", f"too many failed logins for {name}: try again in 60 s",
                                headers={"Retry-After": "60"})
        return Actor(name) if self.users.get(name) == secret else None

    def issue_refresh_token(self, actor: Actor, client_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = (actor.name, client_id)
        return token

    def actor_from_refresh_token(self, token: str) -> Actor | None:
        found = self.refresh_tokens.get(token)
        return Actor(found[0]) if found else None


class FakePolicy:
    """`rules` maps a user name (None: anonymous) to {repository glob: actions}; `catalog` names who
    may list the catalog. Records every question asked."""

    def __init__(self, rules: dict[str | None, dict[str, set[str]]], catalog: tuple[str, ...] = ()):
        self.rules = rules
        self.catalog = set(catalog)
        self.asked: list[tuple[str | None, str]] = []

    def allowed_actions(self, actor: Actor | None, repository: str) -> set[str]:
        who = actor.name if actor else None
        self.asked.append((who, repository))
        allowed: set[str] = set()
        for pattern, actions in self.rules.get(who, {}).items():
            if fnmatch.fnmatchcase(repository, pattern):
                allowed |= set(actions)
        return allowed

    def may_list_catalog(self, actor: Actor | None) -> bool:
        return actor is not None and actor.name in self.catalog


def fake_registry(accounts, policy, issuer, verifier=None, service: str = "registry") -> SimpleNamespace:
    """What `register_token_routes` uses of a `Registry`."""
    config = Config(auth=AuthConfig(issuer=issuer.issuer if issuer else "registry-core", service=service))
    return SimpleNamespace(accounts=accounts, policy=policy, config=config, token_issuer=issuer,
                           token_verifier=verifier)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class TokenServer:
    """A bottle app with the token routes of `registry`, served by wsgiref on 127.0.0.1:<free port>
    in a thread of the test process. `.url` is its base URL, `.realm` its /token URL."""

    def __init__(self, registry):
        self.app = bottle.Bottle()
        register_token_routes(self.app, registry)
        self.server = make_server("127.0.0.1", 0, self.app, server_class=_ThreadingWSGIServer,
                                  handler_class=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.realm = self.url + "/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
