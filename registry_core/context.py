"""Who is acting and from where: carried from the request into services, commits and events.

The actor's name becomes the author of every commit the request makes, and the client address and
request id become trailers of its message: all three are checked when a context or an actor is
made, so nothing that reaches the audit log can forge an author, add a line or break the commit
for `git fsck`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from registry_core.names import is_account_name

# One trailer value: printable ASCII without spaces, so it stays on its line of the commit message.
TRAILER_VALUE_RE = re.compile(r"[\x21-\x7e]{1,200}")


class InvalidIdentity(ValueError):
    """An actor name, client address or request id that may not be written into a commit."""


def check_actor_name(name) -> str:
    if not is_account_name(name):
        raise InvalidIdentity(f"{name!r} is not an account name: lowercase letters and digits, with '.', "
                              "'_' or '-' between them, at most 64 characters")
    return name


def is_trailer_value(value) -> bool:
    return isinstance(value, str) and TRAILER_VALUE_RE.fullmatch(value) is not None


@dataclass
class Actor:
    """An authenticated identity, as `actor_from_request` plugins return it."""

    name: str
    admin: bool = False
    kind: str = "user"                 # user, token, robot
    scopes: tuple | None = None        # for tokens: what the credential may do at most
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        check_actor_name(self.name)

    @classmethod
    def coerce(cls, value) -> "Actor | None":
        if value is None or isinstance(value, Actor):
            return value
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            known = {k: value[k] for k in ("name", "admin", "kind", "scopes") if k in value}
            return cls(**known, extra={k: v for k, v in value.items() if k not in known})
        raise TypeError(f"an actor must be an Actor or a dict with a 'name', not {value!r}")


@dataclass
class Context:
    actor: str = "anonymous"
    client_addr: str | None = None
    request_id: str | None = None
    user_agent: str | None = None
    identity: Actor | None = None      # None: anonymous

    def __post_init__(self):
        check_actor_name(self.actor)
        for what, value in (("client address", self.client_addr), ("request id", self.request_id)):
            if value is not None and not is_trailer_value(value):
                raise InvalidIdentity(f"the {what} {value!r} may not be recorded: printable ASCII without "
                                      "spaces, at most 200 characters")


SYSTEM = Context(actor="registry")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
