"""The registry.yaml `registry init DIR --profile private` writes: a commented file enabling the
plugin with the command line's networks, which stay editable there."""

from __future__ import annotations

import json

from .settings import parse_network

TEMPLATE = """\
# A private registry behind a firewall, written by `registry init --profile private`.
# Run it with:  registry serve --config {config_path}
# While it runs, saving a valid edit of this file reloads it (an invalid one is logged and ignored).
# Every setting: schemas/config.yaml; the plugin: README.md "A private registry (firewall)".

store: .                        # this file's folder
http:
  host: 127.0.0.1               # 0.0.0.0 to listen on every interface (normally only the TLS proxy's)
  port: 5000
auth:
  anonymousPull: false          # no anonymous tokens for public repositories either

plugins: [private]              # add more by name: [private, webhooks]
pluginConfig:
  private:
    # Client networks for every class of request (pull, push, delete, token, api, ui).
    # Any deny wins; an empty allow list lets in every address that is not denied.
    allow: {allow}
    deny: {deny}
    # Finer lists per class, checked as well as the two above, e.g.:
    # actions:
    #   push: {{allow: [10.1.0.0/16]}}
    #   delete: {{allow: [10.1.2.0/24]}}
    #   ui: {{deny: [0.0.0.0/0, "::/0"]}}
    # Proxies whose X-Forwarded-For names the client: the right-most address in it that is not
    # one of these is the client's. From any other peer the header is ignored.
    trustedProxies: {trusted_proxies}
    # Require the TLS proxy's word that the client's certificate was verified (believed only
    # from trustedProxies; the proxy must overwrite the header a client sends):
    # clientCertificate: {{required: true, header: X-SSL-Client-Verify, value: SUCCESS}}
"""


def networks(option: str, values) -> list[str]:
    """The command line's networks, each read whole; ValueError naming the option otherwise."""
    checked = []
    for value in values:
        try:
            checked.append(str(parse_network(value)))
        except ValueError as e:
            raise ValueError(f"{option} {value}: {e}") from None
    return checked


def registry_yaml(config_path: str, allow=(), deny=(), trusted_proxies=()) -> str:
    """The text of registry.yaml (at `config_path`, named in its comment) for these networks."""
    return TEMPLATE.format(config_path=config_path,
                           allow=json.dumps(networks("--allow", allow)),
                           deny=json.dumps(networks("--deny", deny)),
                           trusted_proxies=json.dumps(networks("--trusted-proxy", trusted_proxies)))
