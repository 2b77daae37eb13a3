"""The accounts API (/api/v1/): users, robots, organisations, access tokens, repository access.

Routes parse the request, decide who may do it, and shape the answer; every change goes through
`Accounts` or the collaborators functions with the request's Context, so it is one commit in
meta.git authored by the acting user. Who may do what:

- registry admins: everything (listing and adding users, any account, any organisation);
- anyone without credentials, where a plugin allows the action `signup` (the sponsor plugin):
  an account of their own (`POST /api/v1/users`);
- a user: read their own account, change their own password and email, manage their own tokens,
  add robots and organisations (becoming the organisation's owner);
- an organisation's owners: its members, and the robots (and robots' tokens) it owns;
- a repository's admins (action "admin" through the access policy and its plugins): its
  visibility, description and collaborators.
Managing accounts needs a user's own login (a password): access tokens, robot tokens and the
registry's bearer tokens are for pushing and pulling, so they cannot mint more credentials.
Anonymous callers get 401 with the registry's challenge, others without permission 403 DENIED.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import bottle

from registry_core.context import Actor, Context
from registry_core.errors import RegistryError, bad_request
from registry_core.index import collaborators as repository_access
from registry_core.index.accounts import ORG_ROLES, Accounts, _expired, check_account_name, not_found
from registry_core.index.passwords import generate_password
from registry_core.names import canonical_name, check_name
from registry_core.registry.repositories import paginate
from registry_core.registry.routes import next_link, page_query
from registry_core.web import json_body, json_response, request_context

PREFIX = "/api/v1"
MIN_PASSWORD_LENGTH = 8
TOKEN_ACTIONS = (("pull",), ("pull", "push"))
MAX_TOKEN_DAYS = 3650
TOKEN_ID_RE = re.compile(r"[a-f0-9]{12}")
USER_FIELDS = ("name", "email", "admin", "disabled", "robot", "owner", "createdAt")
TOKEN_FIELDS = ("id", "purpose", "description", "actions", "repositories", "clientId", "expiresAt",
                "createdBy", "createdAt")


# --- checks shared with the command line (registry_core/index/commands.py) ----------------------

def check_password(password) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise bad_request(f"a password must be a string of at least {MIN_PASSWORD_LENGTH} characters")
    return password


def token_actions(actions) -> list[str]:
    """[pull] or [pull, push] (in any order)."""
    if isinstance(actions, list) and all(isinstance(action, str) for action in actions):
        for allowed in TOKEN_ACTIONS:
            if set(actions) == set(allowed):
                return list(allowed)
    raise bad_request(f"actions must be [\"pull\"] or [\"pull\", \"push\"], not {json.dumps(actions)}")


def token_repositories(repositories) -> list[str] | None:
    if repositories is None:
        return None
    if not isinstance(repositories, list) or not repositories or \
            not all(isinstance(r, str) for r in repositories):
        raise bad_request("repositories must be a non-empty list of repository names (or left out for all)")
    names = []
    for repository in repositories:
        name = check_name(canonical_name(repository))
        if name not in names:
            names.append(name)
    return names


def token_days(days) -> int | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_TOKEN_DAYS:
        raise bad_request(f"expiresInDays must be a whole number from 1 to {MAX_TOKEN_DAYS}")
    return days


def user_view(document: dict) -> dict:
    """What the API shows of an account: never its password hash."""
    view = {key: document[key] for key in USER_FIELDS if key in document}
    view.update(admin=bool(document.get("admin")), disabled=bool(document.get("disabled")),
                robot=bool(document.get("robot")))
    return view


def token_view(owner: str, document: dict) -> dict:
    """What the API shows of a token: never its secret or the secret's hash."""
    view = {key: document[key] for key in TOKEN_FIELDS if key in document}
    view.update(owner=owner, expired=_expired(document))
    return view


def org_view(document: dict) -> dict:
    return {key: document[key] for key in ("name", "description", "members", "createdBy", "createdAt")
            if key in document}


# --- who may manage what (no HTTP here) ---------------------------------------------------------

def manages_namespace(accounts: Accounts, actor: Actor, admin: bool, owner: str) -> bool:
    """May `actor` (a registry admin if `admin`) manage what belongs to the user or organisation
    `owner`: its robots and their tokens?"""
    if admin or owner == actor.name:
        return True
    org = accounts.org(owner)
    return org is not None and org["members"].get(actor.name) == "owner"


def manages_account(accounts: Accounts, actor: Actor, admin: bool, account: dict) -> bool:
    """May `actor` manage the tokens of `account`: their own, or one of their robots?"""
    if admin:
        return True
    if account.get("robot"):
        return manages_namespace(accounts, actor, admin, account["owner"])
    return account["name"] == actor.name


# --- routes -------------------------------------------------------------------------------------

def register_api_routes(app: bottle.Bottle, registry) -> None:
    api = AccountsApi(registry)
    route = app.route
    route(f"{PREFIX}/users", "GET", api.list_users, name="api_users")
    route(f"{PREFIX}/users", "POST", api.create_user)
    route(f"{PREFIX}/users/<user>", "GET", api.get_user, name="api_user")
    route(f"{PREFIX}/users/<user>", "PATCH", api.update_user)
    route(f"{PREFIX}/users/<user>/tokens", "GET", api.list_tokens, name="api_tokens")
    route(f"{PREFIX}/users/<user>/tokens", "POST", api.create_token)
    route(f"{PREFIX}/users/<user>/tokens/<token_id>", "DELETE", api.revoke_token, name="api_token")
    route(f"{PREFIX}/robots", "POST", api.create_robot, name="api_robots")
    route(f"{PREFIX}/orgs", "POST", api.create_org, name="api_orgs")
    route(f"{PREFIX}/orgs/<org>", "GET", api.get_org, name="api_org")
    route(f"{PREFIX}/orgs/<org>/members/<user>", "PUT", api.set_member, name="api_org_member")
    route(f"{PREFIX}/orgs/<org>/members/<user>", "DELETE", api.remove_member)
    # `name` is the repository (RegistryErrors makes it canonical); the more specific routes first.
    route(f"{PREFIX}/repositories/<name:path>/collaborators", "GET", api.list_collaborators,
          name="api_collaborators")
    route(f"{PREFIX}/repositories/<name:path>/collaborators/<user>", "GET", api.get_collaborator,
          name="api_collaborator")
    route(f"{PREFIX}/repositories/<name:path>/collaborators/<user>", "PUT", api.set_collaborator)
    route(f"{PREFIX}/repositories/<name:path>/collaborators/<user>", "DELETE", api.remove_collaborator)
    route(f"{PREFIX}/repositories/<name:path>", "PATCH", api.update_repository, name="api_repository")


class AccountsApi:
    def __init__(self, registry):
        self.registry = registry
        self.accounts: Accounts = registry.accounts
        self.meta = registry.meta

    # --- who is asking ------------------------------------------------------------------------

    def _login(self, what: str) -> Context:
        return own_login(self.registry, what, "cannot manage accounts")

    def _is_admin(self, context: Context) -> bool:
        return self.registry.access.may(context.identity, None, "admin")

    def _admin(self, what: str) -> Context:
        context = self._login(what)
        if not self._is_admin(context):
            raise RegistryError("DENIED", f"only registry admins may {what}")
        return context

    def _account(self, context: Context, user: str, what: str) -> dict:
        """The account `user`, which the actor may manage; 404 (to admins) or 403."""
        document = self.accounts.user(user)
        admin = self._is_admin(context)
        if document is not None and manages_account(self.accounts, context.identity, admin, document):
            return document
        if document is None and admin:
            raise not_found(f"no user {user}")
        raise RegistryError("DENIED", f"{context.actor} may not {what} {user}")

    # --- request bodies -----------------------------------------------------------------------

    _body = staticmethod(json_body)

    @staticmethod
    def _field(document: dict, key: str, kind: type, limit: int | None = None):
        value = document.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad_request(f"{key} must be a {'boolean' if kind is bool else 'string'}")
        if limit is not None and len(value) > limit:
            raise bad_request(f"{key} is longer than {limit} characters")
        return value

    # --- users --------------------------------------------------------------------------------

    def list_users(self):
        self._admin("list users")
        n, last = page_query()
        by_name = {document["name"]: document for document in self.accounts.users()}
        names, more = paginate(sorted(by_name), n, last)
        headers = {"Link": next_link(f"{PREFIX}/users", n, names[-1])} if more and names else {}
        return json_response({"users": [user_view(by_name[name]) for name in names]}, headers=headers)

    def create_user(self):
        if not bottle.request.environ.get("HTTP_AUTHORIZATION") and self.registry.access.may(None, None, "signup"):
            return self.sign_up()
        context = self._admin("add users")
        body = self._body(("name", "password", "email", "admin"), required=("name",))
        name = check_account_name(self._field(body, "name", str))
        password = body.get("password")
        generated = None
        if password is None:
            password = generated = generate_password()
        document = self.accounts.create_user(context, name, check_password(password),
                                             self._field(body, "email", str, 256),
                                             bool(self._field(body, "admin", bool)))
        answer = user_view(document)
        if generated:
            answer["password"] = generated  # shown this once; only its hash is kept
        return json_response(answer, 201, headers={"Location": f"{PREFIX}/users/{name}"})

    def sign_up(self):
        """An account made by the person who will use it, without credentials: allowed when a
        plugin answers True to the action `signup` (the sponsor plugin). They choose their password
        and can make no admin; the commit is authored by the new user, who owns the namespace of
        their name like every user."""
        body = self._body(("name", "password", "email"), required=("name", "password"))
        name = check_account_name(self._field(body, "name", str))
        password = check_password(body["password"])
        context = request_context(bottle.request, Actor(name=name))
        document = self.accounts.create_user(context, name, password, self._field(body, "email", str, 256))
        return json_response(user_view(document), 201, headers={"Location": f"{PREFIX}/users/{name}"})

    def get_user(self, user: str):
        context = self._login("reading an account")
        return json_response(user_view(self._account(context, user, "read the account")))

    def update_user(self, user: str):
        context = self._login("changing an account")
        body = self._body(("disabled", "admin", "email", "password"))
        disabled = self._field(body, "disabled", bool)
        admin = self._field(body, "admin", bool)
        email = self._field(body, "email", str, 256)
        password = body.get("password")
        if disabled is None and admin is None and email is None and password is None:
            raise bad_request("nothing to change: give disabled, admin, email or password")
        document = self.accounts.user(user)
        is_admin = self._is_admin(context)
        if document is None:
            if is_admin:
                raise not_found(f"no user {user}")
            raise RegistryError("DENIED", f"{context.actor} may not change the account {user}")
        if not is_admin:
            if user == context.actor:
                allowed = {"password", "email"}
            elif document.get("robot") and manages_account(self.accounts, context.identity, False, document):
                allowed = {"disabled"}
            else:
                allowed = set()
            refused = sorted(set(body) - allowed)
            if refused:
                raise RegistryError("DENIED", f"{context.actor} may not change {', '.join(refused)} of {user}"
                                    + (": only registry admins may" if allowed else ""))
        elif user == context.actor and (disabled or admin is False):
            raise RegistryError("DENIED", "an admin may not disable or demote themselves: ask another admin "
                                "(so that the registry keeps an admin)", status=409)
        if password is not None:
            if document.get("robot"):
                raise bad_request(f"{user} is a robot: robots have no password, only access tokens")
            check_password(password)
        changes = []
        if password is not None:
            changes.append(f"Change the password of {user}")
        if email is not None:
            changes.append(f"Set the email of {user}")
        if disabled is not None:
            changes.append(f"{'Disable' if disabled else 'Enable'} {user}")
        if admin is not None:
            changes.append(f"Make {user} {'an admin' if admin else 'a non-admin'}")
        document = self.accounts.update_user(context, user, "; ".join(changes), password=password,
                                             disabled=disabled, admin=admin, email=email)
        return json_response(user_view(document))

    # --- tokens -------------------------------------------------------------------------------

    def create_token(self, user: str):
        context = self._login("creating tokens")
        self._account(context, user, "create tokens for")
        body = self._body(("description", "actions", "repositories", "expiresInDays"), required=("actions",))
        description = self._field(body, "description", str, 256)
        actions = token_actions(body["actions"])
        repositories = token_repositories(body.get("repositories"))
        days = token_days(body.get("expiresInDays"))
        secret, document = self.accounts.create_token(context, user, "access", description, actions,
                                                      repositories, days)
        answer = token_view(user, document)
        answer["secret"] = secret  # shown this once; only its hash is kept
        return json_response(answer, 201, headers={"Location": f"{PREFIX}/users/{user}/tokens/{document['id']}"})

    def list_tokens(self, user: str):
        context = self._login("listing tokens")
        self._account(context, user, "list the tokens of")
        tokens = sorted(self.accounts.tokens(user), key=lambda t: (t.get("createdAt", ""), t["id"]))
        return json_response({"tokens": [token_view(user, token) for token in tokens]})

    def revoke_token(self, user: str, token_id: str):
        context = self._login("revoking tokens")
        self._account(context, user, "revoke the tokens of")
        if not TOKEN_ID_RE.fullmatch(token_id):
            raise not_found(f"{user} has no token {token_id}")
        self.accounts.revoke_token(context, user, token_id)
        return bottle.HTTPResponse(status=204)

    # --- robots and organisations -------------------------------------------------------------

    def create_robot(self):
        context = self._login("adding robots")
        body = self._body(("owner", "name"), required=("owner", "name"))
        owner, name = self._field(body, "owner", str), self._field(body, "name", str)
        if not manages_namespace(self.accounts, context.identity, self._is_admin(context), owner):
            raise RegistryError("DENIED", f"{context.actor} may not add robots for {owner}: only for "
                                "themselves or an organisation they own")
        owner_account = self.accounts.user(owner)
        if owner_account is not None and owner_account.get("robot"):
            raise bad_request(f"{owner} is a robot: a robot belongs to a user or an organisation")
        document = self.accounts.create_robot(context, owner, name)
        return json_response(user_view(document), 201, headers={"Location": f"{PREFIX}/users/{name}"})

    def create_org(self):
        context = self._login("adding organisations")
        body = self._body(("name", "description"), required=("name",))
        name = self._field(body, "name", str)
        document = self.accounts.create_org(context, name, context.actor,
                                            self._field(body, "description", str, 4096))
        return json_response(org_view(document), 201, headers={"Location": f"{PREFIX}/orgs/{name}"})

    def _org(self, org: str) -> dict:
        document = self.accounts.org(org)
        if document is None:
            raise not_found(f"no organisation {org}")
        return document

    def get_org(self, org: str):
        context = self._login("reading an organisation")
        document = self._org(org)
        if context.actor not in document["members"] and not self._is_admin(context):
            raise RegistryError("DENIED", f"only members of {org} may see its members")
        return json_response(org_view(document))

    def _org_owner(self, context: Context, org: str, user: str | None = None) -> None:
        document = self._org(org)
        if document["members"].get(context.actor) == "owner" or self._is_admin(context):
            return
        if user is not None and user == context.actor and context.actor in document["members"]:
            return  # anyone may leave
        raise RegistryError("DENIED", f"only owners of {org} (and registry admins) may change its members")

    def set_member(self, org: str, user: str):
        context = self._login("changing members")
        self._org_owner(context, org)
        body = self._body(("role",), required=("role",))
        role = self._field(body, "role", str)
        if role not in ORG_ROLES:
            raise bad_request(f"role must be one of {', '.join(ORG_ROLES)}, not {role!r}")
        account = self.accounts.user(user)
        if account is not None and account.get("robot"):
            raise bad_request(f"{user} is a robot: robots act in their owner's namespace, not as members")
        document = self.accounts.set_member(context, org, user, role)
        return json_response(org_view(document))

    def remove_member(self, org: str, user: str):
        context = self._login("removing members")
        self._org_owner(context, org, user)
        self.accounts.set_member(context, org, user, None)
        return bottle.HTTPResponse(status=204)

    # --- repository access --------------------------------------------------------------------

    def _repository_admin(self, name: str) -> Context:
        check_name(name)
        return self.registry.requests.authorize(bottle.request, name, "admin")

    def update_repository(self, name: str):
        context = self._repository_admin(name)
        body = self._body(("visibility", "description"))
        visibility = self._field(body, "visibility", str)
        description = self._field(body, "description", str, 4096)
        if visibility is None and description is None:
            raise bad_request("nothing to change: give visibility or description")
        document = repository_access.set_visibility(self.meta, context, name, visibility, description)
        return json_response({key: document[key] for key in ("name", "visibility", "description", "owner")
                              if key in document})

    def list_collaborators(self, name: str):
        self._repository_admin(name)
        found = repository_access.collaborators(self.meta, name)
        return json_response({"name": name, "collaborators": [
            collaborator_view(document) for document in sorted(found, key=lambda d: d["user"])]})

    def get_collaborator(self, name: str, user: str):
        self._repository_admin(name)
        for document in repository_access.collaborators(self.meta, name):
            if document["user"] == user:
                return json_response(collaborator_view(document))
        raise not_found(f"{user} is not a collaborator on {name}")

    def set_collaborator(self, name: str, user: str):
        context = self._repository_admin(name)
        body = self._body(("role",), required=("role",))
        role = self._field(body, "role", str)
        check_account_name(user)
        account = self.accounts.user(user)
        if account is not None and account.get("robot"):
            raise bad_request(f"{user} is a robot: robots act in their owner's namespace only")
        repository_access.set_collaborator(self.meta, context, name, user, role)
        return json_response({"user": user, "role": role},
                             headers={"Location": quote(f"{PREFIX}/repositories/{name}/collaborators/{user}")})

    def remove_collaborator(self, name: str, user: str):
        context = self._repository_admin(name)
        check_account_name(user)
        repository_access.set_collaborator(self.meta, context, name, user, None)
        return bottle.HTTPResponse(status=204)


def collaborator_view(document: dict) -> dict:
    return {key: document[key] for key in ("user", "role", "addedBy", "addedAt") if key in document}


def own_login(registry, what: str, tokens_are: str) -> Context:
    """The context of a user who logged in with their own password; 401 for the anonymous, 403
    for access, robot and registry tokens (`tokens_are` says what they are for instead)."""
    context = registry.requests.authorize(bottle.request, None, "login")
    identity = context.identity
    if identity.kind != "user" or identity.scopes is not None:
        raise RegistryError("DENIED", f"{what} needs a user's own login (password): access tokens, "
                            f"robot tokens and registry tokens {tokens_are}")
    return context
