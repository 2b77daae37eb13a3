"""Typed events: what happened, emitted by the core only after the operation succeeded.

Plugins see them through the `before_event` (veto) and `track_event` (after success) hooks.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field


@dataclass
class Event:
    action: str                      # push, pull, delete, mount, tag, untag, star, comment, …
    repository: str | None = None
    digest: str | None = None
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None
    actor: str = "anonymous"
    client_addr: str | None = None
    request_id: str | None = None
    previous_digest: str | None = None     # for a tag move: where the tag pointed before
    source_repository: str | None = None   # for a mount: where the blob came from
    comment_id: str | None = None          # for comment, comment-edited, comment-deleted: which comment
    timestamp: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def event(action: str, context, **fields) -> Event:
    return Event(action=action, actor=context.actor, client_addr=context.client_addr,
                 request_id=context.request_id, **fields)


def ignore(_event: Event, **_details) -> None:
    """The default sink: nobody is listening."""
