"""Documentation stays complete: every hook is documented and tested, every command is in the README."""

import re
from pathlib import Path

import pytest

from registry_core import cli
from registry_core.plugins import hook_names

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DOCS = (ROOT / "docs" / "plugins.md").read_text()
PLUGIN_TESTS = (ROOT / "tests" / "test_plugins.py").read_text()
EVERYTHING = (ROOT / "tests" / "plugins" / "everything.py").read_text()


def test_hooks_are_found():
    assert len(hook_names()) >= 13


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook):
    assert re.search(rf"^### {hook}$", PLUGIN_DOCS, re.M), f"docs/plugins.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_test(hook):
    assert re.search(rf"^def test_hook_{hook}", PLUGIN_TESTS, re.M), f"tests/test_plugins.py has no test_hook_{hook}…"


@pytest.mark.parametrize("hook", hook_names())
def test_the_test_plugin_implements_every_hook(hook):
    assert re.search(rf"^def {hook}\(", EVERYTHING, re.M), f"tests/plugins/everything.py does not implement {hook}"


@pytest.mark.parametrize("command", sorted(cli.main.commands))
def test_every_command_is_in_the_readme(command):
    assert f"registry {command}" in (ROOT / "README.md").read_text(), f"README.md does not mention `registry {command}`"
