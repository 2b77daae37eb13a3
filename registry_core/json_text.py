"""Parsing JSON that a client sent (a manifest, an API request body) into values the registry can keep.

`json.loads` accepts two things the rest of the registry cannot handle: text that is not Unicode
(a lone surrogate such as "\\ud800", which json decodes from an escape, or from raw UTF-8 bytes
with `surrogatepass`, and which then fails when written to git, YAML or a response), and nesting
deep enough to exhaust the interpreter's recursion (json.loads raises RecursionError; a document
a little under that limit makes YAML, jsonschema or json.dumps raise it later). Both are refused
here, where the JSON is read, so every later step sees a tree that is shallow and whose text
encodes as UTF-8. So is a whole number longer than Python converts (sys.get_int_max_str_digits,
4,300 digits), on which json.loads raises a plain ValueError.
"""

from __future__ import annotations

import json
import sys

MAX_DEPTH = 64  # objects and arrays inside one another; a manifest uses 4, an API body 2


class JsonRefused(ValueError):
    """The text is not JSON the registry accepts. The message says why, as a predicate for the
    caller to put after its subject: f"the manifest {error}"."""


def parse(raw: bytes | str, max_depth: int = MAX_DEPTH):
    """The JSON value in `raw` (UTF-8, -16 or -32, as json.loads detects). Raises JsonRefused when
    it is not JSON, is nested more than `max_depth` deep, holds text that is not Unicode, or has
    an object with the same key twice: parsers disagree on which one counts (Python and Go take
    the last, others the first or refuse), so a manifest with two `layers` could mean one set of
    blobs to the registry's garbage collection and another to a client."""
    try:
        document = json.loads(raw, object_pairs_hook=_without_duplicates)
    except RecursionError:
        raise JsonRefused(f"is nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JsonRefused(f"is not JSON: {e}") from None
    except JsonRefused:  # a key given twice (_without_duplicates)
        raise
    except ValueError:  # int() refused a number's digits
        raise JsonRefused(f"holds a number of more than {sys.get_int_max_str_digits()} digits: "
                          "send shorter numbers") from None
    check(document, max_depth)
    return document


def _without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise JsonRefused(f"has the key {twice!r} twice in one object: send each key once")
    return document


def check(document, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonRefused if `document` nests objects and arrays more than `max_depth` deep or has
    a string (key or value) that cannot be encoded as UTF-8. Iterative: never recursion-limited."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise JsonRefused(f"is nested more than {max_depth} levels deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    pending.append((item, depth + 1))
            else:
                pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start:e.end].encode("unicode_escape").decode("ascii")
        raise JsonRefused(f"holds text that is not valid Unicode ({bad}, a lone surrogate, "
                          f"at character {e.start} of a string): send UTF-8 text, or escape a "
                          "character outside the Basic Multilingual Plane as a surrogate pair") from None
