"""The node's report key, and reports as signed JWS.

A node signs what it sends its Index with an Ed25519 key of its own, kept outside git:

    <store>/keys/node-report-key.pem     PKCS#8 private key, mode 0600, made on first use

`registry node-key` prints its public half as one OpenSSH line (`ssh-ed25519 AAAA…`), which the
Index's operator lists in `pluginConfig.reporting.nodes`. The Index also takes a PEM public key,
Ed25519 or EC P-256 (ES256).

A message is a compact JWS (RFC 7515): header `{"alg": "EdDSA", "kid": <node>}`, claims
`{"iss": <node>, "aud": AUDIENCE, "iat", "exp", …}`. It is signed at each attempt and lives
LIFETIME seconds, so a message captured on the way can be replayed only briefly, and the Index
remembers the report ids it applied for longer than that (receiver.py): a replay changes nothing.
"""

from __future__ import annotations

import os
import time

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry_core.index.keys import create_once
from registry_core.meta.documents import DocumentInvalid

KEY_FILE = "node-report-key.pem"
AUDIENCE = "registry-core-index"
LIFETIME = 300   # seconds a signed message is accepted for
LEEWAY = 60      # clocks of the node and the Index may differ this much


class NotSigned(Exception):
    """A message that is not signed by a trusted node; the message says why (for the 401)."""


def load_or_create(keys_dir: str) -> Ed25519PrivateKey:
    """The node's private key in `keys_dir`, made the first time (safe from several processes)."""
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    path = os.path.join(keys_dir, KEY_FILE)
    if not os.path.exists(path):
        create_once(path, Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise DocumentInvalid(path, "the node's report key must be an Ed25519 key: delete it to have one made")
    return key


def public_line(key: Ed25519PrivateKey) -> str:
    """The public key as one OpenSSH line, for the Index's `nodes` list."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def read_public_key(text: str):
    """An Ed25519 or EC P-256 public key from an OpenSSH line or a PEM block; ValueError otherwise."""
    data = text.strip().encode()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_ssh_public_key(data.split(b"\n")[0])
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"not a public key (an `ssh-ed25519 …` line, as `registry node-key` prints it, "
                         f"or a PEM public key): {e}") from None
    if isinstance(key, Ed25519PublicKey) or (isinstance(key, ec.EllipticCurvePublicKey)
                                             and key.curve.name == "secp256r1"):
        return key
    raise ValueError(f"a {type(key).__name__} cannot sign reports: use an Ed25519 or EC P-256 key")


def parse_public_key(text: str, where: str):
    try:
        return read_public_key(text)
    except ValueError as e:
        raise DocumentInvalid(where, str(e)) from None


def public_key_text(text: str) -> None:
    """The check of the config's format `node-public-key`."""
    read_public_key(text)


def public_key_file(path: str) -> None:
    """The check of the config's format `node-key-file`: the file is read and its key parsed."""
    try:
        with open(path) as f:
            text = f.read(65536)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    read_public_key(text)


def algorithm_of(public_key) -> str:
    return "EdDSA" if isinstance(public_key, Ed25519PublicKey) else "ES256"


def sign(key: Ed25519PrivateKey, node: str, claims: dict, now: float | None = None) -> bytes:
    """A compact JWS of `claims` from `node`, valid LIFETIME seconds from now."""
    issued = int(now if now is not None else time.time())
    payload = {**claims, "iss": node, "aud": AUDIENCE, "iat": issued, "exp": issued + LIFETIME}
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": node}).encode()


def verify(message: bytes, trusted: dict) -> dict:
    """The claims of `message` if a node in `trusted` ({name: public key}) signed it and it is
    current; raises NotSigned otherwise."""
    try:
        text = message.decode("ascii").strip()
        header = jwt.get_unverified_header(text)
    except (UnicodeDecodeError, jwt.InvalidTokenError):
        raise NotSigned("the body is not a signed report (a compact JWS)") from None
    node = header.get("kid")
    key = trusted.get(node) if isinstance(node, str) else None
    if key is None:
        raise NotSigned(f"no trusted node named {node!r}: list its public key in the Index's "
                        "pluginConfig.reporting.nodes")
    try:
        claims = jwt.decode(text, key, algorithms=[algorithm_of(key)], audience=AUDIENCE, issuer=node,
                            leeway=LEEWAY, options={"require": ["iss", "aud", "iat", "exp"]})
    except jwt.InvalidTokenError as e:
        raise NotSigned(f"the report of node {node} does not verify ({e}): check that the Index lists "
                        "the node's current key (`registry node-key` on the node)") from None
    if claims["exp"] - claims["iat"] > LIFETIME:
        raise NotSigned(f"the report of node {node} claims to be valid for longer than {LIFETIME}s")
    return claims
