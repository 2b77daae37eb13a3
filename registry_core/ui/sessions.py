"""Web UI sessions: a signed cookie value, the CSRF token bound to it, and the key that signs both.

A session is `user` (None for a visitor who has not logged in), a random `nonce`, an expiry, and
a fingerprint of the user's password hash at login: a changed password ends the sessions opened
with the old one, and a disabled or deleted account has none (the routes look the user up on
every request). The cookie value is `<payload>.<signature>`: the payload is base64url JSON, the
signature its HMAC-SHA256 under the key; nothing in it is secret, and nothing in it can be changed
without the key. The CSRF token of a session is an HMAC of its nonce under the same key, so a form
token taken from one session is refused with any other (a new one is issued at each login).

The key is 32 random bytes in `<keys dir>/ui-session-key` (mode 0600, beside the token signing
key: `auth.keysDir`, default `<store>/keys/`, never in git), made by the first process that needs
it (`keys.create_once`: every worker of the store then shares it). Deleting it logs everyone out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from registry_core.index.keys import create_once
from registry_core.names import is_account_name

KEY_FILE = "ui-session-key"
SESSION_SECONDS = 12 * 3600
_KEY_BYTES = 32


def load_or_create_key(directory: str) -> bytes:
    """The session signing key in `directory`, made the first time (safe with several processes)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, KEY_FILE)
    if not os.path.exists(path):
        create_once(path, secrets.token_hex(_KEY_BYTES).encode(), 0o600)
    with open(path, "rb") as f:
        key = f.read().strip()
    if len(key) < _KEY_BYTES:
        raise ValueError(f"{path} holds {len(key)} bytes, fewer than {_KEY_BYTES}: delete it to have a new "
                         "key made (everyone is logged out)")
    return key


@dataclass(frozen=True)
class Session:
    user: str | None
    nonce: str
    expires: int
    password: str = ""  # the fingerprint of the user's password hash at login; "" for a visitor


class Sessions:
    """Issues, signs and reads sessions, and the CSRF tokens bound to them."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time, lifetime: int = SESSION_SECONDS):
        self._key = key
        self.clock = clock
        self.lifetime = lifetime

    def new(self, user: str | None = None, password_hash: str | None = None) -> Session:
        """A new session (a new nonce, so a new CSRF token) for `user`, or for a visitor."""
        fingerprint = self.fingerprint(password_hash) if user is not None else ""
        return Session(user, secrets.token_urlsafe(18), int(self.clock()) + self.lifetime, fingerprint)

    def encode(self, session: Session) -> str:
        payload = _b64(json.dumps([session.user, session.nonce, session.expires, session.password],
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._sign(b'session', payload)}"

    def decode(self, value: str | None) -> Session | None:
        """The session a cookie value carries; None when it is missing, forged, malformed or expired."""
        if not value or not value.isascii() or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(b"session", payload)):
            return None
        try:
            user, nonce, expires, password = json.loads(_unb64(payload))
        except (ValueError, TypeError, binascii.Error):
            return None
        if (user is not None and not is_account_name(user)) or not isinstance(nonce, str) \
                or not isinstance(expires, int) or not isinstance(password, str):
            return None
        if expires <= self.clock():
            return None
        return Session(user, nonce, expires, password)

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf", session.nonce)

    def csrf_matches(self, session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and token.isascii() and \
            hmac.compare_digest(token, self.csrf_token(session))

    def fingerprint(self, password_hash: str | None) -> str:
        return self._sign(b"password", password_hash or "")[:22]

    def _sign(self, purpose: bytes, text: str) -> str:
        return _b64(hmac.new(self._key, purpose + b"\0" + text.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
