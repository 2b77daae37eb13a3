"""Who is acting and from where: carried from the request into services, commits and events."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field


@dataclass
class Context:
    actor: str = "anonymous"
    client_addr: str | None = None
    request_id: str | None = None
    user_agent: str | None = None
    extra: dict = field(default_factory=dict)


SYSTEM = Context(actor="registry")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
