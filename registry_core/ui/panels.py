"""Plugins' panels on the web UI's home and repository pages (the `ui_panels` hook), made safe to show.

A panel is a dict: `title` (text, at most `MAX_TITLE` characters) and either `text` (plain text:
escaped by the templates like every value) or `html` (cut down by `index/markdown.py` `clean`
to the allow-list of comments and READMEs: no script, no event handler, no style, no image, no
link but http, https, mailto and this site's paths). So a panel cannot run script or restyle
the page whatever its plugin returns. A panel of another shape is left out and logged, and a
plugin whose hook raises costs the page its panels, never the page itself.
"""

from __future__ import annotations

import logging

from registry_core.context import Actor
from registry_core.index.markdown import clean

MAX_TITLE = 200
MAX_BODY = 64 * 1024
log = logging.getLogger("registry_core.ui")


def panels(registry, page: str, repository: str | None, actor: Actor | None) -> list[dict]:
    """What the plugins show on `page` ("home" or "repository") of `repository` to `actor`:
    dicts with `title` and either `text` or `html` (sanitised), in the plugins' order."""
    try:
        answers = registry.ui_panels(page, repository, actor)
    except Exception:
        log.exception("a plugin's ui_panels failed on the %s page; the page is shown without panels", page)
        return []
    return [shown for shown in (shape(answer, page) for answer in answers) if shown is not None]


def shape(answer, page: str) -> dict | None:
    """One panel as the templates show it; None (and a log line) for one of another shape."""
    title = answer.get("title") if isinstance(answer, dict) else None
    html, text = (answer.get("html"), answer.get("text")) if isinstance(answer, dict) else (None, None)
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE \
            or not (isinstance(html, str) or isinstance(text, str)) or len(html or text or "") > MAX_BODY:
        log.warning("a plugin's ui_panels answered a panel the %s page cannot show (a dict with a title of "
                    "at most %d characters and a text or html of at most %d): %.200r",
                    page, MAX_TITLE, MAX_BODY, answer)
        return None
    if isinstance(html, str):
        return {"title": title, "html": clean(html), "text": None}
    return {"title": title, "html": None, "text": text}
