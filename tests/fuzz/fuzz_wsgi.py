"""Coverage-guided fuzzing of the request path: fuzz bytes become HTTP requests to the WSGI app.

    .venv/bin/pip install atheris        (not a test dependency: pytest never collects this file)
    .venv/bin/python tests/fuzz/fuzz_wsgi.py --config=open    -max_total_time=240 -rss_limit_mb=4096
    .venv/bin/python tests/fuzz/fuzz_wsgi.py --config=secured -max_total_time=240 -rss_limit_mb=4096
    .venv/bin/python tests/fuzz/fuzz_wsgi.py --config=secured crash-<sha1>   (run one input again)

Each config builds one app in this process (`Registry` + `build_app`, as a worker does) on a
temporary store seeded from sample_store/: `open` has `auth: {enabled: false}`, `secured` the
default configuration (accounts, tokens, access control; the demo users admin, alice and bob).
Each input is read as a request: a method, a path made from the grammar of the real routes with
fuzzed components (names, references, digests, upload ids, users), a query string, headers
(Content-Type, Content-Length that agrees with the body or not, Content-Range, Range,
Authorization with good and fuzzed credentials, X-Request-Id) and a body (raw bytes, or a real
manifest or API body with one value replaced, nested deep, with huge numbers, surrogates or
duplicate keys). The request target is what an HTTP client could send: bytes outside printable
ASCII are percent-encoded, and PATH_INFO is the target's path percent-decoded as latin-1
(PEP 3333, as gunicorn passes it).

A finding raises `Finding` (libFuzzer then saves the input as crash-<sha1>):
- an exception that escapes the WSGI callable;
- a 500 UNKNOWN, the last-resort answer to an unhandled exception (its traceback is shown);
- an error status whose body is not JSON (the spec's {"errors": [...]}; /token's OAuth2 shape);
- a Content-Length header that disagrees with the body sent;
- a header value a server cannot send (not latin-1, or holding CR, LF or NUL);
- a request that takes longer than HANG_SECONDS (an alarm), or libFuzzer's -timeout.
Each finding's request is also written, readable, to tests/fuzz/findings/ (FINDINGS_DIR) so that
tests/test_fuzz_findings.py can replay it through the real server.

For speed the harness hashes the demo users' passwords with argon2's cheapest parameters (a
login is then microseconds instead of 40 ms; the code that verifies is the same) and raises the
login limiter's allowance, so that fuzzed wrong passwords never lock the demo users out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["registry_core", "bottle"]):  # bottle: routing, request parsing
    from registry_core.app import Registry
    from registry_core.index import passwords
    from registry_core.seed import sample_store_dir, seed
    from registry_core.serving import read_config
    from registry_core.web_app import build_app

HANG_SECONDS = 20
# FUZZ_STATS=<file>: every 1000 requests, how many had each method, path shape and status
STATS = {} if os.environ.get("FUZZ_STATS") else None
FINDINGS_DIR = Path(os.environ.get("FUZZ_FINDINGS_DIR", Path(__file__).with_name("findings")))
METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONTENT_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/json", "application/octet-stream",
                 "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
                 "text/plain", "multipart/form-data; boundary=x", ""]
QUERY_KEYS = ["n", "last", "page", "q", "scope", "service", "digest", "mount", "from", "artifactType",
              "offline_token", "client_id", "account"]
NAMES = ["library/hello", "library/busybox-lite", "alice/notes", "hello", "fuzz/app", "bob/app", "a",
         "library/../hello", "_catalog", "Library/Hello", "a" * 256, "a/" * 130 + "a"]
TAGS = ["latest", "1.0", "v1", "fuzz", "-x", ".x", "a" * 129]
USERS = ["admin", "alice", "bob", "carol", "nobody", "Admin", "a" * 65, "robot+x"]
USER_PASSWORDS = {"admin": "admin-demo", "alice": "alice-demo", "bob": "bob-demo"}
SPECIAL_TEXT = ["\n", "%0A", "%00", "\x00", "\r\n", "\ud800", "é", "☃", "\U0001f600", "..", "/", "%2F",
                "%", "%zz", " ", "+", "?", "#", ";", "'", '"', "\\", "1e999", "-1", "9" * 30, ""]


class Finding(Exception):
    """What the fuzzer reports: the request, and what was wrong with the answer."""


class Escaped(Exception):
    """An exception that escaped the WSGI callable."""


class Tracebacks(logging.Handler):
    """Keeps the last traceback ErrorsAsJson logged, to show with a 500 UNKNOWN."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.last = None

    def emit(self, record):
        if record.exc_info:
            self.last = logging.Formatter().formatException(record.exc_info)


# --- the apps ------------------------------------------------------------------------------------

class Target:
    """One app on a temporary seeded store, and what the grammar knows of it."""

    def __init__(self, kind: str):
        self.kind = kind
        store = tempfile.mkdtemp(prefix=f"fuzz-{kind}-")
        config = read_config(None, store)
        config.auth.enabled = kind == "secured"
        config.auth.login_attempts = 1 << 30
        config.auth.token_lifetime = 7 * 24 * 3600
        passwords._hasher = passwords.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        seed(Registry(config))
        self.registry = Registry(config)
        self.app = build_app(self.registry)
        self.digests = sorted(f"sha256:{p.name}" for p in sample_store_dir().glob("layouts/*/blobs/sha256/*"))
        self.manifests = [json.loads(p.read_text()) for p in sample_store_dir().glob("layouts/*/blobs/sha256/*")
                          if p.stat().st_size < 4096 and _is_manifest(p)]
        self.uploads = [self.registry.uploads.start(name) for name in ("library/hello", "fuzz/app")]
        self.authorizations = [""]
        for user, password in USER_PASSWORDS.items():
            basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            self.authorizations.append(basic)
            if config.auth.enabled:
                scope = "repository:library/hello:pull,push,delete repository:fuzz/app:pull,push,delete " \
                        "repository:alice/notes:pull,push registry:catalog:*"
                status, _, body = call(self.app, request("GET", f"/token?service=registry&scope={quote(scope)}",
                                                         headers={"Authorization": basic}))
                assert status.startswith("200"), (status, body)
                self.authorizations.append("Bearer " + json.loads(body)["token"])
                self.authorizations.append(self._access_token(basic, user))
        self.comment_ids = ["0" * 12, "zz"]

    def _access_token(self, basic: str, user: str) -> str:
        body = json.dumps({"actions": ["pull", "push"], "description": "fuzz"}).encode()
        status, _, answer = call(self.app, request("POST", f"/api/v1/users/{user}/tokens", body,
                                                   {"Authorization": basic, "Content-Type": "application/json"}))
        assert status.startswith("201"), (status, answer)
        return "Basic " + base64.b64encode(f"{user}:{json.loads(answer)['secret']}".encode()).decode()


def _is_manifest(path: Path) -> bool:
    try:
        return "schemaVersion" in json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return False


# --- requests ------------------------------------------------------------------------------------

def request(method: str, target: str, body: bytes = b"", headers: dict | None = None,
            content_length: str | None = None, chunked: bool = False) -> dict:
    """A request as the replay test stores it: the target is ASCII, as sent on the wire."""
    headers = dict(headers or {})
    return {"method": method, "target": target, "headers": headers, "body": base64.b64encode(body).decode(),
            "content_length": str(len(body)) if content_length is None and not chunked else content_length,
            "chunked": chunked}


def environ_of(req: dict) -> dict:
    path, _, query = req["target"].partition("?")
    body = base64.b64decode(req["body"])
    environ = {"REQUEST_METHOD": req["method"], "SCRIPT_NAME": "",
               "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
               "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
               "wsgi.input_terminated": True, "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:5000"}
    length = req["content_length"]
    if req["chunked"]:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    elif length is not None:
        environ["CONTENT_LENGTH"] = length
        if re.fullmatch(r"[0-9]{1,18}", length):
            body = body[:int(length)]  # the server hands the app at most Content-Length bytes
    environ["wsgi.input"] = BytesIO(body)
    for name, value in req["headers"].items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return environ


def call(app, req: dict):
    """Call the WSGI app: (status line, headers, body); checks the WSGI protocol on the way."""
    started = []

    def start_response(status, headers, exc_info=None):
        if started and not exc_info:
            raise Finding("start_response called twice without exc_info")
        started[:] = [(status, headers)]
        return lambda data: None

    environ = environ_of(req)
    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    except Finding:
        raise
    except BaseException as e:  # from the app, or from its body's iterator
        raise Escaped(e) from e
    if not started:
        raise Finding("the app returned without calling start_response")
    status, headers = started[-1]
    return status, headers, body


class Grammar:
    """Reads one request out of fuzz bytes."""

    def __init__(self, data: bytes, target: Target):
        self.fdp = atheris.FuzzedDataProvider(data)
        self.t = target

    def pick(self, options):
        return options[self.fdp.ConsumeIntInRange(0, len(options) - 1)]

    def flag(self) -> bool:
        return self.fdp.ConsumeBool()

    def text(self, most: int = 40) -> str:
        """Fuzzed text: unicode, special characters, or a long run."""
        kind = self.fdp.ConsumeIntInRange(0, 5)
        if kind == 0:
            return self.fdp.ConsumeUnicodeNoSurrogates(self.fdp.ConsumeIntInRange(0, most))
        if kind == 1:
            return self.fdp.ConsumeUnicode(self.fdp.ConsumeIntInRange(0, most))
        if kind == 2:
            return self.pick(SPECIAL_TEXT)
        if kind == 3:
            return self.pick(["a", "9", "é", "/", "%41"]) * self.fdp.ConsumeIntInRange(0, 5000)
        if kind == 4:
            return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, most)).decode("latin-1")
        return self.fdp.ConsumeUnicodeNoSurrogates(8) + self.pick(SPECIAL_TEXT) + self.fdp.ConsumeUnicodeNoSurrogates(8)

    def maybe(self, known: list[str]) -> str:
        """A known value, a known value with fuzz around it, or fuzz."""
        choice = self.fdp.ConsumeIntInRange(0, 5)
        if choice <= 2:
            return self.pick(known)
        if choice == 3:
            return self.pick(known) + self.text(8)
        if choice == 4:
            return self.text(8) + self.pick(known)
        return self.text()

    def name(self) -> str:
        return self.maybe(NAMES)

    def digest(self) -> str:
        choice = self.fdp.ConsumeIntInRange(0, 4)
        if choice <= 1:
            return self.pick(self.t.digests)
        if choice == 2:
            return "sha256:" + hashlib.sha256(self.fdp.ConsumeBytes(8)).hexdigest()
        if choice == 3:
            return self.pick(["sha256:", "sha512:", "md5:", "SHA256:", ":", "sha256+b64:"]) + self.text(70)
        return self.maybe(self.t.digests)

    def reference(self) -> str:
        return self.digest() if self.flag() else self.maybe(TAGS)

    def segment(self) -> str:
        """A path component as it goes on the wire (percent-encoded), sometimes left raw."""
        value = self.pick([self.name, self.reference, self.digest, lambda: self.maybe(USERS),
                           lambda: self.maybe(self.t.uploads), lambda: self.maybe(self.t.comment_ids)])()
        return value

    def path(self) -> tuple[str, str, str]:
        """A path of one of the routes' shapes, a method that route takes, and the kind of body
        it reads (the caller uses the method and body kind half of the time)."""
        name, ref, digest = self.name(), self.reference(), self.digest()
        user, other = self.maybe(USERS), self.maybe(USERS)
        upload = self.maybe(self.t.uploads)
        comment = self.maybe(self.t.comment_ids)
        shapes = [
            ("/v2/", "GET", ""), ("/v2", "GET", ""), ("/v2/_catalog", "GET", ""),
            (f"/v2/{name}/tags/list", "GET", ""), (f"/v2/{name}/manifests/{ref}", "GET HEAD DELETE", ""),
            (f"/v2/{name}/manifests/{ref}", "PUT", "manifest"), (f"/v2/{name}/blobs/{digest}", "GET HEAD DELETE", ""),
            (f"/v2/{name}/blobs/uploads/", "POST", "raw"), (f"/v2/{name}/blobs/uploads", "POST", "raw"),
            (f"/v2/{name}/blobs/uploads/{upload}", "GET PATCH PUT DELETE", "raw"),
            (f"/v2/{name}/referrers/{digest}", "GET", ""), ("/token", "GET", ""), ("/token", "POST", "form"),
            ("/api/v1/users", "GET POST", "api"), (f"/api/v1/users/{user}", "GET PATCH", "api"),
            (f"/api/v1/users/{user}/tokens", "GET POST", "api"),
            (f"/api/v1/users/{user}/tokens/{self.text(14)}", "DELETE", ""),
            (f"/api/v1/users/{user}/starred", "GET", ""), ("/api/v1/robots", "POST", "api"),
            ("/api/v1/orgs", "POST", "api"), (f"/api/v1/orgs/{user}", "GET", ""),
            (f"/api/v1/orgs/{user}/members/{other}", "PUT DELETE", "api"),
            (f"/api/v1/repositories/{name}", "GET PATCH", "api"), (f"/api/v1/repositories/{name}/star", "PUT DELETE", ""),
            (f"/api/v1/repositories/{name}/comments", "GET POST", "api"),
            (f"/api/v1/repositories/{name}/comments/{comment}", "GET DELETE", ""),
            (f"/api/v1/repositories/{name}/collaborators", "GET", ""),
            (f"/api/v1/repositories/{name}/collaborators/{other}", "GET PUT DELETE", "api"),
            ("/api/v1/search", "GET", ""), ("/v1/search", "GET", ""),
            (f"/{self.segment()}", "GET", "raw"), (f"/v2/{self.segment()}/{self.segment()}", "GET", "raw"),
        ]
        path, methods, kind = self.pick(shapes)
        return path, self.pick(methods.split()), kind

    def query(self) -> str:
        pairs = []
        for _ in range(self.fdp.ConsumeIntInRange(0, 4)):
            key = self.maybe(QUERY_KEYS) if self.flag() else self.pick(QUERY_KEYS)
            value = self.pick([self.text, self.name, self.digest, self.reference,
                               lambda: str(self.fdp.ConsumeInt(8)),
                               lambda: f"repository:{self.name()}:{self.maybe(['pull', 'push', 'pull,push', '*'])}",
                               lambda: "registry"])()
            pairs.append((key, value))
        return "&".join(f"{wire(k)}={wire(v)}" if self.flag() else f"{wire(k)}" for k, v in pairs)

    def authorization(self) -> str:
        choice = self.fdp.ConsumeIntInRange(0, 5)
        if choice <= 2:
            return self.pick(self.t.authorizations)
        if choice == 3:
            credentials = f"{self.maybe(USERS)}:{self.maybe(list(USER_PASSWORDS.values()))}"
            return "Basic " + base64.b64encode(credentials.encode("utf-8", "surrogatepass")).decode()
        if choice == 4:
            known = self.pick(self.t.authorizations)
            return known[:self.fdp.ConsumeIntInRange(0, len(known))] + self.text(8)
        if self.flag():
            return "Bearer " + self.jwt()
        return self.pick(["Basic ", "Bearer ", "bearer ", "Digest ", ""]) + self.text()

    def jwt(self) -> str:
        """A JWS in compact form whose header and claims are fuzzed (its signature is not valid)."""
        header = {"alg": self.maybe(["ES256", "RS256", "none", "HS256"]), "typ": "JWT"}
        for key in ("kid", "x5c", "jku"):
            if self.flag():
                header[key] = self.json_value() if self.flag() else [self.text(), self.text()]
        claims = {"iss": "registry-core", "aud": "registry", "sub": self.maybe(USERS),
                  "exp": self.json_value(), "nbf": self.json_value(), "access": self.json_value()}
        if self.flag():
            _replace_somewhere(claims, self.json_value(), self.fdp)
        def part(document) -> str:
            text = self.mutate(document) if self.flag() else json.dumps(document)
            return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")
        return f"{part(header)}.{part(claims)}.{base64.urlsafe_b64encode(self.fdp.ConsumeBytes(64)).decode()}"

    def json_value(self, depth: int = 0):
        choice = self.fdp.ConsumeIntInRange(0, 9)
        if choice == 0 and depth < 3:
            return {self.text(8): self.json_value(depth + 1) for _ in range(self.fdp.ConsumeIntInRange(0, 3))}
        if choice == 1 and depth < 3:
            return [self.json_value(depth + 1) for _ in range(self.fdp.ConsumeIntInRange(0, 3))]
        return self.pick([lambda: self.text(), lambda: self.fdp.ConsumeInt(9), lambda: None, lambda: True,
                          lambda: False, lambda: self.fdp.ConsumeRegularFloat(), lambda: [], lambda: {},
                          self.name, self.digest])()

    def mutate(self, document) -> str:
        """`document` as JSON text with one change: a value replaced, raw text spliced in, or
        the whole thing wrapped deep."""
        document = json.loads(json.dumps(document))
        choice = self.fdp.ConsumeIntInRange(0, 5)
        if choice == 0:
            return json.dumps(document)
        if choice == 1:
            _replace_somewhere(document, self.json_value(), self.fdp)
            return json.dumps(document)
        raw = self.pick(['"\\ud800"', '"\\udfff\\ud800"', "1" + "0" * self.fdp.ConsumeIntInRange(1, 6000),
                         "1e99999", "-0", "NaN", "Infinity", "[" * 3000 + "]" * 3000, '{"a":' * 200 + "1" + "}" * 200,
                         '"\\u0000"', "1.5", "18446744073709551617", '"' + "x" * 70000 + '"'])
        text = json.dumps(document)
        if choice == 2 and isinstance(document, dict) and document:  # a duplicate key
            key = self.pick(sorted(document))
            return text[:-1] + f", {json.dumps(key)}: {raw}}}"
        if choice == 3 and isinstance(document, dict):
            key = self.pick(sorted(document) or ["x"])
            document[key] = "\x00PLACEHOLDER\x00"
            return json.dumps(document).replace('"\\u0000PLACEHOLDER\\u0000"', raw)
        if choice == 4:
            return "[" * self.fdp.ConsumeIntInRange(1, 100000) + text
        return text[:self.fdp.ConsumeIntInRange(0, len(text))]

    def body(self, kind: str) -> bytes:
        choice = {"manifest": 2, "api": 3, "form": 4}.get(kind) if kind and self.flag() else None
        if choice is None:
            choice = self.fdp.ConsumeIntInRange(0, 5)
        if choice == 0:
            return b""
        if choice == 1:
            return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, 2000))
        if choice == 2 and self.t.manifests:
            return self.mutate(self.pick(self.t.manifests)).encode("utf-8", "surrogatepass")
        if choice == 3:
            template = self.pick([
                {"name": "carol", "password": "carol-password", "email": "c@example.test", "admin": False},
                {"actions": ["pull", "push"], "repositories": ["library/hello"], "expiresInDays": 30,
                 "description": "x"},
                {"owner": "alice", "name": "alice.robot"}, {"name": "org1", "description": "d"},
                {"role": "read"}, {"body": "a comment"}, {"visibility": "public", "description": "d"},
                {"disabled": False, "email": "a@b.c", "password": "new-password"}])
            return self.mutate(template).encode("utf-8", "surrogatepass")
        if choice == 4:
            fields = {"grant_type": self.maybe(["password", "refresh_token"]), "client_id": self.text(8),
                      "username": self.maybe(USERS), "password": self.maybe(list(USER_PASSWORDS.values())),
                      "scope": f"repository:{self.name()}:pull", "service": "registry",
                      "refresh_token": self.text(), "access_type": "offline"}
            return "&".join(f"{wire(k)}={wire(v)}" for k, v in fields.items() if self.flag()).encode()
        return self.text(200).encode("utf-8", "surrogatepass")

    def request(self) -> dict:
        path, method, kind = self.path()
        if self.flag():
            method = self.pick(METHODS)
        target = wire(path, safe="/") + (f"?{self.query()}" if self.flag() else "")
        body = self.body(kind)
        headers = {}
        if self.flag():
            headers["Content-Type"] = self.maybe(CONTENT_TYPES)
        if self.flag():
            headers["Authorization"] = self.authorization()
        if self.flag():
            headers["Content-Range"] = self.pick([f"0-{max(len(body) - 1, 0)}", f"{self.fdp.ConsumeInt(4)}-"
                                                  f"{self.fdp.ConsumeInt(4)}", self.text(), "bytes 0-1/2", "0-"])
        if self.flag():
            headers["Range"] = self.pick(["bytes=0-10", "bytes=-5", "bytes=5-", "bytes=0-0,2-3",
                                          f"bytes={self.fdp.ConsumeInt(8)}-{self.fdp.ConsumeInt(8)}", self.text()])
        if self.flag():
            headers["X-Request-Id"] = self.text()
        if self.flag():
            headers[self.pick(["Accept", "Host", "X-Forwarded-Proto", "Transfer-Encoding", "User-Agent",
                               "Docker-Upload-UUID"])] = self.text()
        headers = {k: header_value(v) for k, v in headers.items()}
        length_choice = self.fdp.ConsumeIntInRange(0, 6)
        chunked = length_choice == 5
        content_length = None  # the body's own length
        if length_choice == 3:
            content_length = str(max(len(body) + self.fdp.ConsumeIntInRange(-10, 10), 0))
        elif length_choice == 4:
            content_length = self.pick(["", "-1", "1e3", " 5", "٣", "9" * 30, "0x10", self.text(6)])
        elif length_choice == 6:
            body, content_length = b"", None
        return request(method, target, body, headers, content_length, chunked)


def wire(text: str, safe: str = "") -> str:
    """`text` as it can be sent in a request target: UTF-8 (lone surrogates too), percent-encoded
    but for printable ASCII. `%` stays as it is, so a `%0A` in the text reaches the app as a
    newline and a lone `%` as itself; `/` stays only where `safe` says so."""
    keep = {chr(b) for b in range(0x21, 0x7f)} - set("#?&=+") - ({"/"} if "/" not in safe else set())
    return "".join(chr(b) if chr(b) in keep else f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


def header_value(text: str) -> str:
    """A header value gunicorn passes on: latin-1 without control characters (it answers 400 to
    any but tab), and no surrounding blanks."""
    raw = text.encode("utf-8", "surrogatepass").decode("latin-1")
    return "".join(c for c in raw if c == "\t" or not (c < " " or c == "\x7f")).strip(" \t")


def _replace_somewhere(document, value, fdp) -> None:
    node = document
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not containers:
            break
        node = containers[fdp.ConsumeIntInRange(0, len(containers) - 1)][1]
    if isinstance(node, dict):
        keys = sorted(node)
        key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)] if keys and fdp.ConsumeBool() else "x"
        node[key] = value
    elif isinstance(node, list) and node:
        node[fdp.ConsumeIntInRange(0, len(node) - 1)] = value


# --- checking an answer --------------------------------------------------------------------------

def check(target: Target, req: dict, tracebacks: Tracebacks) -> None:
    tracebacks.last = None
    signal.alarm(HANG_SECONDS)
    try:
        status, headers, body = call(target.app, req)
    except Escaped as escaped:
        e = escaped.__cause__
        save(target, req)
        raise Finding(f"an exception escaped the app: {type(e).__name__}: {e}\n{describe(target, req)}") from e
    finally:
        signal.alarm(0)
    if STATS is not None:
        shape = re.sub(r"/v2/.+/(manifests|blobs/uploads|blobs|tags|referrers)", r"/v2/N/\1", req["target"])
        STATS[(req["method"], shape.split("?")[0][:40], status[:3])] = \
            STATS.get((req["method"], shape.split("?")[0][:40], status[:3]), 0) + 1
        if sum(STATS.values()) % 1000 == 0:
            Path(os.environ["FUZZ_STATS"]).write_text("".join(
                f"{n:7} {key}\n" for key, n in sorted(STATS.items(), key=lambda item: -item[1])))
    problems = answer_problems(req, status, headers, body)
    if problems:
        save(target, req)
        trace = f"\n{tracebacks.last}" if tracebacks.last else ""
        raise Finding(f"{'; '.join(problems)}\n{describe(target, req)}\nanswer: {status} {headers} "
                      f"{body[:500]!r}{trace}")


def answer_problems(req: dict, status: str, headers: list, body: bytes) -> list[str]:
    """What is wrong with the answer `status`, `headers`, `body` to `req` (the rules above)."""
    problems = []
    code = int(status.split()[0])
    values = {}
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str):
            problems.append(f"header {name!r} is not str")
            continue
        try:
            (name + value).encode("latin-1")
        except UnicodeEncodeError:
            problems.append(f"header {name}: {value!r} is not latin-1")
        if any(c in value for c in "\r\n\x00"):
            problems.append(f"header {name}: {value!r} holds CR, LF or NUL")
        values[name.lower()] = value
    bodiless = req["method"] == "HEAD" or code in (204, 304)
    if "content-length" in values and not bodiless and values["content-length"] != str(len(body)):
        problems.append(f"Content-Length {values['content-length']} but the body is {len(body)} bytes")
    if code >= 400 and not bodiless:
        try:
            document = json.loads(body)
        except ValueError:
            problems.append(f"a {code} whose body is not JSON")
        else:
            errors = document.get("errors") if isinstance(document, dict) else None
            if req["target"].startswith("/token") and isinstance(document, dict) and "error" in document:
                pass
            elif not isinstance(errors, list) or not all(isinstance(e, dict) and "code" in e for e in errors):
                problems.append(f"a {code} whose body is not the spec's error shape")
            elif code == 500 and any(e["code"] == "UNKNOWN" for e in errors):
                problems.append("500 UNKNOWN: an unhandled exception")
        if not values.get("content-type", "").startswith("application/json"):
            problems.append(f"a {code} with Content-Type {values.get('content-type')!r}")
    elif code == 500:
        problems.append("500 UNKNOWN: an unhandled exception")
    return problems


def describe(target: Target, req: dict) -> str:
    body = base64.b64decode(req["body"])
    return (f"[{target.kind}] {req['method']} {req['target'][:300]} headers={req['headers']!r:.600} "
            f"content_length={req['content_length']!r:.40} chunked={req['chunked']} body={body[:300]!r}")


def save(target: Target, req: dict) -> None:
    FINDINGS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"config": target.kind, **req}, indent=1, sort_keys=True)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    (FINDINGS_DIR / f"{target.kind}-{key}.json").write_text(text + "\n")


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    kinds = ["open", "secured"]
    argv = []
    for arg in sys.argv:
        if arg.startswith("--config="):
            kinds = ["open", "secured"] if arg.split("=", 1)[1] == "both" else [arg.split("=", 1)[1]]
        else:
            argv.append(arg)
    tracebacks = Tracebacks()
    logger = logging.getLogger("registry_core")
    logger.addHandler(tracebacks)
    logger.propagate = False
    targets = [Target(kind) for kind in kinds]

    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {HANG_SECONDS} s")
    signal.signal(signal.SIGALRM, on_alarm)

    def test_one_input(data: bytes) -> None:
        target = targets[data[0] % len(targets)] if data else targets[0]
        req = Grammar(data[1:], target).request()
        check(target, req, tracebacks)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
