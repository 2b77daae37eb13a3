"""Markdown that people write (comments, repository READMEs) as HTML that is safe to show.

Two steps, each a well-kept library: markdown-it-py renders CommonMark (plus tables and
strikethrough) with raw HTML off, so `<script>` in the source is text; then nh3 (Rust's ammonia)
cleans the result against an allow-list of tags, attributes and URL schemes: whatever the
renderer let through, no element or attribute outside the list survives (no `on*=` handler, no
`style`, no `javascript:` or `data:` link, no image: the pages' Content-Security-Policy would
block remote images anyway). Links get `rel="nofollow noopener noreferrer"`.

`clean` is the second step alone, for HTML that did not come from Markdown (plugins' panels on
the web UI's pages).

Rendering is done on read (the documents keep the source), so a stricter list applies to what
was written before it; `render` caches recent results by their source.
"""

from __future__ import annotations

import functools

ALLOWED_TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
})
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})



@functools.cache
def _renderer():
    """markdown-it's renderer, made by the first document rendered (a worker that serves only
    /v2/ never imports it)."""
    from markdown_it import MarkdownIt
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"])


@functools.lru_cache(maxsize=4096)
def render(source: str) -> str:
    """`source` (Markdown) as sanitised HTML."""
    return clean(_renderer().render(source))


@functools.lru_cache(maxsize=1024)
def clean(html: str) -> str:
    """`html` (from a renderer, or a plugin's `ui_panels`) cut down to the allow-list above."""
    import nh3
    return nh3.clean(html, tags=set(ALLOWED_TAGS),
                     attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
                     url_schemes=set(URL_SCHEMES), link_rel="nofollow noopener noreferrer",
                     strip_comments=True)
