"""Properties of every parser a request's text reaches (hypothesis): each accepts exactly its
grammar over the whole string (no trailing newline slips through `$`), and on any other input
raises its own error, never another exception (which the server would answer with a 500)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry_core.context import Actor, Context, InvalidIdentity, is_trailer_value
from registry_core.errors import RegistryError
from registry_core.index.tokens import InvalidScope, parse_scope
from registry_core.names import (check_digest, check_name, check_tag, digest_of, is_account_name, is_tag,
                                 is_valid_name)
from registry_core.registry.routes import parse_range
from registry_core.registry.uploads import parse_content_range

settings.register_profile("registry", max_examples=300, deadline=None)
settings.load_profile("registry")

# Text that is mostly made of the grammars' own characters, so that near-misses are common.
NAME_ALPHABET = st.sampled_from(list("abcz09._-/:AZ\n\r\t \x00é²@<>"))
near_names = st.text(NAME_ALPHABET, max_size=40)
any_text = st.text(max_size=60)
line_breaks = st.sampled_from(["\n", "\r", "\r\n", "\x00", " "])

COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


@given(st.one_of(near_names, any_text))
@example("library/alpine\n")
def test_a_repository_name_is_accepted_only_when_each_component_is_in_the_grammar(text):
    accepted = is_valid_name(text)
    expected = 0 < len(text) <= 255 and all(COMPONENT.fullmatch(part) for part in text.split("/"))
    assert accepted == expected
    if accepted:
        assert check_name(text) == text
    else:
        with pytest.raises(RegistryError) as refused:
            check_name(text)
        assert refused.value.code == "NAME_INVALID" and refused.value.status == 400


@given(st.from_regex(r"[a-z0-9]+(/[a-z0-9]+){0,3}", fullmatch=True), line_breaks)
def test_no_valid_name_tag_or_account_name_survives_a_trailing_line_break(name, ending):
    assert not is_valid_name(name + ending)
    assert not is_tag(name.replace("/", "-") + ending)
    assert not is_account_name(name.replace("/", "-") + ending)


@given(st.one_of(st.text(st.sampled_from(list("aZ09_.-\n ²é")), max_size=140), any_text))
@example("latest\n")
def test_a_tag_is_accepted_only_as_a_whole_string_of_its_alphabet(text):
    accepted = is_tag(text)
    assert accepted == (1 <= len(text) <= 128 and text[0] not in ".-"
                        and all(c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-" for c in text))
    if not accepted:
        with pytest.raises(RegistryError) as refused:
            check_tag(text)
        assert refused.value.code == "TAG_INVALID"


@given(st.binary(max_size=64), st.sampled_from(["sha256", "sha512"]))
def test_the_digest_of_any_content_is_a_valid_digest(data, algorithm):
    digest = digest_of(data, algorithm)
    assert check_digest(digest) == digest


@given(st.one_of(any_text, st.builds(lambda d, s: d + s, st.just("sha256:" + "a" * 64), line_breaks),
                 st.from_regex(r"[a-z0-9+._-]{1,10}:[a-zA-Z0-9=_-]{0,130}", fullmatch=True)))
def test_a_digest_is_accepted_only_as_a_registered_algorithm_and_its_exact_encoding(text):
    algorithm, _, encoded = text.partition(":")
    valid = (algorithm == "sha256" and re.fullmatch(r"[a-f0-9]{64}", encoded) is not None) or \
            (algorithm == "sha512" and re.fullmatch(r"[a-f0-9]{128}", encoded) is not None)
    if valid:
        assert check_digest(text) == text
    else:
        with pytest.raises(RegistryError) as refused:
            check_digest(text)
        assert refused.value.code == "DIGEST_INVALID"


@given(st.one_of(near_names, any_text))
def test_an_actor_is_made_only_for_an_account_name(text):
    if is_account_name(text):
        assert Actor(name=text).name == Context(actor=text).actor == text
        assert "\n" not in text and "<" not in text and text == text.strip()
    else:
        with pytest.raises(InvalidIdentity):
            Actor(name=text)
        with pytest.raises(InvalidIdentity):
            Context(actor=text)


@given(any_text)
def test_a_trailer_value_is_one_line_of_printable_ascii(text):
    if is_trailer_value(text):
        assert text.isascii() and text.isprintable() and not any(c.isspace() for c in text)


@given(st.one_of(any_text, st.from_regex(r"[a-z()]{1,12}:[a-z0-9/:._-]{0,30}:[a-z*,]{0,20}", fullmatch=True)))
@example("repository:alice/app:pull\n")
def test_a_scope_parses_or_raises_invalid_scope(text):
    try:
        scope = parse_scope(text)
    except InvalidScope:
        return
    assert "\n" not in text and not any(c.isspace() for c in text)
    assert scope.name in text


@given(st.one_of(any_text, st.from_regex(r"bytes=[0-9²]{0,30}-[0-9]{0,30}", fullmatch=True),
                 st.builds(lambda n: f"bytes={n}-", st.integers(min_value=0, max_value=10**30))),
       st.integers(min_value=0, max_value=2**40))
@example("bytes=" + "9" * 5000 + "-", 10)
@example("bytes=²-", 10)
def test_a_range_header_is_a_satisfiable_range_or_416(header, size):
    try:
        start, end = parse_range(header, size)
    except RegistryError as refused:
        assert refused.status == 416 and refused.code == "RANGE_INVALID"
        return
    assert 0 <= start <= end < size


@given(st.one_of(any_text, st.from_regex(r"(bytes[ =])?[0-9²]{0,30}-[0-9]{0,30}(/[0-9*]{0,5})?", fullmatch=True)))
@example("0-" + "9" * 5000)
def test_an_upload_content_range_parses_or_is_range_invalid(value):
    try:
        start, end = parse_content_range(value)
    except RegistryError as refused:
        assert refused.code == "RANGE_INVALID"
        return
    assert 0 <= start <= end < 2**64
