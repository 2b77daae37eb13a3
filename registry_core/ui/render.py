"""The UI's templates (Jinja2, every value escaped) and the filters they use.

Autoescaping is on for every template, whatever its name: a repository description, a tag or a
user name is text, and reaches the page as text. The one exception is the `html` of a comment or
README: Markdown rendered by index/markdown.py and cleaned there by nh3 against an allow-list
(no script, no event handler, no link but http, https and mailto), which the templates mark
`|safe`; nothing else is.
"""

from __future__ import annotations

import functools

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_size(size: int | None) -> str:
    """`1.5 MB` (powers of 1000, as registries and Docker show image sizes); `—` when unknown."""
    if size is None:
        return "—"
    value, unit = float(size), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def short_digest(digest: str | None) -> str:
    """`sha256:0123456789ab`: the algorithm and the first 12 characters, as `docker images` shows."""
    if not digest:
        return ""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


@functools.cache
def environment():
    """The templates' Jinja2 environment, made by the first page a worker renders (a worker that
    serves only /v2/ never imports Jinja2)."""
    import jinja2
    made = jinja2.Environment(loader=jinja2.PackageLoader("registry_core.ui", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    made.filters.update(human_size=human_size, short_digest=short_digest)
    return made


def render(template: str, **values) -> str:
    return environment().get_template(template).render(**values)
