"""Commits signed by the node's key, in git's SSH signature format, and their verification.

Every commit the registry writes carries a `gpgsig` header: an SSHSIG signature (namespace `git`,
SHA-512; the format of OpenSSH's PROTOCOL.sshsig, which `git verify-commit` and `git log
--show-signature` check with `gpg.format=ssh`) of the commit without that header, made with an
Ed25519 key kept in `<store>/keys/` and never in git. A commit written around the registry (`git
commit-tree`, an edited history) has no signature, or none by a trusted key, and shows as such.

Files (created with the store, or when a store that has none is opened by a process that writes):

    <store>/keys/meta-signing-key        the private key (OpenSSH format, mode 0600)
    <store>/keys/meta-signing-key.pub    its public key
    <store>/keys/meta-allowed-signers    git's allowed signers file: the trusted node keys, one a line

meta.git's own config sets `gpg.format=ssh` and `gpg.ssh.allowedSignersFile` to that file, so git
verifies in the store with no setup. Another node's key is trusted by adding its `.pub` line to
the allowed signers file (`registry@node <key>` with `namespaces="git"`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import struct

import pygit2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEYS_DIR = "keys"
KEY_FILE = "meta-signing-key"
ALLOWED_SIGNERS = "meta-allowed-signers"
PRINCIPAL = "registry@localhost"
NAMESPACE = b"git"
HASH = b"sha512"
KEY_TYPE = b"ssh-ed25519"
_MAGIC = b"SSHSIG"
log = logging.getLogger("registry_core")
_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_strings(data: bytes) -> list[bytes]:
    strings, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError("truncated")
        (length,) = struct.unpack(">I", data[at:at + 4])
        if at + 4 + length > len(data):
            raise ValueError("truncated")
        strings.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return strings


def public_blob(key: Ed25519PublicKey) -> bytes:
    """The key in SSH wire format (what `ssh-ed25519 AAAA…` encodes in base64)."""
    return _string(KEY_TYPE) + _string(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _signed_data(payload: bytes) -> bytes:
    return _MAGIC + _string(NAMESPACE) + _string(b"") + _string(HASH) + _string(hashlib.sha512(payload).digest())


class CommitSigner:
    """Signs commit payloads with one Ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey):
        self.key = key
        self.public = public_blob(key.public_key())

    def sign(self, payload: bytes) -> str:
        """The armored SSH signature of `payload`, as git puts it in `gpgsig` (no final newline)."""
        signature = _string(KEY_TYPE) + _string(self.key.sign(_signed_data(payload)))
        blob = _MAGIC + struct.pack(">I", 1) + _string(self.public) + _string(NAMESPACE) + _string(b"") \
            + _string(HASH) + _string(signature)
        text = base64.b64encode(blob).decode()
        return "\n".join([_BEGIN, *(text[i:i + 70] for i in range(0, len(text), 70)), _END])


def keys_dir(meta_path: str) -> str:
    """`<store>/keys` for the store whose meta.git is at `meta_path`."""
    return os.path.join(os.path.dirname(os.path.abspath(meta_path)), KEYS_DIR)


def load_signer(meta_path: str, create: bool) -> CommitSigner | None:
    """The store's signer; with `create`, the key (and meta.git's git config) is made when missing.
    None when there is no key and it cannot or may not be made (a read-only store)."""
    folder = keys_dir(meta_path)
    path = os.path.join(folder, KEY_FILE)
    try:
        with open(path, "rb") as f:
            key = serialization.load_ssh_private_key(f.read(), password=None)
    except FileNotFoundError:
        if not create:
            return None
        try:
            key = _create_key(folder, path)
        except OSError:
            return None
    if not isinstance(key, Ed25519PrivateKey):
        return None
    signer = CommitSigner(key)
    try:
        _trust(folder, signer.public)
        configure(meta_path)
    except (OSError, pygit2.GitError) as error:  # another process writing meta.git's config; read-only
        # files: the commits are signed all the same, and the next process records the key
        log.warning("could not record the commit signing key for git in %s: %s", folder, error)
    return signer


def _create_key(folder: str, path: str) -> Ed25519PrivateKey:
    """A new key, written to a temporary name and linked into place: of two processes making one
    at once, the first link wins and the other reads that key."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    temporary = f"{path}.tmp_{os.getpid()}_{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        with open(path, "rb") as f:
            key = serialization.load_ssh_private_key(f.read(), password=None)
    finally:
        os.unlink(temporary)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    with open(path + ".pub", "wb") as f:
        f.write(public + b" " + PRINCIPAL.encode() + b"\n")
    return key


def allowed_signers_path(meta_path: str) -> str:
    return os.path.join(keys_dir(meta_path), ALLOWED_SIGNERS)


def _trust(folder: str, public: bytes) -> None:
    """Add the key to the allowed signers file unless it is there."""
    path = os.path.join(folder, ALLOWED_SIGNERS)
    if public in trusted_keys(path):
        return
    line = f'{PRINCIPAL} namespaces="git" {KEY_TYPE.decode()} {base64.b64encode(public).decode()}\n'
    with open(path, "a") as f:
        f.write(line)


def trusted_keys(path: str) -> set[bytes]:
    """The keys (SSH wire format) the allowed signers file at `path` lists."""
    found = set()
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        fields = line.split()
        for position, field in enumerate(fields[:-1]):
            if field == KEY_TYPE.decode():
                try:
                    found.add(base64.b64decode(fields[position + 1], validate=True))
                except ValueError:
                    pass
                break
    return found


def configure(meta_path: str) -> None:
    """meta.git's config: SSH signatures, checked against the store's allowed signers file."""
    config = pygit2.Repository(meta_path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH).config
    wanted = {"gpg.format": "ssh", "gpg.ssh.allowedSignersFile": allowed_signers_path(meta_path)}
    for name, value in wanted.items():
        try:
            if config[name] == value:
                continue
        except KeyError:
            pass
        config[name] = value


def verify(signature: str | bytes | None, payload: bytes, trusted: set[bytes]) -> str | None:
    """Why the commit whose `gpgsig` is `signature` over `payload` is not signed by a trusted key
    (None when it is)."""
    if not signature:
        return "not signed"
    text = signature.decode() if isinstance(signature, bytes) else signature
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        return "not an SSH signature"
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        if blob[:6] != _MAGIC or blob[6:10] != struct.pack(">I", 1):
            return "not an SSH signature"
        public, namespace, _, hash_name, sig = _read_strings(blob[10:])
        key_type, raw_key = _read_strings(public)
        sig_type, raw_sig = _read_strings(sig)
    except ValueError:
        return "a damaged SSH signature"
    if namespace != NAMESPACE or hash_name != HASH or key_type != KEY_TYPE or sig_type != KEY_TYPE:
        return "signed in another namespace or with another kind of key"
    if public not in trusted:
        return "signed by a key that is not trusted"
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, _signed_data(payload))
    except (InvalidSignature, ValueError):
        return "a signature that does not match the commit (edited after signing?)"
    return None
