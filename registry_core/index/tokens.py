"""Registry tokens, per the Docker token authentication specification (docs/spec/auth of
distribution/distribution): the scopes clients ask for, the JWTs the Index signs, and their
verification by a registry.

A token is a JWS (ES256 with the EC key we make, RS256 with an RSA key) whose header carries `kid`,
the libtrust id of the signing key, and `x5c`, the certificate chain. Distribution 2.8 checks
the chain against its `rootcertbundle` (or finds the key by `kid`), then `iss`, `aud` (one string:
2.8 cannot read a list), `exp` and `nbf` with 60 s of leeway, and reads the grants from `access`:

    {"iss": "registry-core", "sub": "alice", "aud": "registry", "exp": 1700000300, "nbf": 1700000000,
     "iat": 1700000000, "jti": "…",
     "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]}

`TokenVerifier` does the same checks for our own registry role and remembers tokens it has
verified until they expire, so a client sending the same token on every request costs one
dictionary look-up after the first.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry_core.index.keys import (SigningKeyError, keys_dir, libtrust_key_id, load_certificates,
                                      load_or_create, signing_algorithm)
from registry_core.meta.documents import DocumentInvalid
from registry_core.names import NAME_COMPONENT, canonical_name, is_valid_name

# What a token may grant on a repository; "*" in a scope asks for all of them.
REPOSITORY_ACTIONS = ("pull", "push", "delete")
# Distribution's leeway on exp and nbf, for clocks that differ between the Index and a registry.
LEEWAY = 60
ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")

_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOSTNAME = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_RESOURCE_NAME_RE = re.compile(rf"(?:{_HOSTNAME}/)?{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
_RESOURCE_TYPE_RE = re.compile(r"([a-z0-9]+)(?:\(([a-z0-9]+)\))?")
# The grammar says /[a-z]*/; clients also send "*" (catalog) and a few hyphenated actions
# (e.g. "metadata-read"), which parse and are then simply not granted.
_ACTION_RE = re.compile(r"(?:\*|[a-z0-9_-]+)")
_MAX_SCOPE_LENGTH = 1024


# --- scopes -------------------------------------------------------------------------------------

class InvalidScope(ValueError):
    """A scope that does not follow the grammar; the message quotes it and says what is wrong."""


@dataclass(frozen=True)
class Scope:
    """One resource scope: `repository:alice/app:pull,push`, `registry:catalog:*`.

    `resource_class` keeps the deprecated class of `repository(plugin)`; the spec treats
    `repository(plugin)` as `repository`, and tokens never carry a class."""

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str | None = None

    def __str__(self) -> str:
        kind = f"{self.type}({self.resource_class})" if self.resource_class else self.type
        return f"{kind}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict:
        """The entry of a token's `access` claim."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(text: str) -> Scope:
    """One `resourcetype[(class)]:resourcename:action[,action]*`.

    The name may hold one ':' (a registry host's port, `repository:localhost:5000/app:pull`), so
    the type ends at the first ':' and the actions start after the last one."""
    if not text or len(text) > _MAX_SCOPE_LENGTH or any(c.isspace() for c in text):
        raise InvalidScope(f"invalid scope {text[:100]!r}: expected one resource scope "
                           "like repository:alice/app:pull,push (several are separated by spaces)")
    kind, _, rest = text.partition(":")
    name, separator, actions = rest.rpartition(":")
    if not separator or not name:
        raise InvalidScope(f"invalid scope {text!r}: expected <type>:<name>:<actions>, "
                           "like repository:alice/app:pull,push")
    type_match = _RESOURCE_TYPE_RE.fullmatch(kind)
    if not type_match:
        raise InvalidScope(f"invalid scope {text!r}: the resource type {kind!r} is not lowercase letters and "
                           "digits, optionally with a class in parentheses: repository, repository(plugin)")
    if not _RESOURCE_NAME_RE.fullmatch(name):
        raise InvalidScope(f"invalid scope {text!r}: {name!r} is not a resource name (lowercase path "
                           "components separated by '/', optionally after a host[:port]/)")
    wanted: list[str] = []
    for action in actions.split(","):
        if not action:
            continue  # the grammar allows an empty action: it asks for nothing
        if not _ACTION_RE.fullmatch(action):
            raise InvalidScope(f"invalid scope {text!r}: {action!r} is not an action (pull, push, delete, *)")
        if action not in wanted:
            wanted.append(action)
    return Scope(type_match.group(1), name, tuple(wanted), type_match.group(2))


def parse_scopes(text: str) -> list[Scope]:
    """A space-separated list of scopes, as in a challenge's `scope=` or an OAuth2 `scope` field."""
    return [parse_scope(part) for part in text.split()]


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The space-separated scope list of what was granted (scopes granting nothing left out)."""
    return " ".join(str(Scope(s.type, s.name, s.actions)) for s in scopes if s.actions)


def grant(policy, actor, requested: Iterable[Scope]) -> list[Scope]:
    """The intersection of what is asked and what `policy` allows `actor` (None: anonymous).

    Scopes on the same resource are merged; a resource the actor may do nothing with stays in the
    list with no actions, since the spec puts the intersection, empty or not, into the token.
    Repository names are checked before the policy sees them; `*` asks for every action."""
    merged: dict[tuple[str, str], list[str]] = {}
    for scope in requested:
        # A short name means the official namespace, as in /v2/ URLs: the token names the canonical one.
        name = canonical_name(scope.name) if scope.type == "repository" else scope.name
        actions = merged.setdefault((scope.type, name), [])
        actions.extend(a for a in scope.actions if a not in actions)
    granted = []
    for (kind, name), wanted in merged.items():
        if kind == "repository":
            allowed = policy.allowed_actions(actor, name) if is_valid_name(name) else set()
            asked = REPOSITORY_ACTIONS if "*" in wanted else wanted
            actions = tuple(a for a in REPOSITORY_ACTIONS if a in asked and a in allowed)
        elif kind == "registry" and name == "catalog" and "*" in wanted:
            actions = ("*",) if policy.may_list_catalog(actor) else ()
        else:
            actions = ()
        granted.append(Scope(kind, name, actions))
    return granted


def granted_access(claims: dict, type: str, name: str) -> set[str]:
    """The actions the verified `claims` grant on one resource. `"*"` in the set means every action
    (the catalog's scope is `registry:catalog:*`); a resource class in the claim is ignored."""
    actions: set[str] = set()
    for entry in claims.get("access") or ():
        if entry.get("type", "").partition("(")[0] == type and entry.get("name") == name:
            actions.update(entry.get("actions") or ())
    return actions


def token_allows(claims: dict, type: str, name: str, action: str) -> bool:
    granted = granted_access(claims, type, name)
    return action in granted or "*" in granted


# --- issuing ------------------------------------------------------------------------------------

class IssuedToken(NamedTuple):
    token: str
    expires_in: int
    issued_at: str        # RFC 3339, UTC


class TokenIssuer:
    """Signs the tokens of one Index (`iss`) for one service (`aud`)."""

    def __init__(self, key, certificate, issuer: str, service: str, lifetime: int = 300, clock=time.time):
        chain = [certificate] if isinstance(certificate, x509.Certificate) else list(certificate or ())
        if chain and _spki(chain[0].public_key()) != _spki(key.public_key()):
            raise ValueError("the certificate does not belong to the signing key")
        self.key = key
        self.algorithm = signing_algorithm(key)
        self.key_id = libtrust_key_id(key.public_key())
        self.issuer = issuer
        self.service = service
        self.lifetime = int(lifetime)
        self.clock = clock
        self._headers = {"kid": self.key_id}
        if chain:
            self._headers["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                                    for c in chain]

    @classmethod
    def from_signing_key(cls, signing_key, issuer: str, service: str, lifetime: int = 300) -> "TokenIssuer":
        return cls(signing_key.private_key, signing_key.chain, issuer, service, lifetime)

    def issue(self, subject: str, access: Iterable[Scope | dict] = ()) -> IssuedToken:
        """A token for `subject` ("" for an anonymous client) granting `access`."""
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(18),
            "access": [entry.claim() if isinstance(entry, Scope) else dict(entry) for entry in access],
        }
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers=self._headers)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return IssuedToken(token, self.lifetime, issued_at)


# --- verifying ----------------------------------------------------------------------------------

class InvalidToken(Exception):
    """A token a registry must refuse. `reason` is one of the constants below; the message says
    what is wrong in words a person can act on."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    WRONG_ISSUER = "wrong issuer"
    WRONG_AUDIENCE = "wrong audience"
    BAD_SIGNATURE = "bad signature"
    UNKNOWN_KEY = "unknown key"
    UNSUPPORTED_ALGORITHM = "unsupported algorithm"

    def __init__(self, reason: str, message: str | None = None):
        self.reason = reason
        self.message = message or reason
        super().__init__(self.message)


class TokenVerifier:
    """Checks tokens the way Distribution 2.8 does: signed by a trusted key (found through the
    `x5c` chain, else by `kid`), from `issuer`, for `service`, within exp/nbf (± `leeway`).

    `trusted` holds certificates (the Index's own, `auth.trust` bundles) and/or bare public keys
    (these can only be found by `kid`). Verified tokens are remembered until they expire, at most
    `cache_size` of them (least recently used go first); their claims are shared, do not change them."""

    def __init__(self, trusted: Iterable, issuer: str, service: str, leeway: int = LEEWAY,
                 cache_size: int = 1024, clock=time.time):
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        self.clock = clock
        self.cache_size = cache_size
        self._roots: list[x509.Certificate] = []
        self._keys: dict[str, object] = {}
        for item in trusted:
            public = item.public_key() if isinstance(item, x509.Certificate) else item
            if isinstance(item, x509.Certificate):
                self._roots.append(item)
            self._keys[libtrust_key_id(public)] = public
        self._root_der = {c.public_bytes(serialization.Encoding.DER) for c in self._roots}
        self._verified: OrderedDict[str, tuple[dict, float]] = OrderedDict()
        self._chains: dict[tuple[str, ...], tuple[object, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def verify(self, token: str) -> dict:
        """The claims of a valid token; raises `InvalidToken` with the reason otherwise."""
        if not isinstance(token, str):
            raise InvalidToken(InvalidToken.MALFORMED, "the token is not a string")
        now = self.clock()
        with self._lock:
            known = self._verified.get(token)
            if known is not None:
                claims, expires = known
                if now <= expires:
                    self._verified.move_to_end(token)
                    self.hits += 1
                    return claims
                del self._verified[token]
        claims = self._verify(token, now)
        with self._lock:
            self._verified[token] = (claims, claims["exp"] + self.leeway)
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token, now: float) -> dict:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken(InvalidToken.MALFORMED,
                               "the token is not a JWS in compact form (header.claims.signature)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as e:
            raise InvalidToken(InvalidToken.MALFORMED, f"the token's header cannot be read: {e}") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(InvalidToken.UNSUPPORTED_ALGORITHM,
                               f"tokens signed with {algorithm!r} are not accepted (only {', '.join(ALGORITHMS)})")
        key = self._signing_key(header, now)
        if not _fits(key, algorithm):
            raise InvalidToken(InvalidToken.UNSUPPORTED_ALGORITHM, f"the signing key cannot sign {algorithm}")
        try:
            payload = jwt.api_jws.decode_complete(token, key, algorithms=[algorithm])["payload"]
        except jwt.InvalidSignatureError:
            raise InvalidToken(InvalidToken.BAD_SIGNATURE, "the token's signature does not match its content") from None
        except jwt.InvalidTokenError as e:
            raise InvalidToken(InvalidToken.MALFORMED, f"the token cannot be read: {e}") from None
        try:
            claims = json.loads(payload)
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise InvalidToken(InvalidToken.MALFORMED, "the token's claims are not a JSON object")
        self._check_claims(claims, now)
        return claims

    def _check_claims(self, claims: dict, now: float) -> None:
        if claims.get("iss") != self.issuer:
            raise InvalidToken(InvalidToken.WRONG_ISSUER,
                               f"the token was issued by {claims.get('iss')!r}, not by {self.issuer!r}")
        audience = claims.get("aud")
        if not (audience == self.service or (isinstance(audience, list) and self.service in audience)):
            raise InvalidToken(InvalidToken.WRONG_AUDIENCE,
                               f"the token is for the service {audience!r}, not for {self.service!r}")
        expires, not_before = claims.get("exp"), claims.get("nbf", 0)
        if not _is_number(expires) or not _is_number(not_before):
            raise InvalidToken(InvalidToken.MALFORMED, "the token's exp and nbf must be numbers (exp is required)")
        if now > expires + self.leeway:
            raise InvalidToken(InvalidToken.EXPIRED, f"the token expired at {_iso(expires)}: get a new one")
        if now < not_before - self.leeway:
            raise InvalidToken(InvalidToken.NOT_YET_VALID, f"the token is not valid before {_iso(not_before)} "
                               "(are the Index's and this registry's clocks apart?)")
        access = claims.get("access", [])
        if not isinstance(access, list) or not all(
                isinstance(e, dict) and isinstance(e.get("actions", []), list) for e in access):
            raise InvalidToken(InvalidToken.MALFORMED, "the token's access claim is not a list of "
                               "{type, name, actions} objects")

    def _signing_key(self, header: dict, now: float):
        """The key the token names: through its x5c chain if it has one (as Distribution prefers),
        else by its kid among the trusted keys."""
        x5c = header.get("x5c")
        if x5c:
            if not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c):
                raise InvalidToken(InvalidToken.MALFORMED, "the token's x5c header is not a list of certificates")
            chain = tuple(x5c)
            with self._lock:
                known = self._chains.get(chain)
            if known is not None and now <= known[1]:
                return known[0]
            key, valid_until = self._verify_chain(chain, now)
            with self._lock:
                if len(self._chains) >= 64:
                    self._chains.clear()
                self._chains[chain] = (key, valid_until)
            return key
        kid = header.get("kid")
        if not kid:
            raise InvalidToken(InvalidToken.UNKNOWN_KEY, "the token names no signing key (no x5c, no kid)")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken(InvalidToken.UNKNOWN_KEY, f"the token was signed by the key {kid}, which this "
                               "registry does not trust (add its certificate to auth.trust)")
        return key

    def _verify_chain(self, x5c: tuple[str, ...], now: float):
        """The leaf's public key, if each certificate is signed by the next and the chain reaches a
        trusted certificate; and until when that holds (the earliest notAfter)."""
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except ValueError as e:
            raise InvalidToken(InvalidToken.MALFORMED, f"the token's x5c certificates cannot be read: {e}") from None
        moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        valid_until = min(c.not_valid_after_utc for c in chain).timestamp()
        untrusted = InvalidToken(InvalidToken.UNKNOWN_KEY, "the token's certificate chain does not lead to a "
                                 "certificate this registry trusts (add the Index certificate to auth.trust)")
        for position, certificate in enumerate(chain):
            if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
                raise InvalidToken(InvalidToken.UNKNOWN_KEY, f"the token's certificate "
                                   f"{certificate.subject.rfc4514_string()} is not valid now")
            if certificate.public_bytes(serialization.Encoding.DER) in self._root_der:
                return chain[0].public_key(), valid_until
            parents = [r for r in self._roots if r.subject == certificate.issuer and _may_sign(r)]
            if any(_issued_by(certificate, parent) for parent in parents):
                return chain[0].public_key(), min(valid_until, *(p.not_valid_after_utc.timestamp() for p in parents))
            if position + 1 == len(chain):
                raise untrusted
            parent = chain[position + 1]
            if not (_may_sign(parent) and _issued_by(certificate, parent)):
                raise untrusted
        raise untrusted


def _issued_by(certificate: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(parent)
        return True
    except Exception:  # ValueError, TypeError, InvalidSignature: not this parent
        return False


def _may_sign(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _fits(key, algorithm: str) -> bool:
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            return signing_algorithm(key) == algorithm
        except SigningKeyError:
            return False
    return isinstance(key, rsa.RSAPublicKey) and algorithm.startswith("RS")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the service of a process -------------------------------------------------------------------

def build_token_service(config) -> tuple[TokenIssuer | None, TokenVerifier]:
    """The issuer and verifier of a process: with the Index (`role` all or index) the signing key
    is loaded or made in the keys directory and its certificate is trusted, along with any
    `auth.trust` bundle (an old certificate while keys change); a `--role registry` process issues
    nothing and trusts only `auth.trust`."""
    auth = config.auth
    trusted = load_certificates(auth.trust) if auth.trust else []
    if config.role == "registry":
        if not trusted:
            raise DocumentInvalid(config.source or "registry.yaml",
                                  "auth.trust: a registry-role process verifies the tokens of an Index; set it to "
                                  "the PEM file of that Index's certificate (<keys dir>/token-signing-cert.pem)")
        return None, TokenVerifier(trusted, auth.issuer, auth.service)
    key = load_or_create(keys_dir(config), common_name=f"{auth.issuer} token signing")
    issuer = TokenIssuer.from_signing_key(key, auth.issuer, auth.service, auth.token_lifetime)
    return issuer, TokenVerifier([key.certificate, *trusted], auth.issuer, auth.service)
