"""`registry node-key`: print the public key this node signs its reports with (made on first
use), as the one line the Index's operator lists under `pluginConfig.reporting.nodes`.

The command is there when the configuration (`$REGISTRY_CONFIG`, or ./registry.yaml) enables the
plugin: `plugins: [reporting]`.
"""

from __future__ import annotations

import os

import click

from registry_core.command_line import store_command

from . import signing


def register(cli) -> None:
    @cli.command("node-key")
    @store_command(lambda config, acting: config)
    def node_key(store):
        """Print this node's report key (public half), for the Index's `nodes` list."""
        click.echo(signing.public_line(signing.load_or_create(os.path.join(store.store, "keys"))))
