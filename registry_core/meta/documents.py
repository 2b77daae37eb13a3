"""Metadata documents: YAML text, each with `kind` and `schemaVersion`, validated by schemas/<kind>.yaml.

Parsing and validation are cached by the git blob id of the document's bytes: the same bytes are
never parsed twice in a process, so the hot read paths pay for a dictionary lookup only.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import jsonschema
import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# A kind names a file in schemas/: no '/', '.' or '..' that could reach a YAML file elsewhere.
_KIND = re.compile(r"[a-z][a-z0-9-]*")


class DocumentInvalid(Exception):
    """A document (or config file) does not match its schema; the message names the path and the problem."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


@functools.cache
def schema(kind: str) -> dict:
    try:
        text = resources.files("registry_core.schemas").joinpath(f"{kind}.yaml").read_text()
    except FileNotFoundError:
        raise DocumentInvalid(kind, f"no schema for document kind {kind!r}") from None
    return yaml.load(text, Loader=_Loader)


@functools.cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    document_schema = schema(kind)
    cls = jsonschema.validators.validator_for(document_schema)
    cls.check_schema(document_schema)
    return cls(document_schema)


def validate(document: dict, path: str, kind: str | None = None) -> dict:
    """Raise DocumentInvalid unless `document` matches the schema of its kind (or of `kind`)."""
    if not isinstance(document, dict):
        raise DocumentInvalid(path, "a document must be a mapping")
    kind = kind or document.get("kind")
    if not isinstance(kind, str):
        raise DocumentInvalid(path, "the document has no 'kind'")
    if not _KIND.fullmatch(kind):
        raise DocumentInvalid(path, f"kind: {kind!r} is not a document kind")
    try:
        document_validator = validator(kind)
    except DocumentInvalid as e:  # no schema for that kind: report it at the document's path
        raise DocumentInvalid(path, f"kind: no schema for document kind {kind!r}") from e
    error = jsonschema.exceptions.best_match(document_validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise DocumentInvalid(path, f"{where}: {error.message}")
    return document


def dump(document: dict, path: str) -> bytes:
    validate(document, path)
    return serialize(document)


def serialize(document: dict) -> bytes:
    """The YAML text of a document already validated (a transaction validates on `put`)."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True).encode()


def parse(data: bytes, path: str, kind: str | None = None) -> dict:
    try:
        document = yaml.load(data, Loader=_Loader)
    except yaml.YAMLError as e:
        raise DocumentInvalid(path, f"not valid YAML: {e}") from None
    return validate(document, path, kind)
