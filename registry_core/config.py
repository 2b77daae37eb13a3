"""registry.yaml: loading, secrets by reference ({$env: NAME} / {$file: path}), validation, defaults.

A config file that does not match schemas/config.yaml is refused with the file, the key and the
problem, before anything starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from registry_core.meta.documents import DocumentInvalid, schema, validate

DEFAULT_STORE = "./registry-data"


@dataclass
class AuthConfig:
    enabled: bool = True
    issuer: str = "registry-core"
    service: str = "registry"
    realm: str | None = None
    token_lifetime: int = 300
    keys_dir: str | None = None
    trust: str | None = None
    anonymous_pull: bool = True
    login_attempts: int = 10
    login_window: int = 300

    @classmethod
    def from_document(cls, document: dict) -> "AuthConfig":
        names = {"enabled": "enabled", "issuer": "issuer", "service": "service", "realm": "realm",
                 "tokenLifetime": "token_lifetime", "keysDir": "keys_dir", "trust": "trust",
                 "anonymousPull": "anonymous_pull", "loginAttempts": "login_attempts",
                 "loginWindow": "login_window"}
        return cls(**{names[key]: value for key, value in document.items()})


@dataclass
class MetricsConfig:
    """Who may read /metrics (registry_core/observability/routes.py): everyone by default."""

    enabled: bool = True
    loopback_only: bool = False
    bearer_token: str | None = None

    @classmethod
    def from_document(cls, document: dict) -> "MetricsConfig":
        names = {"enabled": "enabled", "loopbackOnly": "loopback_only", "bearerToken": "bearer_token"}
        return cls(**{names[key]: value for key, value in document.items()})


@dataclass
class Config:
    store: str = DEFAULT_STORE
    storage_driver: str = "filesystem"
    storage_options: dict = field(default_factory=dict)
    durable: bool = False
    meta_writer: str = "packs"
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    threads: int = 8
    public_url: str | None = None
    access_log: str = "none"
    default_visibility: str = "private"
    manifest_limit: int = 4 * 1024 * 1024
    read_only: bool = False
    role: str = "all"
    auth: "AuthConfig" = field(default_factory=lambda: AuthConfig())
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    plugins: list[str] = field(default_factory=list)
    plugins_dir: str | None = None
    plugin_config: dict = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def from_document(cls, document: dict, source: str = "registry.yaml") -> "Config":
        document = typed_substitutions(resolve_secrets(document, source), schema("config"))
        validate(document, source, kind="config")
        http = document.get("http", {})
        storage = document.get("storage", {})
        config = cls(source=source)
        config.store = document.get("store", config.store)
        config.storage_driver = storage.get("driver", config.storage_driver)
        config.storage_options = storage.get("options", {})
        config.durable = storage.get("durable", config.durable)
        config.meta_writer = storage.get("metaWriter", config.meta_writer)
        config.host = http.get("host", config.host)
        config.port = http.get("port", config.port)
        config.workers = http.get("workers", config.workers)
        config.threads = http.get("threads", config.threads)
        config.public_url = http.get("publicUrl")
        config.access_log = http.get("accessLog", config.access_log)
        config.default_visibility = document.get("repositories", {}).get("defaultVisibility",
                                                                         config.default_visibility)
        config.manifest_limit = document.get("limits", {}).get("manifestBytes", config.manifest_limit)
        config.read_only = document.get("readOnly", False)
        config.role = document.get("role", config.role)
        config.auth = AuthConfig.from_document(document.get("auth", {}))
        config.metrics = MetricsConfig.from_document(document.get("metrics", {}))
        config.plugins = list(document.get("plugins", []))
        config.plugins_dir = document.get("pluginsDir")
        config.plugin_config = document.get("pluginConfig", {})
        return config


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise DocumentInvalid(path, f"cannot read the config file: {e.strerror}") from None


def load(path: str | None, text: str | None = None) -> Config:
    """The configuration in the file at `path` (defaults without one); in `text` instead when
    given, which is then that file's text as read earlier (relative paths in it are still the
    file's folder's)."""
    if path is None:
        return Config()
    try:
        document = yaml.safe_load(read_text(path) if text is None else text) or {}
    except yaml.YAMLError as e:
        raise DocumentInvalid(path, f"not valid YAML: {e}") from None
    config = Config.from_document(document, path)
    if "store" in document and not os.path.isabs(config.store):
        config.store = os.path.join(os.path.dirname(os.path.abspath(path)), config.store)
    return config


class _Substituted(str):
    """Text that came from {$env} or {$file}: the schema may ask for a number or a boolean there."""


def resolve_secrets(value, source: str, where: str = ""):
    """Replace {$env: NAME} and {$file: path} anywhere in `value` by what they name. A `$file` path
    is relative to the config file's folder. What they give is text; `from_document` then reads it
    as the integer or boolean the schema asks for at that place (`http.port: {$env: PORT}`)."""
    if isinstance(value, dict):
        if set(value) == {"$env"}:
            name = value["$env"]
            if name not in os.environ:
                raise DocumentInvalid(source, f"{where or '(top level)'}: environment variable {name} is not set")
            return _Substituted(os.environ[name])
        if set(value) == {"$file"}:
            path = os.path.join(os.path.dirname(os.path.abspath(source)), value["$file"])
            try:
                with open(path) as f:
                    return _Substituted(f.read().strip())
            except OSError as e:
                raise DocumentInvalid(source, f"{where}: cannot read {path}: {e.strerror}") from None
        return {k: resolve_secrets(v, source, f"{where}/{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, source, f"{where}/{i}") for i, v in enumerate(value)]
    return value


_BOOLEANS = {"true": True, "false": False}


def typed_substitutions(value, schema: dict):
    """`value` with each substituted text read as the integer or boolean that `schema` asks for
    at its place (left as text when it does not read as one: validation then says what is wrong)."""
    if isinstance(value, _Substituted):
        wanted = schema.get("type")
        if wanted == "integer" and value.strip().lstrip("-").isdigit():
            return int(value)
        if wanted == "boolean" and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        return str(value)
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {key: typed_substitutions(item, properties.get(key, extra if isinstance(extra, dict) else {}))
                for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [typed_substitutions(item, items if isinstance(items, dict) else {}) for item in value]
    return value
