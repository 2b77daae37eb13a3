"""The web UI's pages of one's own account: access tokens, the password, logging in and out, and
signing up where the configuration allows it."""

from __future__ import annotations

import bottle

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.index.accounts import check_account_name, parse_token_secret
from registry_core.index.api import TOKEN_ID_RE, check_password, token_days
from registry_core.ui.site import MAX_EMAIL, MAX_PASSWORD, MAX_USERNAME, TOKEN_ACTIONS_BY_FIELD, Site, local_path
from registry_core.web import request_context, whole_number


class AccountRoutes(Site):
    # --- tokens and the password ----------------------------------------------------------------

    def tokens(self, secret: str | None = None, created: dict | None = None, message: str | None = None,
               status: int = 200):
        actor = self._logged_in()
        tokens = sorted((token for token in self.accounts.tokens(actor.name) if token.get("purpose") == "access"),
                        key=lambda t: (t.get("createdAt", ""), t["id"]))
        return self.page("tokens.html", status, tokens=tokens, secret=secret, created=created, message=message)

    def create_token(self):
        form, _ = self.checked_form()
        actor = self._logged_in()
        description = (form.getunicode("description") or "").strip()
        if len(description) > 256:
            raise RegistryError("UNSUPPORTED", "a token's description is at most 256 characters", status=400)
        actions = TOKEN_ACTIONS_BY_FIELD.get(form.getunicode("actions") or "")
        if actions is None:
            raise RegistryError("UNSUPPORTED", "choose what the token may do: pull, or pull and push", status=400)
        days_text = (form.getunicode("days") or "").strip()
        days = token_days(whole_number(days_text, "days")) if days_text else None
        secret, document = self.accounts.create_token(request_context(bottle.request, actor), actor.name, "access",
                                                      description or None, actions, None, days)
        return self.tokens(secret=secret, created=document)

    def revoke_token(self, token_id: str):
        self.checked_form()
        actor = self._logged_in()
        if not TOKEN_ID_RE.fullmatch(token_id):
            return self.not_found()
        self.accounts.revoke_token(request_context(bottle.request, actor), actor.name, token_id)
        return self.redirect("/settings/tokens")

    def change_password(self):
        form, _ = self.checked_form()
        actor = self._logged_in()
        current = form.getunicode("current") or ""
        new, again = form.getunicode("new") or "", form.getunicode("again") or ""
        if len(current) > MAX_PASSWORD or len(new) > MAX_PASSWORD:
            raise RegistryError("UNSUPPORTED", f"a password is at most {MAX_PASSWORD} characters", status=400)
        if new != again:
            return self.tokens(message="The two new passwords differ: type the same one twice.", status=400)
        try:
            check_password(new)
        except RegistryError as error:
            return self.tokens(message=error.message, status=400)
        try:
            confirmed = self.accounts.authenticate(actor.name, current, bottle.request.environ.get("REMOTE_ADDR"))
        except RegistryError as error:
            if error.code != "TOOMANYREQUESTS":
                raise
            return self.tokens(message=error.message, status=error.status)
        if confirmed is None or confirmed.kind != "user":
            return self.tokens(message="Your current password is not that one.", status=400)
        document = self.accounts.update_user(request_context(bottle.request, actor), actor.name,
                                             f"Change the password of {actor.name}", password=new)
        return self.redirect("/settings/tokens", session=self.sessions.new(actor.name, document.get("passwordHash")))

    # --- logging in and out ---------------------------------------------------------------------

    def login_form(self):
        session, actor = self.visitor()
        target = local_path(bottle.request.query.getunicode("next"))
        if actor is not None:
            return self.redirect(target)
        return self.page("login.html", session=session or self.sessions.new(), next=target, username="",
                         message=None)

    def login(self):
        form, session = self.checked_form()
        username = form.getunicode("username") or ""
        password = form.getunicode("password") or ""
        target = local_path(form.getunicode("next"))
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            raise RegistryError("UNSUPPORTED", f"a username is at most {MAX_USERNAME} characters and a password "
                                f"at most {MAX_PASSWORD}", status=400)

        def again(message: str, status: int = 200, headers: dict | None = None):
            return self.page("login.html", status, headers=headers, next=target, username=username,
                             message=message)
        if parse_token_secret(password) is not None:
            return again("Log in with your password: access tokens are for docker login and scripts.")
        try:
            actor = self.accounts.authenticate(username, password, bottle.request.environ.get("REMOTE_ADDR"))
        except RegistryError as error:
            if error.code != "TOOMANYREQUESTS":
                raise
            return again(error.message, error.status, error.headers)
        user = self.accounts.user(actor.name) if actor is not None else None
        if user is None or actor.kind != "user":
            return again("Wrong username or password (or the account is disabled).")
        return self.redirect(target, session=self.sessions.new(actor.name, user.get("passwordHash")))

    def logout(self):
        self.checked_form()
        return self.redirect("/", end_session=True)

    # --- signing up -----------------------------------------------------------------------------

    def signup_form(self):
        if not self.signup_open():
            return self.not_found()
        session, actor = self.visitor()
        if actor is not None:
            return self.redirect("/")
        return self.page("signup.html", session=session or self.sessions.new(), username="", email="", message=None)

    def signup(self):
        """An account made by the person who will use it, as `POST /api/v1/users` makes it without
        credentials: the commit authored by the new user; then they are logged in."""
        form, _ = self.checked_form()
        if not self.signup_open():
            return self.not_found()
        username = (form.getunicode("username") or "").strip()
        email = (form.getunicode("email") or "").strip()
        password, again = form.getunicode("password") or "", form.getunicode("again") or ""
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD or len(email) > MAX_EMAIL:
            raise RegistryError("UNSUPPORTED", f"a username is at most {MAX_USERNAME} characters, a password at "
                                f"most {MAX_PASSWORD} and an email address at most {MAX_EMAIL}", status=400)

        def again_with(message: str, status: int = 400):
            return self.page("signup.html", status, username=username, email=email, message=message)
        if password != again:
            return again_with("The two passwords differ: type the same one twice.")
        try:
            check_account_name(username)
            check_password(password)
            document = self.accounts.create_user(request_context(bottle.request, Actor(name=username)), username,
                                                 password, email or None)
        except RegistryError as error:
            if error.status >= 500:
                raise
            return again_with(error.message, error.status)
        return self.redirect(f"/u/{username}", session=self.sessions.new(username, document.get("passwordHash")))
