"""The registry.yaml `registry init DIR --profile mirror` writes: a commented file enabling the
plugin with the command line's upstreams, which stay editable there."""

from __future__ import annotations

import json
import re

from .settings import DEFAULT_TAG_TTL, check_prefix, check_url

TEMPLATE = """\
# A pull-through mirror, written by `registry init --profile mirror`.
# Run it with:  registry serve --config {config_path}
# While it runs, saving a valid edit of this file reloads it (an invalid one is logged and ignored).
# Every setting: schemas/config.yaml; the plugin: README.md "A mirror (pull-through cache)".

store: .                        # this file's folder
http:
  host: 127.0.0.1               # 0.0.0.0 to listen on every interface
  port: 5000
auth:
  anonymousPull: true           # with `pull: anyone` below: anonymous clients pull through the mirror

plugins: [mirror]               # combine by name: [private, mirror]
pluginConfig:
  mirror:
    # Where names are fetched from: the longest matching prefix wins; "" matches every name.
    # upstreamPrefix: what the prefix is called upstream (default: the same, names are kept).
    # Credentials (optional) are Basic, or the login given to the upstream's token service;
    # keep the password out of this file with {{$env: NAME}} or {{$file: path}}.
    upstreams:
{upstreams}
    tagTtl: {tag_ttl}                 # seconds before a tag pulled here is checked again upstream (one HEAD)
    pull: anyone                # anyone (anonymous too) | users (logged-in customers only)
    visibility: public          # of the repositories the mirror fills
    allowPush: false            # true: names no upstream serves take pushes as in any registry
    timeout: 30                 # seconds to wait for the upstream before serving the cache (or a 504)
"""

_UPSTREAM_OPTION = re.compile(r"(?:([^=\s]*)=)?(\S+)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def parse_upstream(option: str) -> tuple[str, str]:
    """`URL` (every name) or `PREFIX=URL` (`library/=https://…`; `library/*` also reads as
    `library/`); ValueError naming the option otherwise."""
    match = _UPSTREAM_OPTION.fullmatch(option)
    if not match:
        raise ValueError(f"--upstream {option!r}: write URL or PREFIX=URL")
    prefix, url = match.group(1) or "", match.group(2)
    prefix = prefix.removesuffix("*")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    try:
        return check_prefix(prefix), check_url(url)
    except ValueError as e:
        raise ValueError(f"--upstream {option}: {e}") from None


def registry_yaml(config_path: str, upstreams=(), tag_ttl: int | None = None, user: str | None = None,
                  password_env: str | None = None) -> str:
    """The text of registry.yaml (at `config_path`, named in its comment) for these upstreams;
    the login (`user`, and the password from the environment variable `password_env`) goes to
    each of them."""
    if not upstreams:
        raise ValueError("a mirror needs --upstream URL (or --upstream PREFIX=URL, repeatable)")
    if bool(user) != bool(password_env):
        raise ValueError("--upstream-user and --upstream-password-env go together")
    if password_env and not _ENV_NAME.fullmatch(password_env):
        raise ValueError(f"--upstream-password-env {password_env!r} is not an environment variable name")
    parsed = [parse_upstream(option) for option in upstreams]
    prefixes = [prefix for prefix, _ in parsed]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError("two --upstream options have the same prefix")
    lines = []
    for prefix, url in parsed:
        lines.append(f"      - prefix: {json.dumps(prefix)}")
        lines.append(f"        url: {url}")
        if user:
            lines.append(f"        username: {json.dumps(user)}")
            lines.append(f"        password: {{$env: {password_env}}}")
    return TEMPLATE.format(config_path=config_path, upstreams="\n".join(lines),
                           tag_ttl=DEFAULT_TAG_TTL if tag_ttl is None else tag_ttl)
