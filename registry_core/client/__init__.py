"""The Client role: a v2 registry client and the `registry login/push/pull/copy/…` commands."""
