"""The registry.yaml `registry init DIR --profile sponsor` writes: a commented file enabling the
plugin with the command line's pull limit, quota and sign-up, which stay editable there."""

from __future__ import annotations

import json

from .settings import DEFAULT_PULL_LIMIT, parse_limit, parse_size

TEMPLATE = """\
# A sponsor's community registry, written by `registry init --profile sponsor`.
# Run it with:  registry serve --config {config_path}
# While it runs, saving a valid edit of this file reloads it (an invalid one is logged and ignored).
# Every setting: schemas/config.yaml; the plugin: README.md "A sponsor's community registry".

store: .                        # this file's folder
http:
  host: 127.0.0.1               # 0.0.0.0 to listen on every interface
  port: 5000

plugins: [sponsor]              # add more by name: [sponsor, webhooks]
pluginConfig:
  sponsor:
    # open: anyone makes an account with POST /api/v1/users (no credentials) and owns the
    # namespace of its name; closed: only admins add users.
    signup: {signup}
    signupLimit: "10/1h"        # sign-ups per client address
    # Manifest GETs (HEAD is free) per client address for the anonymous, and per user for the
    # logged-in; N/PERIOD with PERIOD in s, m, h or d.
    pullLimit: {pull_limit}
    userPullLimit: {user_pull_limit}
    # Storage per namespace (the distinct layers its images use); per-namespace quotas go in
    # `quotas: {{library: 1TiB}}`.
{quota_line}
"""


def registry_yaml(config_path: str, pull_limit: str | None = None, quota: str | None = None,
                  signup: str = "open") -> str:
    """The text of registry.yaml (at `config_path`, named in its comment) for these settings;
    ValueError naming the option for a value that is not read whole."""
    pull_limit = pull_limit or DEFAULT_PULL_LIMIT
    try:
        limit = parse_limit(pull_limit)
    except ValueError as e:
        raise ValueError(f"--pull-limit {pull_limit}: {e}") from None
    if quota is not None:
        try:
            parse_size(quota)
        except ValueError as e:
            raise ValueError(f"--quota {quota}: {e}") from None
    quota_line = f"    quota: {json.dumps(quota)}" if quota is not None else "    # quota: 10GiB"
    return TEMPLATE.format(config_path=config_path, signup=signup, pull_limit=json.dumps(pull_limit),
                           user_pull_limit=json.dumps(f"{limit.count * 2}/{pull_limit.split('/', 1)[1]}"),
                           quota_line=quota_line)
