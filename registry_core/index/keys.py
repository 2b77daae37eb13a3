"""The token signing key of the Index and its certificate: created once, kept outside meta.git.

Registries trust the Index by its certificate (Distribution's `auth.token.rootcertbundle`, our own
`auth.trust`), so the pair lives in a directory of its own (`auth.keysDir`, default `<store>/keys/`)
that git never sees: the private key must not end up in the audit history.

    <keys dir>/token-signing-key.pem     PKCS#8 private key, mode 0600 (EC P-256 when we create it)
    <keys dir>/token-signing-cert.pem    the certificate (chain, leaf first) that registries trust

An operator may put their own key and certificate there (an RSA key signs RS256, an EC key ES256,
ES384 or ES512 by its curve); a missing certificate is made, self-signed, for whatever key is there.
Several worker processes may start at once on a new store: each file is written to a temporary file
and hard-linked into place, which fails if another process got there first, and then everyone loads
the winner's file.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from registry_core.meta.documents import DocumentInvalid

KEY_FILE = "token-signing-key.pem"
CERT_FILE = "token-signing-cert.pem"
CERT_LIFETIME = datetime.timedelta(days=3650)
# A certificate valid from "now" is refused by a verifier whose clock is a little behind.
CLOCK_SKEW = datetime.timedelta(hours=1)
MIN_RSA_BITS = 2048

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class SigningKeyError(DocumentInvalid):
    """A key or certificate file cannot be used; names the file, why, and what to do (the CLI shows
    it like a config error, before anything starts)."""


@dataclass(frozen=True)
class SigningKey:
    """A private key, the certificate chain that vouches for it (leaf first), and how it signs."""

    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...]
    algorithm: str
    key_id: str

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def public_key(self):
        return self.private_key.public_key()

    def certificate_pem(self) -> bytes:
        """The chain as PEM: what registries put in their trust bundle."""
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain)


def keys_dir(config) -> str:
    """Where the signing key lives for this `Config`: `auth.keysDir`, else `<store>/keys`."""
    return config.auth.keys_dir or os.path.join(config.store, "keys")


def libtrust_key_id(public_key) -> str:
    """The key id libtrust (and so Distribution) gives a public key: the SHA-256 of its DER
    SubjectPublicKeyInfo, cut to 240 bits, base32 without padding, in 12 groups of 4 joined by ':'.
    Distribution looks up a token's `kid` among its trusted certificates' keys by this id."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def signing_algorithm(key, where: str = "the token signing key") -> str:
    """The JWS `alg` a key signs with: ES256/ES384/ES512 by curve for EC keys, RS256 for RSA keys."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in _EC_ALGORITHMS:
            raise SigningKeyError(where, f"EC curve {public.curve.name} cannot sign tokens: use P-256, P-384 or P-521")
        return _EC_ALGORITHMS[public.curve.name]
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise SigningKeyError(where, f"an RSA key of {public.key_size} bits is too weak to sign tokens: "
                                  f"use at least {MIN_RSA_BITS}")
        return "RS256"
    raise SigningKeyError(where, f"a {type(public).__name__} cannot sign registry tokens: use an EC (P-256) "
                          "or RSA key")


def generate_private_key(kind: str = "ec"):
    """A new private key: EC P-256 (`"ec"`, the default, signs ES256) or RSA 3072 (`"rsa"`, RS256)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unknown key kind {kind!r}: use 'ec' or 'rsa'")


def self_signed_certificate(private_key, common_name: str, now: datetime.datetime | None = None,
                            lifetime: datetime.timedelta = CERT_LIFETIME) -> x509.Certificate:
    """A self-signed certificate for `private_key`: the root a registry trusts, and the token's x5c."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = private_key.public_key()
    identifier = x509.SubjectKeyIdentifier.from_public_key(public)
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(public)
               .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
               .not_valid_before(now - CLOCK_SKEW)
               .not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(identifier, critical=False))
    return builder.sign(private_key, hashes.SHA256())


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; a clear error when the file is missing or holds none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SigningKeyError(path, f"cannot read the certificate bundle: {e.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise SigningKeyError(path, f"not a PEM certificate bundle: {e}") from None
    if not certificates:
        raise SigningKeyError(path, "holds no certificate")
    return certificates


def load_or_create(directory: str, common_name: str = "registry-core token signing",
                   kind: str = "ec") -> SigningKey:
    """The signing key in `directory`, making the key (`kind`) and a self-signed certificate for it
    the first time. Safe to call from several processes at once."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key_path, cert_path = os.path.join(directory, KEY_FILE), os.path.join(directory, CERT_FILE)
    if not os.path.exists(key_path):
        pem = generate_private_key(kind).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())
        create_once(key_path, pem, 0o600)
    private_key = _load_private_key(key_path)
    signing_algorithm(private_key, where=key_path)
    if not os.path.exists(cert_path):
        certificate = self_signed_certificate(private_key, common_name)
        create_once(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return signing_key(private_key, load_certificates(cert_path), where=cert_path)


def signing_key(private_key, chain, where: str = "the certificate",
                now: datetime.datetime | None = None) -> SigningKey:
    """A `SigningKey` from a private key and its certificate chain (leaf first), after checking that
    they belong together and that the leaf is valid now."""
    chain = tuple(chain)
    algorithm = signing_algorithm(private_key)
    public_der = _spki(private_key.public_key())
    if _spki(chain[0].public_key()) != public_der:
        raise SigningKeyError(where, "not the certificate of the token signing key: delete it to have a "
                              "self-signed one made, or put the matching certificate there")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if chain[0].not_valid_after_utc < now:
        raise SigningKeyError(where, f"expired on {chain[0].not_valid_after_utc:%Y-%m-%d}: delete it to have a "
                              "new one made, and give the new one to every registry that trusts this Index")
    return SigningKey(private_key, chain, algorithm, libtrust_key_id(private_key.public_key()))


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_private_key(path: str):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SigningKeyError(path, f"cannot read the token signing key: {e.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(path, "encrypted: store the token signing key without a passphrase "
                              "(the file is mode 0600 in a directory only the registry reads)") from None
    except ValueError as e:
        raise SigningKeyError(path, f"not a PEM private key: {e}") from None


def create_once(path: str, data: bytes, mode: int) -> None:
    """Write `path` unless it exists; whoever links first wins, the others keep the winner's file.
    For any key the store keeps outside git (the token keys here, the webhooks' sealing key)."""
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:
            # A filesystem without hard links: rename, unless someone was quicker (a small window).
            if not os.path.exists(path):
                os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
