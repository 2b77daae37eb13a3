"""An out-of-tree plugin, installed as a package with an entry point in the group `registry_core`.

It refuses image manifests and indexes without an `org.opencontainers.image.source` annotation
(so every image says where its source lives), and records each push it sees as a JSON line in
the file named by `pluginConfig.source_policy.record`.
"""

import json

from registry_core.hookspecs import hookimpl

SOURCE = "org.opencontainers.image.source"
_settings = {}


@hookimpl
def plugin_config_schema():
    return {"source_policy": {"type": "object", "additionalProperties": False,
                              "properties": {"record": {"type": "string"}}}}


@hookimpl
def startup(registry):
    _settings.update(registry.config.plugin_config.get("source_policy", {}))


@hookimpl
def validate_manifest(repository, manifest):
    if SOURCE not in (manifest.annotations or {}):
        return [f"manifests pushed to {repository} must say where their source is: add the annotation "
                f"{SOURCE} (e.g. docker buildx --annotation {SOURCE}=https://example.test/repo, "
                f"or LABEL {SOURCE}=… in the Dockerfile)"]
    return None


@hookimpl
def track_event(event):
    if event.action == "push" and event.media_type and _settings.get("record"):
        with open(_settings["record"], "a") as f:
            f.write(json.dumps({"repository": event.repository, "digest": event.digest, "tag": event.tag,
                                "actor": event.actor}) + "\n")
