"""Plugins' panels as the web UI shows them (ui/panels.py): only the documented shape, HTML
cleaned, and a failing plugin costs the page its panels, not the page. The panels on served pages
are tested through the everything plugin in test_plugins.py and test_ui_browser.py."""

from __future__ import annotations

from registry_core.app import Registry
from registry_core.config import Config
from registry_core.plugins import make_plugin_manager
from registry_core.ui.panels import MAX_TITLE, panels, shape


def test_a_panel_with_html_is_cleaned_to_the_markdown_allow_list():
    shown = shape({"title": "Scan", "html": '<p onclick="x()">ok</p><script>alert(1)</script><style>p{}</style>'},
                  "home")
    assert shown == {"title": "Scan", "html": "<p>ok</p>", "text": None}


def test_a_panel_with_text_keeps_its_text_for_the_template_to_escape():
    assert shape({"title": "Note", "text": "<b>x</b>"}, "home") == {"title": "Note", "html": None, "text": "<b>x</b>"}


def test_panels_of_another_shape_are_left_out_and_logged(caplog):
    for answer in ("<p>a string</p>", {"html": "<p>no title</p>"}, {"title": "no body"},
                   {"title": 5, "text": "x"}, {"title": "x" * (MAX_TITLE + 1), "text": "x"},
                   {"title": "t", "html": ["not", "text"]}, {"title": " ", "text": "blank title"}):
        assert shape(answer, "home") is None
    assert caplog.text.count("cannot show") == 7


def test_a_plugin_whose_hook_raises_leaves_the_page_without_panels(tmp_path, caplog):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken_panel.py").write_text("from registry_core.hookspecs import hookimpl\n\n"
                                              "@hookimpl\ndef ui_panels(page):\n    raise RuntimeError('broken')\n")
    registry = Registry(Config(store=str(tmp_path / "store")), make_plugin_manager(plugins_dir=str(plugins), auth=False))
    assert panels(registry, "home", None, None) == []
    assert "ui_panels failed on the home page" in caplog.text


def test_the_most_starred_ranking_counts_stars_from_the_star_index_and_shares_it_with_the_api(tmp_path):
    """Home's ranking (most stars first, then by name) comes from the star index that the API's
    services keep; the UI and the API hold the same services, not copies."""
    from registry_core.context import Context
    from registry_core.ui.pages import Pages

    registry = Registry(Config(store=str(tmp_path / "store")))
    for name in ("a/one", "a/two", "a/three", "a/none"):
        registry.meta.transact(lambda txn, name=name: registry.repositories.ensure(txn, name, Context(actor="admin")),
                               Context(actor="admin"), f"Create {name}")
    stars = registry.community.stars
    for user, names in (("u1", ["a/two", "a/three"]), ("u2", ["a/two", "a/three"]), ("u3", ["a/three", "a/one"])):
        for name in names:
            stars.star(Context(actor=user), name)
    assert stars.most_starred() == ["a/three", "a/two", "a/one"]
    pages = Pages(registry, lambda actor, name, action: True)
    assert pages.stars is stars and pages.search_service is registry.community.search
    assert [entry["name"] for entry in pages.home(None)["starred"]] == ["a/three", "a/two", "a/one"]
