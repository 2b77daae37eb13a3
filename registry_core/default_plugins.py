"""The core's own defaults, registered as a plugin like any other (see registry_core/plugins.py)."""

from __future__ import annotations

from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.storage.filesystem import FilesystemDriver

@hookimpl
def register_storage_drivers():
    return {"filesystem": lambda root, options: FilesystemDriver(options.get("root", root),
                                                                 durable=options.get("durable", False)),
            "s3": _s3_driver}


def _s3_driver(root, options):
    from registry_core.storage.s3 import open_s3_driver  # boto3 is imported only by stores on S3
    return open_s3_driver(options)


@hookimpl
def before_event(event, registry):
    """Read-only mode (`readOnly: true` in registry.yaml): pulls work, changes are refused.

    A veto on changes rather than a request filter, so that reads pay nothing for it."""
    if registry.config.read_only:
        return RegistryError("UNSUPPORTED", "this registry is in read-only mode (maintenance): pulls "
                             "work, pushes and deletes are refused; try again later", status=405)
    return None
