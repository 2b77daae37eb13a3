"""The access policy of a registry with `auth.enabled: false`: everyone may do everything.

Registered instead of the Index's policy (registry_core/index/auth.py) when authentication is
off. While it is the only `permission_allowed` implementation, `access.Access.may` skips the hook.
"""

from registry_core.hookspecs import hookimpl


@hookimpl
def permission_allowed(actor, action, repository, registry):
    return True
