"""Hook secrets sealed with a key that never enters git: the hook documents in meta.git hold only
the Fernet token (AES-128-CBC with HMAC-SHA256, from `cryptography`), the key lives in
`<keys>/webhook-secrets.key` (mode 0600, beside the token signing key: `auth.keysDir`, default
`<store>/keys/`). Whoever reads the git history sees who configured which hook, never a secret;
the registry can still sign each delivery with it.

Losing the key loses the secrets: the hooks must be given new ones (PATCH `secret`).
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

from registry_core.index.keys import create_once

KEY_FILE = "webhook-secrets.key"
OPENED_KEPT = 1024  # secrets kept opened by their sealed text, at most (looked up every round per hook)


class SecretUnavailable(Exception):
    """A sealed secret cannot be opened (the key was replaced or lost)."""


class Sealer:
    def __init__(self, keys_dir: str):
        self.path = os.path.join(keys_dir, KEY_FILE)
        self._fernet: Fernet | None = None
        self._opened: dict[str, str] = {}  # sealed: opened, with the key this process read

    def _key(self) -> Fernet:
        if self._fernet is None:
            if not os.path.exists(self.path):
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                create_once(self.path, Fernet.generate_key(), 0o600)
            with open(self.path, "rb") as f:
                self._fernet = Fernet(f.read().strip())
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._key().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret `sealed` holds; each is decrypted once a process (the key is read once too)."""
        opened = self._opened.get(sealed)
        if opened is not None:
            return opened
        try:
            opened = self._key().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnavailable(f"the secret cannot be opened with {self.path}: was the key replaced? "
                                    "Give the hook a new secret") from None
        if len(self._opened) >= OPENED_KEPT:
            self._opened.clear()
        self._opened[sealed] = opened
        return opened
