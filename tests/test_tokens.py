"""The token service's parts, per the Docker token authentication spec: scopes, the signing key and
its certificate, issuing and verifying tokens (Distribution 2.8's checks), and what a token grants."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import stat
import time
from concurrent.futures import ProcessPoolExecutor

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from registry_core.config import AuthConfig, Config
from registry_core.context import Actor
from registry_core.index import keys
from registry_core.index.tokens import (InvalidScope, InvalidToken, Scope, TokenIssuer, TokenVerifier,
                                        build_token_service, format_scopes, grant, granted_access,
                                        parse_scope, parse_scopes, token_allows)
from registry_core.meta.documents import DocumentInvalid
from tests.support.index_fakes import FakePolicy

ISSUER, SERVICE = "test-index", "test-registry"
KID_RE = re.compile(r"^[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}$")

# Public keys and the key ids that libtrust's own KeyID() (Go, github.com/docker/libtrust) printed
# for them: a 10-line program linking libtrust, built with Go 1.19.
LIBTRUST_VECTORS = [
    ("""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEU+z2Y1b1nMpfKx3zFWsV+9do5IRL
NBzkngpM8JLMCgqMQIdS0lt+loaGPAGCrpHTw+Ucn76s+5ucuJFQih6xWA==
-----END PUBLIC KEY-----
""", "JF7T:LQVW:HEWX:EK4Y:WGLX:MXSF:BYTR:2L45:LVU3:B5WQ:RP2F:OJDU"),
    ("""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA01cxOamd3TYadQ3t6ru/
CpKt+pagdj/JqTD3XS/RdFZ0Xkda0TLojXDTLLIZBiVKLlddp+eqxEhgz8JDh6gU
9MYOsWrQv0v3S4m8SnysZ6589pFaIX2qeO7PgdWfKetNOCh/oB/getwaIV+0wVzH
VWK39QhsWC/bDjIW1/rLVx86w7bvLo/AN60UgZa8TwEKKxVvnP3OdSrbkf/YqCRa
mnEVq6NtvK6TGmZNue5TG+x8ZuK4q+g+4973jFh9IeBPAwyqaw7K84+9sW/G7yCR
m8usZBdgbZwjvfUlxkd4tFx3j7QgKS30RCiWioK08J01fAHn7i2/5cPpAAYdQA71
EwIDAQAB
-----END PUBLIC KEY-----
""", "F3B6:FA5S:N5TW:RFEI:RIDJ:2TTK:DW6J:KUIK:D5ES:XDIE:CWAH:T3ZS"),
]


@pytest.fixture(scope="module")
def ec_key():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, keys.self_signed_certificate(key, "test token signing")


@pytest.fixture(scope="module")
def rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, keys.self_signed_certificate(key, "test token signing (rsa)")


def issuer_for(pair, issuer=ISSUER, service=SERVICE, lifetime=300, clock=time.time, chain=True):
    key, certificate = pair
    return TokenIssuer(key, certificate if chain else None, issuer, service, lifetime, clock=clock)


def segments(token: str) -> tuple[dict, dict]:
    header, claims, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(claims + "==")))


def forge(token: str, **changes) -> str:
    """The token with its claims changed and its signature kept: no longer valid."""
    header, claims, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=="))
    body.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


# --- scopes ---------------------------------------------------------------------------------------

def test_a_repository_scope_parses_into_type_name_and_actions():
    scope = parse_scope("repository:alice/app:pull,push")
    assert scope == Scope("repository", "alice/app", ("pull", "push"))
    assert str(scope) == "repository:alice/app:pull,push"
    assert scope.claim() == {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}


def test_the_catalog_scope_parses_with_its_star_action():
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))


def test_a_resource_class_is_kept_apart_from_the_type():
    scope = parse_scope("repository(plugin):vieux/sshfs:pull")
    assert (scope.type, scope.resource_class, scope.name) == ("repository", "plugin", "vieux/sshfs")
    assert str(scope) == "repository(plugin):vieux/sshfs:pull"


def test_a_name_may_hold_a_host_with_a_port_so_actions_start_after_the_last_colon():
    scope = parse_scope("repository:localhost:5000/team/app:pull")
    assert (scope.name, scope.actions) == ("localhost:5000/team/app", ("pull",))
    assert parse_scope("repository:registry.example.com/a/b-c__d.e:push").name == "registry.example.com/a/b-c__d.e"


def test_repeated_and_empty_actions_are_dropped():
    assert parse_scope("repository:a/b:pull,,pull,push,").actions == ("pull", "push")
    assert parse_scope("repository:a/b:").actions == ()


def test_unknown_actions_parse_and_are_later_simply_not_granted():
    assert parse_scope("repository:a/b:metadata-read").actions == ("metadata-read",)


@pytest.mark.parametrize("text", [
    "", "repository", "repository:alice/app", "repository::pull", "Repository:a/b:pull",
    "repository(:a/b:pull", "repository:alice/App:pull", "repository:a//b:pull", "repository:/a:pull",
    "repository:a/b/:pull", "repository:../etc:pull", "repository:a/b:PULL", "repository:a/b:pull;rm",
    "repository:a/b:pull push", "repository:a b:pull", "repository:" + "a" * 1100 + ":pull",
])
def test_scopes_outside_the_grammar_are_refused_with_the_text_quoted(text):
    with pytest.raises(InvalidScope) as refused:
        parse_scope(text)
    assert "invalid scope" in str(refused.value)


def test_a_scope_list_is_space_separated_and_the_granted_list_leaves_out_empty_grants():
    scopes = parse_scopes("repository:a/b:pull  repository:c/d:push,pull registry:catalog:*")
    assert [s.name for s in scopes] == ["a/b", "c/d", "catalog"]
    assert parse_scopes("") == []
    assert format_scopes([Scope("repository", "a/b", ("pull",)), Scope("repository", "c/d", ()),
                          Scope("repository", "e/f", ("pull",), "plugin")]) == \
        "repository:a/b:pull repository:e/f:pull"


# --- grants ---------------------------------------------------------------------------------------

def test_a_grant_is_the_intersection_of_what_is_asked_and_what_is_allowed():
    policy = FakePolicy({"alice": {"alice/*": {"pull", "push", "delete"}, "library/*": {"pull"}}},
                        catalog=("admin",))
    alice = Actor("alice")
    granted = grant(policy, alice, parse_scopes(
        "repository:alice/app:push repository:alice/app:pull repository:library/hello:pull,push "
        "repository:bob/secret:pull registry:catalog:* repository:alice/all:* "
        "repository(plugin):alice/p:pull unknown:thing:read repository:localhost:5000/x:pull"))
    assert [(s.type, s.name, s.actions) for s in granted] == [
        ("repository", "alice/app", ("pull", "push")),
        ("repository", "library/hello", ("pull",)),
        ("repository", "bob/secret", ()),
        ("registry", "catalog", ()),
        ("repository", "alice/all", ("pull", "push", "delete")),
        ("repository", "alice/p", ("pull",)),
        ("unknown", "thing", ()),
        ("repository", "localhost:5000/x", ()),
    ]
    # the policy is asked once per repository, and never about names outside our grammar
    assert ("alice", "localhost:5000/x") not in policy.asked
    assert grant(policy, Actor("admin"), [parse_scope("registry:catalog:*")])[0].actions == ("*",)
    assert grant(policy, None, [parse_scope("repository:library/hello:pull")])[0].actions == ()


def test_granted_access_reads_the_union_of_a_resources_entries_and_ignores_classes():
    claims = {"access": [{"type": "repository", "name": "a/b", "actions": ["pull"]},
                         {"type": "repository(plugin)", "name": "a/b", "actions": ["push"]},
                         {"type": "repository", "name": "c/d", "actions": ["delete"]},
                         {"type": "registry", "name": "catalog", "actions": ["*"]}]}
    assert granted_access(claims, "repository", "a/b") == {"pull", "push"}
    assert granted_access(claims, "repository", "x/y") == set()
    assert granted_access({}, "repository", "a/b") == set()
    assert token_allows(claims, "registry", "catalog", "list")
    assert not token_allows(claims, "repository", "a/b", "delete")


# --- keys -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pem, key_id", LIBTRUST_VECTORS, ids=["ec-p256", "rsa-2048"])
def test_the_key_id_is_the_one_libtrust_computes(pem, key_id):
    assert keys.libtrust_key_id(serialization.load_pem_public_key(pem.encode())) == key_id


def test_the_keys_directory_gets_a_private_key_only_its_owner_reads_and_a_certificate(tmp_path):
    directory = tmp_path / "keys"
    made = keys.load_or_create(str(directory), common_name="idx token signing")
    key_file, cert_file = directory / keys.KEY_FILE, directory / keys.CERT_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert made.algorithm == "ES256" and isinstance(made.private_key, ec.EllipticCurvePrivateKey)
    assert made.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "idx token signing"
    made.certificate.verify_directly_issued_by(made.certificate)  # self-signed
    assert cert_file.read_bytes() == made.certificate_pem()
    again = keys.load_or_create(str(directory))
    assert again.key_id == made.key_id and again.certificate == made.certificate
    assert sorted(os.listdir(directory)) == [keys.CERT_FILE, keys.KEY_FILE]


def _key_id_in(directory: str) -> str:
    return keys.load_or_create(directory).key_id


def test_workers_starting_together_on_a_new_store_agree_on_one_key(tmp_path):
    directory = str(tmp_path / "keys")
    with ProcessPoolExecutor(4) as pool:
        key_ids = set(pool.map(_key_id_in, [directory] * 8))
    assert key_ids == {keys.load_or_create(directory).key_id}
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_an_operators_rsa_key_signs_rs256_and_gets_a_certificate_made_for_it(tmp_path, rsa_key):
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / keys.KEY_FILE).write_bytes(rsa_key[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    loaded = keys.load_or_create(str(directory))
    assert loaded.algorithm == "RS256"
    assert loaded.key_id == keys.libtrust_key_id(rsa_key[0].public_key())


def test_a_certificate_of_another_key_is_refused_with_the_file_named(tmp_path, ec_key):
    directory = tmp_path / "keys"
    keys.load_or_create(str(directory))
    (directory / keys.CERT_FILE).write_bytes(ec_key[1].public_bytes(serialization.Encoding.PEM))
    with pytest.raises(DocumentInvalid, match="token-signing-cert.pem: not the certificate of the token signing key"):
        keys.load_or_create(str(directory))


def test_an_expired_certificate_and_a_weak_key_are_refused(ec_key):
    key = ec_key[0]
    old = keys.self_signed_certificate(key, "old", now=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc),
                                       lifetime=datetime.timedelta(days=1))
    with pytest.raises(keys.SigningKeyError, match="expired on 2000-01-02"):
        keys.signing_key(key, [old])
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(keys.SigningKeyError, match="too weak"):
        keys.signing_algorithm(weak)


# --- issuing --------------------------------------------------------------------------------------

def test_an_issued_token_carries_the_spec_claims_and_header(ec_key):
    issuer = issuer_for(ec_key, lifetime=600)
    before = int(time.time())
    token, expires_in, issued_at = issuer.issue("alice", [Scope("repository", "alice/app", ("pull", "push"))])
    header, claims = segments(token)
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert header["kid"] == keys.libtrust_key_id(ec_key[0].public_key()) and KID_RE.match(header["kid"])
    assert [base64.b64decode(c) for c in header["x5c"]] == [ec_key[1].public_bytes(serialization.Encoding.DER)]
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and claims["aud"] == SERVICE  # aud: one string
    assert claims["nbf"] == claims["iat"] >= before and claims["exp"] == claims["iat"] + 600 == claims["nbf"] + 600
    assert len(claims["jti"]) >= 16 and claims["jti"] != segments(issuer.issue("alice").token)[1]["jti"]
    assert claims["access"] == [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]
    assert expires_in == 600
    assert datetime.datetime.strptime(issued_at, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() == claims["iat"]


def test_the_x5c_certificate_verifies_the_signature(ec_key):
    token = issuer_for(ec_key).issue("alice").token
    leaf = x509.load_der_x509_certificate(base64.b64decode(segments(token)[0]["x5c"][0]))
    leaf.verify_directly_issued_by(leaf)
    assert jwt.decode(token, leaf.public_key(), algorithms=["ES256"], audience=SERVICE, issuer=ISSUER)["sub"] == "alice"


def test_an_anonymous_token_has_an_empty_subject(ec_key):
    assert segments(issuer_for(ec_key).issue(None).token)[1]["sub"] == ""


def test_a_certificate_of_another_key_cannot_make_an_issuer(ec_key, rsa_key):
    with pytest.raises(ValueError):
        TokenIssuer(ec_key[0], rsa_key[1], ISSUER, SERVICE)


# --- verifying ------------------------------------------------------------------------------------

@pytest.mark.parametrize("pair, algorithm", [("ec_key", "ES256"), ("rsa_key", "RS256")])
def test_issue_and_verify_round_trip(request, pair, algorithm):
    pair = request.getfixturevalue(pair)
    token = issuer_for(pair).issue("alice", [Scope("repository", "a/b", ("pull",))]).token
    assert segments(token)[0]["alg"] == algorithm
    claims = TokenVerifier([pair[1]], ISSUER, SERVICE).verify(token)
    assert claims["sub"] == "alice" and granted_access(claims, "repository", "a/b") == {"pull"}


def test_a_token_without_x5c_is_verified_by_its_kid_against_a_trusted_certificate_or_bare_key(ec_key):
    token = issuer_for(ec_key, chain=False).issue("alice").token
    assert "x5c" not in segments(token)[0]
    assert TokenVerifier([ec_key[1]], ISSUER, SERVICE).verify(token)["sub"] == "alice"
    assert TokenVerifier([ec_key[0].public_key()], ISSUER, SERVICE).verify(token)["sub"] == "alice"


def test_a_chain_through_a_trusted_ca_is_accepted_and_one_through_a_non_ca_is_not():
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, "index ca", ca_key, "index ca", now, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(leaf_key, "signer", ca_key, "index ca", now, ca=False)
    token = TokenIssuer(leaf_key, [leaf, ca], ISSUER, SERVICE).issue("alice").token
    assert TokenVerifier([ca], ISSUER, SERVICE).verify(token)["sub"] == "alice"
    short = TokenIssuer(leaf_key, [leaf], ISSUER, SERVICE).issue("alice").token
    assert TokenVerifier([ca], ISSUER, SERVICE).verify(short)["sub"] == "alice"

    not_ca = _certificate(ca_key, "index ca", ca_key, "index ca", now, ca=False)
    with pytest.raises(InvalidToken) as refused:
        TokenVerifier([not_ca], ISSUER, SERVICE).verify(short)
    assert refused.value.reason == InvalidToken.UNKNOWN_KEY


def _certificate(key, name, signer, signer_name, now, ca):
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


def _reason(verifier: TokenVerifier, token) -> str:
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert str(refused.value)  # a message a person can read
    return refused.value.reason


def test_expired_tokens_are_refused_after_the_leeway_and_accepted_within_it(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    an_hour_ago = issuer_for(ec_key, clock=lambda: time.time() - 3600).issue("alice").token
    assert _reason(verifier, an_hour_ago) == InvalidToken.EXPIRED
    just_expired = issuer_for(ec_key, lifetime=60, clock=lambda: time.time() - 90).issue("alice").token
    assert verifier.verify(just_expired)["sub"] == "alice"  # 30 s past exp: within Distribution's 60 s


def test_tokens_not_yet_valid_are_refused_beyond_the_leeway(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    assert _reason(verifier, issuer_for(ec_key, clock=lambda: time.time() + 600).issue("a").token) == \
        InvalidToken.NOT_YET_VALID
    assert verifier.verify(issuer_for(ec_key, clock=lambda: time.time() + 30).issue("a").token)["sub"] == "a"


def test_a_token_of_another_issuer_or_for_another_service_is_refused(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    assert _reason(verifier, issuer_for(ec_key, issuer="elsewhere").issue("a").token) == InvalidToken.WRONG_ISSUER
    assert _reason(verifier, issuer_for(ec_key, service="other").issue("a").token) == InvalidToken.WRONG_AUDIENCE


def test_changed_claims_or_a_changed_signature_break_the_signature(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    token = issuer_for(ec_key).issue("bob", [Scope("repository", "bob/app", ("pull",))]).token
    assert _reason(verifier, forge(token, access=[{"type": "repository", "name": "alice/app",
                                                   "actions": ["push"]}])) == InvalidToken.BAD_SIGNATURE
    header, claims, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert _reason(verifier, f"{header}.{claims}.{flipped}") == InvalidToken.BAD_SIGNATURE


def test_tokens_signed_by_keys_nobody_trusts_are_refused(ec_key):
    stranger = ec.generate_private_key(ec.SECP256R1())
    pair = (stranger, keys.self_signed_certificate(stranger, "stranger"))
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    assert _reason(verifier, issuer_for(pair).issue("a").token) == InvalidToken.UNKNOWN_KEY
    assert _reason(verifier, issuer_for(pair, chain=False).issue("a").token) == InvalidToken.UNKNOWN_KEY
    # a trusted kid does not help a token whose x5c chain is untrusted: x5c is checked first
    mixed = jwt.encode({"iss": ISSUER, "aud": SERVICE, "exp": time.time() + 60}, stranger, algorithm="ES256",
                       headers={"kid": keys.libtrust_key_id(ec_key[0].public_key()),
                                "x5c": segments(issuer_for(pair).issue("a").token)[0]["x5c"]})
    assert _reason(verifier, mixed) == InvalidToken.UNKNOWN_KEY
    no_key = jwt.encode({"iss": ISSUER, "aud": SERVICE, "exp": time.time() + 60}, ec_key[0], algorithm="ES256")
    assert _reason(verifier, no_key) == InvalidToken.UNKNOWN_KEY


def test_unsigned_hmac_and_mismatched_algorithms_are_refused(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    kid = keys.libtrust_key_id(ec_key[0].public_key())
    claims = {"iss": ISSUER, "aud": SERVICE, "exp": time.time() + 60}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    hmac = jwt.encode(claims, "a shared secret of enough length to be accepted", algorithm="HS256",
                      headers={"kid": kid})
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    mismatched = header.rstrip(b"=").decode() + "." + issuer_for(ec_key, chain=False).issue("a").token.split(".", 1)[1]
    for token in (unsigned, hmac, mismatched):
        assert _reason(verifier, token) == InvalidToken.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize("token", [None, "", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "e30.e30.e30"])
def test_garbage_is_malformed(ec_key, token):
    assert _reason(TokenVerifier([ec_key[1]], ISSUER, SERVICE), token) in (InvalidToken.MALFORMED,
                                                                            InvalidToken.UNSUPPORTED_ALGORITHM)


def test_claims_of_the_wrong_shape_are_malformed(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    kid = keys.libtrust_key_id(ec_key[0].public_key())
    base = {"iss": ISSUER, "aud": SERVICE, "exp": int(time.time()) + 60}
    for claims in ({**base, "exp": "tomorrow"}, {"iss": ISSUER, "aud": SERVICE},
                   {**base, "access": {"repository": "a/b"}}, {**base, "access": [{"actions": "pull"}]}):
        token = jwt.encode(claims, ec_key[0], algorithm="ES256", headers={"kid": kid})
        assert _reason(verifier, token) == InvalidToken.MALFORMED, claims


def test_a_verified_token_is_remembered_until_it_expires(ec_key):
    now = [time.time()]
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE, clock=lambda: now[0])
    token = issuer_for(ec_key, lifetime=300, clock=lambda: now[0]).issue("alice").token
    checks = []
    real = verifier._verify
    verifier._verify = lambda *args: checks.append(1) or real(*args)
    for _ in range(100):
        assert verifier.verify(token)["sub"] == "alice"
    assert len(checks) == 1 and verifier.hits == 99
    started = time.perf_counter()
    for _ in range(1000):
        verifier.verify(token)
    assert (time.perf_counter() - started) / 1000 < 50e-6  # a dictionary look-up, not an ECDSA check

    now[0] += 300 + 61  # past exp and the leeway: the remembered token is refused too
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert refused.value.reason == InvalidToken.EXPIRED


def test_the_cache_of_verified_tokens_is_bounded(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE, cache_size=2)
    issuer = issuer_for(ec_key)
    first, second, third = (issuer.issue(name).token for name in ("a", "b", "c"))
    for token in (first, second, first, third):  # `first` was used last but one: `second` goes
        verifier.verify(token)
    assert list(verifier._verified) == [first, third]
    assert verifier.hits == 1


def test_failed_verifications_are_not_remembered(ec_key):
    verifier = TokenVerifier([ec_key[1]], ISSUER, SERVICE)
    token = issuer_for(ec_key, issuer="elsewhere").issue("a").token
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert not verifier._verified and verifier.hits == 0


# --- the service of a process ---------------------------------------------------------------------

def test_the_index_makes_its_key_in_the_store_and_trusts_its_own_tokens(tmp_path):
    config = Config(store=str(tmp_path / "store"), auth=AuthConfig(issuer="idx", service="reg", token_lifetime=120))
    issuer, verifier = build_token_service(config)
    assert os.path.exists(tmp_path / "store" / "keys" / keys.KEY_FILE)
    issued = issuer.issue("alice", [Scope("repository", "a/b", ("pull",))])
    assert issued.expires_in == 120
    assert verifier.verify(issued.token)["aud"] == "reg"


def test_a_registry_role_issues_nothing_and_trusts_the_index_certificate_it_is_given(tmp_path):
    index = Config(store=str(tmp_path / "index"), auth=AuthConfig(keys_dir=str(tmp_path / "index-keys")))
    index_issuer, _ = build_token_service(index)
    registry = Config(store=str(tmp_path / "registry"), role="registry",
                      auth=AuthConfig(trust=str(tmp_path / "index-keys" / keys.CERT_FILE)))
    issuer, verifier = build_token_service(registry)
    assert issuer is None and not os.path.exists(tmp_path / "registry" / "keys")
    assert verifier.verify(index_issuer.issue("alice").token)["sub"] == "alice"

    with pytest.raises(DocumentInvalid, match="auth.trust"):
        build_token_service(Config(store=str(tmp_path / "r2"), role="registry"))


def test_a_tokens_actor_is_kept_until_the_next_commit_or_its_expiry():
    from registry_core.context import Actor
    from registry_core.index.auth import TokenActors

    actors, alice = TokenActors(limit=2), Actor(name="alice", kind="jwt")
    actors.put("t1", "tip-1", 1000.0, alice)
    assert actors.get("t1", "tip-1", 999.0) is alice
    assert actors.get("t1", "tip-2", 999.0) is None  # a commit since: the account may be disabled
    assert actors.get("t1", "tip-1", 1000.5) is None  # expired
    assert actors.get("t2", "tip-1", 999.0) is None
    actors.put("t2", "tip-1", 1000.0, alice)
    actors.put("t3", "tip-1", 1000.0, alice)  # over the limit: the kept ones are forgotten
    assert actors.get("t1", "tip-1", 999.0) is None and actors.get("t3", "tip-1", 999.0) is alice
