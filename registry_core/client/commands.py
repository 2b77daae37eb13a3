"""Client commands of the `registry` CLI (filled in by the client-role work)."""


def register(cli) -> None:
    """Add the client commands to the `registry` click group."""
