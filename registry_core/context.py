"""Who is acting and from where: carried from the request into services, commits and events."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field


@dataclass
class Actor:
    """An authenticated identity, as `actor_from_request` plugins return it."""

    name: str
    admin: bool = False
    kind: str = "user"                 # user, token, robot
    scopes: tuple | None = None        # for tokens: what the credential may do at most
    extra: dict = field(default_factory=dict)

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


SYSTEM = Context(actor="registry")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
