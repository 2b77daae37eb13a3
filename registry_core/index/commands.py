"""`registry user | org | repo | token`: administering accounts and access directly on a store.

These commands need no running server: whoever can write the store's directory administers it.
Each change is one commit in meta.git authored by the acting operating-system user
(`getpass.getuser()`), or by `--as NAME`, so `git log` shows who did it from the command line.
Passwords come from a prompt or `--password-stdin`, never from the command line (where `ps` and
shell history would keep them); generated passwords and token secrets are printed once.
"""

from __future__ import annotations

import os
import sys

import click

from registry_core.command_line import emit, repository_name, store_command
from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.index import collaborators as repository_access
from registry_core.index.accounts import ORG_ROLES, Accounts
from registry_core.index.api import (TOKEN_ID_RE, check_password, token_days, token_repositories, token_view,
                                     user_view)
from registry_core.index.collaborators import ROLES
from registry_core.index.passwords import generate_password
from registry_core.meta.store import MetaStore
from registry_core.meta.paths import META_DIR



class Store:
    """The metadata of one store, and who is acting on it."""

    def __init__(self, root: str, actor: str, durable: bool = False, writer: str = "packs"):
        path = os.path.join(root, META_DIR)
        if not os.path.isdir(path):
            raise click.ClickException(f"no store in {root}: create one with `registry init {root}`, "
                                       "or give --store or --config")
        self.root = root
        self.meta = MetaStore(path, create=False, durable=durable, writer=writer)
        self.accounts = Accounts(self.meta)
        self.context = Context(actor=actor, user_agent="registry-cli")


on_store = store_command(lambda config, acting: Store(config.store, acting, config.durable, config.meta_writer))


def read_password(password_stdin: bool, prompt: str = "Password") -> str:
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    try:
        return check_password(password)
    except RegistryError as e:
        raise click.ClickException(e.message) from None


password_stdin_option = click.option("--password-stdin", is_flag=True,
                                     help="Read the password from standard input (else it is prompted for).")


# --- registry user ------------------------------------------------------------------------------

@click.group()
def user():
    """Add, list, enable and disable user accounts, and set their passwords."""


@user.command("add")
@click.argument("name")
@click.option("--email", help="The user's email address.")
@click.option("--admin", is_flag=True, help="Make the user a registry admin.")
@password_stdin_option
@click.option("--generate-password", "generate", is_flag=True, help="Generate a password and print it once.")
@on_store
def user_add(store: Store, name, email, admin, password_stdin, generate):
    """Add the user NAME (with a password from a prompt, standard input, or generated)."""
    if password_stdin and generate:
        raise click.UsageError("--password-stdin and --generate-password exclude each other")
    password = generate_password() if generate else read_password(password_stdin)
    store.accounts.create_user(store.context, name, password, email, admin)
    click.echo(f"Added user {name}" + (" (registry admin)" if admin else ""))
    if generate:
        click.echo(f"Password: {password}  (shown once: keep it now)")


@user.command("passwd")
@click.argument("name")
@password_stdin_option
@on_store
def user_passwd(store: Store, name, password_stdin):
    """Set the password of the user NAME."""
    account = store.accounts.user(name)
    if account is not None and account.get("robot"):
        raise click.ClickException(f"{name} is a robot: robots have no password, only tokens")
    password = read_password(password_stdin, "New password")
    store.accounts.update_user(store.context, name, f"Change the password of {name}", password=password)
    click.echo(f"Changed the password of {name}")


@user.command("disable")
@click.argument("name")
@on_store
def user_disable(store: Store, name):
    """Disable the user NAME: their password and tokens stop working at once."""
    store.accounts.update_user(store.context, name, f"Disable {name}", disabled=True)
    click.echo(f"Disabled {name}")


@user.command("enable")
@click.argument("name")
@on_store
def user_enable(store: Store, name):
    """Enable the user NAME again."""
    store.accounts.update_user(store.context, name, f"Enable {name}", disabled=False)
    click.echo(f"Enabled {name}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@on_store
def user_list(store: Store, as_json):
    """List the user accounts (robots included)."""
    users = sorted((user_view(document) for document in store.accounts.users()), key=lambda u: u["name"])
    lines = []
    for account in users:
        notes = [note for note, on in (("admin", account["admin"]), ("disabled", account["disabled"]),
                                       (f"robot of {account.get('owner')}", account["robot"])) if on]
        lines.append(f"{account['name']}" + (f"  <{account['email']}>" if account.get("email") else "")
                     + (f"  ({', '.join(notes)})" if notes else ""))
    emit(as_json, users, lines)


# --- registry org -------------------------------------------------------------------------------

@click.group()
def org():
    """Add organisations and manage their members."""


@org.command("add")
@click.argument("name")
@click.option("--owner", required=True, help="The user who becomes the organisation's first owner.")
@click.option("--description", help="What the organisation is.")
@on_store
def org_add(store: Store, name, owner, description):
    """Add the organisation NAME (it owns the namespace NAME/)."""
    store.accounts.create_org(store.context, name, owner, description)
    click.echo(f"Added organisation {name} (owner {owner})")


@org.group("member")
def org_member():
    """Add, change or remove members of an organisation."""


@org_member.command("add")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@click.option("--role", type=click.Choice(ORG_ROLES), default="member", show_default=True,
              help="owner: admin of every repository; maintainer: push; member: pull.")
@on_store
def org_member_add(store: Store, org_name, user_name, role):
    """Make USER a member of ORG with a role (or change their role)."""
    store.accounts.set_member(store.context, org_name, user_name, role)
    click.echo(f"{user_name} is now {role} of {org_name}")


@org_member.command("remove")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@on_store
def org_member_remove(store: Store, org_name, user_name):
    """Remove USER from ORG (an organisation keeps at least one owner)."""
    store.accounts.set_member(store.context, org_name, user_name, None)
    click.echo(f"Removed {user_name} from {org_name}")


# --- registry repo ------------------------------------------------------------------------------

@click.group()
def repo():
    """Set a repository's visibility and collaborators."""


@repo.command("visibility")
@click.argument("name")
@click.argument("visibility", type=click.Choice(["public", "private"]))
@on_store
def repo_visibility(store: Store, name, visibility):
    """Make the repository NAME public or private."""
    name = repository_name(name)
    repository_access.set_visibility(store.meta, store.context, name, visibility)
    click.echo(f"{name} is now {visibility}")


@repo.group("collaborator")
def repo_collaborator():
    """Give users read, write or admin access to one repository."""


@repo_collaborator.command("add")
@click.argument("name")
@click.argument("user_name", metavar="USER")
@click.option("--role", type=click.Choice(ROLES), default="read", show_default=True,
              help="read: pull; write: pull and push; admin: also delete and manage access.")
@on_store
def repo_collaborator_add(store: Store, name, user_name, role):
    """Give USER a role on the repository NAME (or change it)."""
    name = repository_name(name)
    repository_access.set_collaborator(store.meta, store.context, name, user_name, role)
    click.echo(f"{user_name} now has {role} access to {name}")


@repo_collaborator.command("remove")
@click.argument("name")
@click.argument("user_name", metavar="USER")
@on_store
def repo_collaborator_remove(store: Store, name, user_name):
    """Take USER's collaborator role on the repository NAME away."""
    name = repository_name(name)
    repository_access.set_collaborator(store.meta, store.context, name, user_name, None)
    click.echo(f"Removed {user_name} from the collaborators of {name}")


# --- registry token -----------------------------------------------------------------------------

@click.group()
def token():
    """Create, list and revoke access tokens (the password of `docker login` for CI and robots)."""


@token.command("create")
@click.argument("user_name", metavar="USER")
@click.option("--description", help="What the token is for.")
@click.option("--push", is_flag=True, help="Allow pushing too [default: pull only].")
@click.option("--repository", "repositories", multiple=True, metavar="NAME",
              help="Limit the token to this repository (repeat for more) [default: all USER may use].")
@click.option("--expires-in-days", type=int, help="Expire the token after this many days [default: never].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@on_store
def token_create(store: Store, user_name, description, push, repositories, expires_in_days, as_json):
    """Create an access token for USER (a user or a robot); its secret is printed once."""
    actions = ["pull", "push"] if push else ["pull"]
    secret, document = store.accounts.create_token(
        store.context, user_name, "access", description, actions,
        token_repositories(list(repositories) or None), token_days(expires_in_days))
    view = token_view(user_name, document)
    emit(as_json, {**view, "secret": secret},
         [f"Created token {document['id']} for {user_name} ({', '.join(actions)}"
          + (f" on {', '.join(view['repositories'])}" if view.get("repositories") else "")
          + (f", expires {view['expiresAt']}" if view.get("expiresAt") else "") + ")",
          f"Secret: {secret}  (shown once: use it as the password of `docker login -u {user_name}`)"])


@token.command("list")
@click.argument("user_name", metavar="USER")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@on_store
def token_list(store: Store, user_name, as_json):
    """List the tokens of USER (never their secrets)."""
    if store.accounts.user(user_name) is None:
        raise click.ClickException(f"no user {user_name}")
    views = sorted((token_view(user_name, document) for document in store.accounts.tokens(user_name)),
                   key=lambda t: (t.get("createdAt", ""), t["id"]))
    lines = [f"{t['id']}  {t['purpose']}  {','.join(t.get('actions') or ['*'])}"
             f"  {','.join(t.get('repositories') or ['*'])}"
             f"  {'expired' if t['expired'] else 'expires ' + t['expiresAt'] if t.get('expiresAt') else 'no expiry'}"
             + (f"  {t['description']}" if t.get("description") else "") for t in views]
    emit(as_json, views, lines or [f"{user_name} has no tokens"])


@token.command("revoke")
@click.argument("user_name", metavar="USER")
@click.argument("token_id", metavar="ID")
@on_store
def token_revoke(store: Store, user_name, token_id):
    """Revoke the token ID of USER: it stops working at once."""
    if not TOKEN_ID_RE.fullmatch(token_id):
        raise click.BadParameter("a token id is 12 hexadecimal digits (see `registry token list`)",
                                 param_hint="ID")
    store.accounts.revoke_token(store.context, user_name, token_id)
    click.echo(f"Revoked token {token_id} of {user_name}")


COMMANDS = (user, org, repo, token)


def register(cli) -> None:
    """Add the account commands to the `registry` click group."""
    for command in COMMANDS:
        cli.add_command(command)
