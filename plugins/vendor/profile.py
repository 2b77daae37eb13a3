"""The registry.yaml `registry init DIR --profile vendor` writes: a commented file enabling the
plugin with the command line's organisations, tag patterns and annotations, which stay editable
there. `registry init` also creates each organisation, owned by the admin it creates."""

from __future__ import annotations

import json

from .settings import DEFAULT_IMMUTABLE_TAGS, check_annotation, check_glob, check_org

TEMPLATE = """\
# A vendor's registry, written by `registry init --profile vendor`.
# Run it with:  registry serve --config {config_path}
# While it runs, saving a valid edit of this file reloads it (an invalid one is logged and ignored).
# Every setting: schemas/config.yaml; the plugin: README.md "A vendor's registry".

store: .                        # this file's folder
http:
  host: 127.0.0.1               # 0.0.0.0 to listen on every interface
  port: 5000

plugins: [vendor]               # add more by name: [vendor, webhooks]
pluginConfig:
  vendor:
    # Organisations whose namespaces (acme/…) anyone may pull from and only the organisation's
    # owners and maintainers (and its robots) may push to. `registry init` made each one, owned
    # by its admin; add a maintainer with `registry org member add ORG USER --role maintainer
    # --store DIR`, or PUT /api/v1/orgs/ORG/members/USER {{"role": "maintainer"}}.
    vendors: {vendors}
    # Tags matching one of these globs are never moved to another manifest nor deleted.
    immutableTags: {immutable_tags}
    # Annotations every manifest pushed by tag must carry (e.g. org.opencontainers.image.source).
    requireAnnotations: {annotations}
    # true: anonymous pulls by tag wait until the image has a signature (cosign, notation).
    signedPullsOnly: false
"""


def checked(option: str, values, check) -> list[str]:
    """The command line's values, each read whole; ValueError naming the option otherwise."""
    result = []
    for value in values:
        try:
            result.append(check(value))
        except ValueError as e:
            raise ValueError(f"{option} {value}: {e}") from None
    return result


def registry_yaml(config_path: str, vendors=(), immutable_tags=(), annotations=()) -> str:
    """The text of registry.yaml (at `config_path`, named in its comment) for these settings;
    `immutable_tags` empty: the default (`v*`)."""
    return TEMPLATE.format(config_path=config_path,
                           vendors=json.dumps(checked("--vendor", vendors, check_org)),
                           immutable_tags=json.dumps(checked("--immutable-tags", immutable_tags, check_glob)
                                                     or list(DEFAULT_IMMUTABLE_TAGS)),
                           annotations=json.dumps(checked("--require-annotation", annotations,
                                                          check_annotation)))
