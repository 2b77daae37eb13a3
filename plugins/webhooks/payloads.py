"""The bodies a hook receives, in its format, built once when the event is recorded (so every
retry sends the same bytes under the same id):

- `distribution`: Distribution's notification envelope,
  `application/vnd.docker.distribution.events.v2+json`, `{"events": [{id, timestamp, action,
  target: {mediaType, digest, size, length, repository, url, tag}, request: {id, addr, host, method,
  useragent}, actor: {name}, source: {addr, instanceID}}]}`;
- `cloudevents`: a CloudEvents 1.0 structured-mode event, `application/cloudevents+json`, `type`
  `io.registry.image.pushed` etc., `id` the event id, the details in `data`;
- `dockerhub`: Docker Hub's push payload, `{callback_url, push_data: {pushed_at, pusher, tag,
  images}, repository: {repo_name, name, namespace, repo_url, status, …}}`.

`occurrence` is what `outbox.occurrence` recorded of the event.
"""

from __future__ import annotations

import datetime
import json

CONTENT_TYPES = {"distribution": "application/vnd.docker.distribution.events.v2+json",
                 "cloudevents": "application/cloudevents+json",
                 "dockerhub": "application/json"}
CLOUDEVENT_TYPES = {"push": "io.registry.image.pushed", "delete": "io.registry.image.deleted",
                    "tag": "io.registry.tag.moved", "untag": "io.registry.tag.deleted",
                    "pull": "io.registry.image.pulled", "ping": "io.registry.webhook.ping",
                    "star": "io.registry.repository.starred", "comment": "io.registry.repository.commented",
                    "mirror-fill": "io.registry.image.mirrored"}


def body(fmt: str, occurrence: dict, hook_id: str) -> bytes:
    shape = {"distribution": distribution, "cloudevents": cloudevent, "dockerhub": dockerhub}[fmt]
    return json.dumps(shape(occurrence, hook_id), separators=(",", ":"), sort_keys=False).encode()


def _target_url(occurrence: dict) -> str | None:
    base, repository = occurrence["baseUrl"], occurrence.get("repository")
    if not repository:
        return None
    reference = occurrence.get("digest") or occurrence.get("tag")
    return f"{base}/v2/{repository}/manifests/{reference}" if reference else f"{base}/v2/{repository}/"


def distribution(occurrence: dict, hook_id: str) -> dict:
    target = {"mediaType": occurrence.get("mediaType"), "digest": occurrence.get("digest"),
              "size": occurrence.get("size"), "length": occurrence.get("size"),
              "repository": occurrence.get("repository"), "url": _target_url(occurrence),
              "tag": occurrence.get("tag")}
    request = occurrence.get("request") or {}
    event = {"id": occurrence["id"], "timestamp": occurrence["timestamp"], "action": occurrence["event"],
             "target": {key: value for key, value in target.items() if value is not None},
             "request": {key: request.get(key) for key in ("id", "addr", "host", "method", "useragent")
                         if request.get(key) is not None},
             "actor": {"name": occurrence.get("actor")},
             "source": {"addr": occurrence["baseUrl"].split("://", 1)[-1], "instanceID": occurrence.get("instance")}}
    if occurrence.get("previousDigest"):
        event["target"]["previousDigest"] = occurrence["previousDigest"]
    return {"events": [event]}


def cloudevent(occurrence: dict, hook_id: str) -> dict:
    data = {key: occurrence.get(key) for key in ("repository", "tag", "digest", "mediaType", "size",
                                                 "previousDigest", "actor", "commentId")
            if occurrence.get(key) is not None}
    url = _target_url(occurrence)
    if url:
        data["url"] = url
    repository = occurrence.get("repository")
    event = {"specversion": "1.0", "type": CLOUDEVENT_TYPES[occurrence["event"]],
             "source": f"{occurrence['baseUrl']}/v2/{repository}" if repository else occurrence["baseUrl"],
             "id": occurrence["id"], "time": occurrence["timestamp"], "datacontenttype": "application/json",
             "data": data}
    if repository:
        event["subject"] = f"{repository}:{occurrence['tag']}" if occurrence.get("tag") else \
            f"{repository}@{occurrence['digest']}" if occurrence.get("digest") else repository
    return event


def dockerhub(occurrence: dict, hook_id: str) -> dict:
    repository = occurrence.get("repository") or ""
    namespace, _, name = repository.rpartition("/")
    base = occurrence["baseUrl"]
    timestamp = datetime.datetime.fromisoformat(occurrence["timestamp"])
    # No callback is expected; the URL names the delivery (a registry.yaml endpoint's: the repository).
    callback = f"{base}/api/v1/repositories/{repository}" + (
        "" if hook_id.startswith("registry-") else f"/webhooks/{hook_id}/deliveries/{occurrence['id']}")
    return {"callback_url": callback,
            "push_data": {"pushed_at": int(timestamp.timestamp()), "pusher": occurrence.get("actor"),
                          "tag": occurrence.get("tag"), "images": [occurrence["digest"]] if occurrence.get("digest") else []},
            "repository": {"repo_name": repository, "name": name, "namespace": namespace,
                           "owner": namespace.split("/")[0] if namespace else None,
                           "repo_url": f"{base}/v2/{repository}/", "status": "Active"}}
