"""What the command groups share (`registry user|org|repo|token`, `registry fsck|garbage-collect`,
plugins' commands): reading the configuration, loading its plugins, who acts (`--as` or the login
name), and the decorator of commands that work on a store. Its own module so that the groups and
registry_core/cli.py import it and not each other (tests/test_imports.py holds that).
"""

from __future__ import annotations

import functools
import getpass
import json

import click

from registry_core import config as config_module
from registry_core.context import InvalidIdentity, check_actor_name
from registry_core.errors import RegistryError
from registry_core.meta.documents import DocumentInvalid
from registry_core.names import canonical_name, check_name
from registry_core.plugins import PluginError, make_plugin_manager
from registry_core.serving import read_config


def load_config(config_path: str | None, store: str | None = None,
                plugins_dir: str | None = None) -> config_module.Config:
    try:
        return read_config(config_path, store, plugins_dir)
    except DocumentInvalid as e:
        raise click.ClickException(f"invalid configuration: {e}") from None


def plugin_manager(config: config_module.Config):
    try:
        return make_plugin_manager(config.plugins, config.plugins_dir, config.auth.enabled)
    except PluginError as e:
        raise click.ClickException(str(e)) from None



def acting_user() -> str:
    """The operating-system login name, which authors the commits when --as is not given."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a container without USER)
        return "registry"
    try:
        return check_actor_name(name)
    except InvalidIdentity:
        raise click.UsageError(f"your login name {name!r} cannot author commits (an account name is lowercase "
                               "letters and digits with '.', '_' or '-' between them): give --as NAME") from None


def acting_option(ctx, param, value):
    if value is None:
        return None
    try:
        return check_actor_name(value)
    except InvalidIdentity as e:
        raise click.BadParameter(str(e)) from None


def store_command(open_store):
    """A decorator for commands that work on a store: --store/--config/--as, and the command gets
    `store = open_store(config, acting_user_name)`. Errors become one line on stderr, exit 1."""
    def decorate(function):
        @click.option("--store", "store_dir", type=click.Path(file_okay=False),
                      help="Store root [default: the config's store, else ./registry-data].")
        @click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
                      help="registry.yaml naming the store (and its storage driver).")
        @click.option("--as", "acting", metavar="NAME", callback=acting_option,
                      help="Author the commits as the account name NAME [default: your login name].")
        @functools.wraps(function)
        def wrapper(store_dir, config_path, acting, **kwargs):
            try:
                store = open_store(load_config(config_path, store_dir), acting or acting_user())
                return function(store=store, **kwargs)
            except RegistryError as e:
                raise click.ClickException(e.message) from None
            except DocumentInvalid as e:
                raise click.ClickException(f"invalid document: {e}") from None
        return wrapper
    return decorate


def emit(as_json: bool, document, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        for line in lines:
            click.echo(line)


def repository_name(name: str) -> str:
    try:
        return check_name(canonical_name(name))
    except RegistryError as e:
        raise click.BadParameter(e.message, param_hint="NAME") from None
