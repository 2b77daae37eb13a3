"""The `registry` command: serve and administer a registry (client commands arrive with the client role)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys

import click

from registry_core import config as config_module
from registry_core.meta.documents import DocumentInvalid
from registry_core.command_line import load_config, plugin_manager  # noqa: F401 (used by plugins' commands)
from registry_core.plugins import PluginError, describe, make_plugin_manager
from registry_core.serving import CONFIG_ENV, PLUGINS_DIR_ENV  # noqa: F401 (CONFIG_ENV: API)


class RegistryCommands(click.Group):
    """The `registry` group: built-in commands, plus those plugins add with `register_commands`.

    Plugin commands come from the plugins that $REGISTRY_CONFIG (or ./registry.yaml) enables and
    from $REGISTRY_PLUGINS_DIR; they are loaded only when a command is not a built-in one.
    """

    _plugin_source: tuple | None = None
    _builtin_commands: dict | None = None

    def invoke(self, ctx):
        """Run the command; a store this process cannot open (another user's meta.git) is one
        line on stderr, whichever command opened it."""
        from registry_core.meta.store import StoreUnavailable
        try:
            return super().invoke(ctx)
        except StoreUnavailable as e:
            raise click.ClickException(e.message) from None

    def _load_plugin_commands(self) -> None:
        """(Re)load plugin commands when the config or plugins dir they come from changed."""
        path = os.environ.get(CONFIG_ENV) or ("registry.yaml" if os.path.exists("registry.yaml") else None)
        source = (path, os.environ.get(PLUGINS_DIR_ENV))
        if source == self._plugin_source:
            return
        if self._builtin_commands is None:
            self._builtin_commands = dict(self.commands)
        self.commands = dict(self._builtin_commands)
        self._plugin_source = source
        try:
            pm = make_plugin_manager(config_module.load(path).plugins, source[1])
        except (PluginError, DocumentInvalid) as e:
            click.echo(f"warning: plugin commands not loaded: {e}", err=True)
            return
        pm.hook.register_commands(cli=self)

    def list_commands(self, ctx):
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            self._load_plugin_commands()
            command = super().get_command(ctx, name)
        return command


@click.group(cls=RegistryCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="registry-core")
def main():
    """A container image registry: OCI Distribution API, git-versioned metadata, plugins."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="registry.yaml whose enabled plugins to list.")
@click.option("--plugins-dir", type=click.Path(file_okay=False, exists=True), help="Also load *.py from here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(config_path, plugins_dir, as_json):
    """List the loaded plugins, the hooks each implements, and where each came from."""
    config = load_config(config_path, plugins_dir=plugins_dir)
    infos = describe(plugin_manager(config))
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    for info in infos:
        click.echo(f"{info.name}  ({info.source})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")


@main.command()
@click.option("--store", type=click.Path(file_okay=False), help="Store root [default: ./registry-data].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="registry.yaml to read.")
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [default: 5000].")
@click.option("--workers", type=int, help="Worker processes [default: 2].")
@click.option("--threads", type=int, help="Threads per worker [default: 8].")
@click.option("--dev", is_flag=True, help="Use bottle's single-threaded server (development only).")
@click.option("--access-log", is_flag=True, help="Log every request to stdout.")
@click.option("--empty", is_flag=True, help="Create a missing store without the demo data.")
@click.option("--plugins-dir", type=click.Path(file_okay=False, exists=True),
              help="Load every *.py in this folder as a plugin.")
@click.option("--role", type=click.Choice(["all", "index", "registry"]),
              help="Serve both roles (all, the default), only accounts/tokens (index), or only /v2/ "
                   "trusting an Index's certificate (registry).")
def serve(store, config_path, host, port, workers, threads, dev, access_log, empty, plugins_dir, role):
    """Serve the registry. A store that does not exist yet is created from the bundled sample store."""
    from registry_core.app import Registry, prepare_views
    from registry_core.serving import ServeOptions
    from registry_core.serving import serve as run_server

    # registry.yaml with the command line's overrides; each worker makes it again from these
    # options and the text checked here (or at the last reload: serving.CHECKED_CONFIG_ENV)
    options = ServeOptions(config_path=config_path, store=store, plugins_dir=plugins_dir, role=role,
                           host=host, port=port, workers=workers, threads=threads)
    try:
        text = options.config_text()
        config = options.config(text)
        pm = plugin_manager(config)
        Registry.check_config(config, pm)
    except DocumentInvalid as e:
        raise click.ClickException(f"invalid configuration: {e}") from None
    _check_storage(config, pm)
    created = not os.path.exists(os.path.join(config.store, "meta.git"))
    if created:
        registry = Registry(config, pm)
        if not empty:
            from registry_core.seed import seed
            seed(registry)
    try:
        prepare_views(config)  # the saved views every worker starts from (app.py)
    except Exception as e:  # an optimisation: the workers would build what is missing themselves
        click.echo(f"warning: the saved views of {config.store} could not be prepared: {e}", err=True)
    banner = start_banner(config, created)
    # gunicorn: this process becomes its master (see registry_core/serving.py) and does not return
    run_server(options, config.host, config.port, config.workers, config.threads, dev=dev,
               access_log=access_log, banner=banner, watch=bool(config_path), config_text=text)


def _check_storage(config, pm) -> None:
    """Open the storage driver once before the workers start, so an unknown driver, a missing
    bucket or wrong credentials end `serve` with one line (a ClickException), not a traceback."""
    from registry_core.maintenance.commands import open_driver

    driver = open_driver(config, pm)
    getattr(driver, "close", lambda: None)()


def start_banner(config: config_module.Config, created: bool) -> str:
    """What `serve` prints once it listens, at every start: the URL and store; for a store that
    still has the demo (sample_store/), its logins that still work, its images and a first
    command that works as printed; the way to a first admin for a store without one."""
    from registry_core import seed
    from registry_core.meta.store import MetaStore

    address = f"{config.host}:{config.port}"
    lines = [f"Registry serving on http://{address}  (store: {config.store}{', new' if created else ''})"]
    meta = MetaStore(os.path.join(config.store, "meta.git"), create=False)
    description = seed.read_description()
    if config.auth.enabled and config.role != "registry":
        logins = seed.demo_logins(meta, description)
        if logins:
            lines.append("Demo logins: " + ", ".join(f"{name} / {password}" for name, password in logins))
    images = seed.demo_images(meta, description)
    if images:
        lines.append("Demo images: " + ", ".join(images))
    if config.role != "index" and seed.has_tag(meta, "library/hello", "latest"):
        lines.append(f"Try: skopeo inspect --tls-verify=false docker://{address}/library/hello:latest")
    if images:
        lines.append(f"Then: the quick start in README.md, in another terminal; {registry_command_hint()}")
    first_admin = first_admin_hint(config)
    if first_admin:
        lines.append(first_admin)
    return "\n".join(lines)


def registry_command_hint() -> str:
    """How to reach this `registry` command from a shell: it is on PATH, or its venv must be
    activated first (`make run` runs .venv/bin/registry without putting .venv/bin on PATH)."""
    bin_dir = os.path.dirname(sys.executable)
    found = shutil.which("registry")
    if found and os.path.dirname(os.path.realpath(found)) == os.path.realpath(bin_dir):
        return "the `registry` command is on your PATH"
    activate = os.path.join(bin_dir, "activate")
    if sys.prefix == sys.base_prefix or not os.path.exists(activate):
        return f"the `registry` command is {os.path.join(bin_dir, 'registry')}"
    relative = os.path.relpath(activate)
    shown = relative if not relative.startswith("..") else activate
    return f"`. {shlex.quote(shown)}` first puts the `registry` command on your PATH"


def first_admin_hint(config: config_module.Config) -> str | None:
    """For a store that serves accounts (auth on, role all or index) and has no admin yet (made
    with --empty, or every admin removed): the command that makes one. Not made here: `serve`
    prints to logs, where a password would stay readable (`registry init` prints it to its user)."""
    if not config.auth.enabled or config.role == "registry":
        return None
    from registry_core.index.accounts import Accounts
    from registry_core.meta.store import MetaStore

    meta = MetaStore(os.path.join(config.store, "meta.git"), create=False)
    if any(user.get("admin") for user in Accounts(meta).users()):
        return None
    store = shlex.quote(os.path.abspath(config.store))
    return (f"No admin account yet: create one with `registry user add admin --admin --generate-password "
            f"--store {store}` (the password is printed once; without --generate-password it is asked for)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--admin", "admin_name", default="admin", show_default=True, help="Name of the admin account.")
@click.option("--profile", type=click.Choice(["private", "mirror", "vendor", "sponsor"]),
              help="Also write DIRECTORY/registry.yaml for this kind of registry: private (every request "
                   "logged in; client networks allowed and denied); mirror (a pull-through cache); vendor "
                   "(organisations publish, anyone pulls; immutable release tags); sponsor (self sign-up, "
                   "pull limits, quotas).")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="private: a network whose clients may connect (repeatable; none: every address).")
@click.option("--deny", multiple=True, metavar="CIDR", help="private: a network refused (repeatable; deny wins).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR",
              help="private: a proxy whose X-Forwarded-For names the client (repeatable).")
@click.option("--upstream", "upstreams", multiple=True, metavar="[PREFIX=]URL",
              help="mirror: the registry every name is fetched from, or (PREFIX=URL, repeatable) the names "
                   "starting with PREFIX (library/=https://registry-1.docker.io).")
@click.option("--tag-ttl", type=click.IntRange(min=0), default=None, metavar="SECONDS",
              help="mirror: seconds before a tag is checked again upstream (default 300).")
@click.option("--upstream-user", default=None, help="mirror: the login sent to the upstreams.")
@click.option("--upstream-password-env", default=None, metavar="NAME",
              help="mirror: the environment variable that holds the upstream password when serving.")
@click.option("--vendor", "vendors", multiple=True, metavar="ORG",
              help="vendor: an organisation (created, owned by the admin) whose owners and maintainers "
                   "push to ORG/… (repeatable).")
@click.option("--immutable-tags", multiple=True, metavar="GLOB",
              help="vendor: tags never moved nor deleted (repeatable) [default: v*].")
@click.option("--require-annotation", "annotations", multiple=True, metavar="KEY",
              help="vendor: an annotation every manifest pushed by tag must carry (repeatable).")
@click.option("--pull-limit", metavar="N/PERIOD",
              help="sponsor: manifest GETs per client address for the anonymous (twice that per user "
                   "for the logged-in) [default: 100/6h].")
@click.option("--quota", metavar="SIZE", help="sponsor: storage per namespace, such as 10GiB [default: none].")
@click.option("--signup", type=click.Choice(["open", "closed"]),
              help="sponsor: whether anyone may make an account [default: open].")
def init(directory, admin_name, profile, allow, deny, trusted_proxies, upstreams, tag_ttl, upstream_user,
         upstream_password_env, vendors, immutable_tags, annotations, pull_limit, quota, signup):
    """Create an empty store in DIRECTORY with an admin account (its password is printed once);
    with --profile, also a registry.yaml for that kind of registry (`registry serve --config`)."""
    from registry_core.app import Registry
    from registry_core.context import SYSTEM
    from registry_core.index.accounts import Accounts
    from registry_core.index.passwords import generate_password

    if os.path.exists(os.path.join(directory, "meta.git")):
        raise click.ClickException(f"{directory} already holds a store")
    config_path = os.path.join(directory, "registry.yaml")
    given = {"private": (allow or deny or trusted_proxies, "--allow, --deny and --trusted-proxy"),
             "mirror": (upstreams or tag_ttl is not None or upstream_user or upstream_password_env,
                        "--upstream, --tag-ttl, --upstream-user and --upstream-password-env"),
             "vendor": (vendors or immutable_tags or annotations,
                        "--vendor, --immutable-tags and --require-annotation"),
             "sponsor": (pull_limit or quota or signup, "--pull-limit, --quota and --signup")}
    for kind, (options, names) in given.items():
        if options and profile != kind:
            raise click.ClickException(f"{names} set up a {kind} registry: add --profile {kind}")
    if profile is None:
        config = config_module.Config(store=os.path.abspath(directory))
    else:
        if os.path.exists(config_path):
            raise click.ClickException(f"{config_path} exists: move it away, or leave out --profile")
        try:
            if profile == "private":
                from registry_core.builtin_plugins.private.profile import registry_yaml
                text = registry_yaml(config_path, allow, deny, trusted_proxies)
            elif profile == "mirror":
                from registry_core.builtin_plugins.mirror.profile import registry_yaml
                text = registry_yaml(config_path, upstreams, tag_ttl, upstream_user, upstream_password_env)
            elif profile == "vendor":
                from registry_core.builtin_plugins.vendor.profile import registry_yaml
                text = registry_yaml(config_path, vendors, immutable_tags, annotations)
            else:
                from registry_core.builtin_plugins.sponsor.profile import registry_yaml
                text = registry_yaml(config_path, pull_limit, quota, signup or "open")
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        os.makedirs(directory, exist_ok=True)
        with open(config_path, "x") as f:
            f.write(text)
        config = _load_written(config_path, upstream_password_env if profile == "mirror" else None)
        config.store = os.path.abspath(directory)
    registry = Registry(config)
    password = generate_password()
    accounts = Accounts(registry.meta)
    accounts.create_user(SYSTEM, admin_name, password, admin=True)
    for vendor in vendors:
        accounts.create_org(SYSTEM, vendor, admin_name, "a vendor organisation (registry init --profile vendor)")
    click.echo(f"Created an empty store in {config.store}")
    click.echo(f"Admin login: {admin_name} / {password}  (shown once: keep it now)")
    if profile is not None:
        click.echo(f"Wrote {config_path} ({profile}): run `registry serve --config {shlex.quote(config_path)}`")
    for vendor in vendors:
        click.echo(f"Created the organisation {vendor} (owner {admin_name}): add its publishers with "
                   f"`registry org member add {vendor} USER --role maintainer --store {shlex.quote(directory)}`")
    if registry.token_issuer is not None:
        from registry_core.index.keys import CERT_FILE, keys_dir
        click.echo(f"Token signing certificate (for registries that trust this Index): "
                   f"{os.path.join(keys_dir(config), CERT_FILE)}")


def _load_written(config_path: str, password_env: str | None):
    """The registry.yaml `init` just wrote, read as `serve` will read it; a password variable that
    is only set where the registry is served is read as a placeholder here (the store is made
    without it)."""
    if password_env and password_env not in os.environ:
        click.echo(f"Set {password_env} to the upstream password before `registry serve`.")
        os.environ[password_env] = "unset"
        try:
            return config_module.load(config_path)
        finally:
            del os.environ[password_env]
    return config_module.load(config_path)


def _register_index_commands() -> None:
    from registry_core.index.commands import register
    register(main)


def _register_client_commands() -> None:
    from registry_core.client.commands import register
    register(main)


def _register_maintenance_commands() -> None:
    from registry_core.maintenance.commands import register
    register(main)


_register_index_commands()
_register_client_commands()
_register_maintenance_commands()


if __name__ == "__main__":
    main()
