"""The repository's webhooks on its web UI settings page (the `ui_settings_sections` hook): the
hooks (URL, format, events, whether active, the last delivery), adding one, deleting one, turning
one off and on, a ping, and each hook's delivery log with a redeliver button. The UI shows the
section to the repository's admins only and checks every form (CSRF, admin) before it calls the
handlers here; the handlers change hooks through the same Definitions as the API, so each change is
one commit authored by the admin. A secret is shown once, on the page that answers the hook's
creation, when the registry made it; never after.
"""

from __future__ import annotations

from registry_core.errors import RegistryError
from registry_core.events import event
from registry_core.ui.sections import Section, SectionRequest, Show

from .definitions import hook_unknown
from .routes import delivery_view
from .settings import DEFAULT_EVENTS, EVENTS, FORMATS

LOG_ROWS = 20  # the newest deliveries shown of each hook

TEMPLATE = """\
<p>After each event a hook wants, the registry POSTs it to the hook's URL, signed with the hook's
  secret (<code>X-Registry-Signature</code>), and retries until the receiver answers 2xx.</p>
{% if problem %}<p class="problem" role="alert">{{ problem }}</p>{% endif %}
{% if section.created %}
<div class="notice" role="status">
  <p>Webhook {{ section.created }} added.{% if section.secret %} Its secret, shown this once (the
    receiver checks each signature with it):{% endif %}</p>
  {% if section.secret %}<p><code id="webhook-new-secret">{{ section.secret }}</code></p>{% endif %}
</div>
{% endif %}
{% if section.hooks %}
<ul class="webhooks">
  {% for hook in section.hooks %}
  <li id="webhook-{{ hook.id }}">
    <p class="webhook-url"><code>{{ hook.url }}</code></p>
    <dl class="facts">
      <dt>Events</dt><dd>{{ hook.events|join(", ") }}{% if hook.tags %} (tags matching <code>{{ hook.tags }}</code>){% endif %}</dd>
      <dt>Format</dt><dd>{{ hook.format }}</dd>
      <dt>Active</dt><dd class="webhook-active">{{ "yes" if hook.active else "no" }}</dd>
      <dt>Last delivery</dt><dd class="webhook-last">{{ hook.last }}</dd>
    </dl>
    <div class="webhook-actions">
      <form action="{{ action }}/active" method="post" class="inline">
        <input type="hidden" name="csrf" value="{{ csrf }}">
        <input type="hidden" name="hook" value="{{ hook.id }}">
        <input type="hidden" name="active" value="{{ "no" if hook.active else "yes" }}">
        <button type="submit">{{ "Deactivate" if hook.active else "Activate" }}</button>
      </form>
      <form action="{{ action }}/ping" method="post" class="inline">
        <input type="hidden" name="csrf" value="{{ csrf }}">
        <input type="hidden" name="hook" value="{{ hook.id }}">
        <button type="submit">Send a ping</button>
      </form>
      <form action="{{ action }}/delete" method="post" class="inline">
        <input type="hidden" name="csrf" value="{{ csrf }}">
        <input type="hidden" name="hook" value="{{ hook.id }}">
        <button type="submit" class="danger">Delete</button>
      </form>
    </div>
    <details id="webhook-{{ hook.id }}-log">
      <summary>Deliveries ({{ hook.deliveries|length }}{% if hook.deliveries|length == section.log_rows %}, the newest{% endif %})</summary>
      {% if hook.deliveries %}
      <div class="scroll">
      <table class="deliveries">
        <thead><tr><th scope="col">Event</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Last answer</th><th scope="col">Recorded</th><th scope="col"><span class="hidden">Redeliver</span></th></tr></thead>
        <tbody>
        {% for delivery in hook.deliveries %}
          <tr>
            <td>{{ delivery.event }}</td>
            <td class="delivery-state">{{ delivery.state }}</td>
            <td>{{ delivery.attempts }}</td>
            <td>{{ delivery.answer }}{% if delivery.durationMs is not none %} in {{ delivery.durationMs }} ms{% endif %}</td>
            <td><time datetime="{{ delivery.createdAt }}">{{ delivery.createdAt }}</time></td>
            <td>
              {% if delivery.state != "pending" %}
              <form action="{{ action }}/redeliver" method="post">
                <input type="hidden" name="csrf" value="{{ csrf }}">
                <input type="hidden" name="hook" value="{{ hook.id }}">
                <input type="hidden" name="delivery" value="{{ delivery.id }}">
                <button type="submit">Redeliver</button>
              </form>
              {% endif %}
            </td>
          </tr>
        {% endfor %}
        </tbody>
      </table>
      </div>
      {% else %}
      <p class="empty">No deliveries yet.</p>
      {% endif %}
    </details>
  </li>
  {% endfor %}
</ul>
{% else %}
<p class="empty">No webhooks.</p>
{% endif %}
<h3>Add a webhook</h3>
<form action="{{ action }}/add" method="post" class="settings">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label for="webhook-url">Payload URL</label>
  <input id="webhook-url" name="url" type="url" required maxlength="2048" placeholder="https://ci.example/hooks/registry" autocomplete="off">
  <fieldset>
    <legend>Events</legend>
    {% for name in section.events %}
    <input type="checkbox" id="webhook-event-{{ name }}" name="events" value="{{ name }}"{% if name in section.default_events %} checked{% endif %}>
    <label for="webhook-event-{{ name }}">{{ name }}</label>
    {% endfor %}
  </fieldset>
  <label for="webhook-format">Format</label>
  <select id="webhook-format" name="format">
    {% for name in section.formats %}<option value="{{ name }}">{{ name }}</option>{% endfor %}
  </select>
  <label for="webhook-tags">Only tags matching (a glob such as v*; empty: every tag)</label>
  <input id="webhook-tags" name="tags" maxlength="256" autocomplete="off">
  <label for="webhook-secret">Secret (16 characters or more; left empty, the registry makes one and shows it once)</label>
  <input id="webhook-secret" name="secret" type="password" minlength="16" maxlength="1024" autocomplete="new-password">
  <div><input type="checkbox" id="webhook-active" name="active" value="yes" checked>
    <label for="webhook-active">Active</label></div>
  <button type="submit">Add the webhook</button>
</form>
<p>The same through the API, with your password: <code>{{ site }}/api/v1/repositories/{{ repository }}/webhooks</code>
  (see the README's "Webhooks"); on the server, <code>registry webhook list {{ repository }}</code>.</p>
"""


def shown(record: dict) -> dict:
    """A delivery as the log shows it: the API's view, and its last answer in words."""
    view = delivery_view(record)
    view["answer"] = f"HTTP {view['lastStatus']}" if view["lastStatus"] else (view["lastError"] or "")
    return view


class WebhooksSection:
    """The section of one repository, over the plugin's service (service.Webhooks)."""

    def __init__(self, service, repository: str):
        self.service = service
        self.definitions = service.definitions
        self.repository = repository

    def section(self) -> Section:
        hooks = []
        for document in self.definitions.list(self.repository):
            deliveries = [shown(record) for record in self.service.deliveries(document["id"], limit=LOG_ROWS)]
            last = deliveries[0] if deliveries else None
            hooks.append({"id": document["id"], "url": document["url"], "events": document["events"],
                          "format": document["format"], "tags": document.get("tags"), "active": document["active"],
                          "last": f"{last['event']}: {last['state']}" + (f" ({last['answer']})" if last["answer"] else "")
                          if last else "none yet", "deliveries": deliveries})
        values = {"hooks": hooks, "events": EVENTS, "default_events": DEFAULT_EVENTS, "formats": FORMATS,
                  "log_rows": LOG_ROWS, "created": None, "secret": None}
        return Section(id="webhooks", title="Webhooks", template=TEMPLATE, values=values,
                       actions={"add": self.add, "delete": self.delete, "active": self.set_active,
                                "ping": self.ping, "redeliver": self.redeliver})

    # --- the forms --------------------------------------------------------------------------------

    def _hook(self, request: SectionRequest) -> dict:
        hook_id = request.form.get("hook")
        document = self.definitions.get(self.repository, hook_id)
        if document is None:
            raise hook_unknown(self.repository, hook_id)
        return document

    def add(self, request: SectionRequest) -> Show:
        form = request.form
        body = {"url": form.get("url").strip(), "events": form.getall("events"),
                "format": form.get("format") or "distribution", "active": form.get("active") == "yes",
                "tags": form.get("tags").strip() or None, "secret": form.get("secret") or None}
        document, generated = self.definitions.create(request.context, self.repository, body)
        return Show({"created": document["id"], "secret": generated})

    def delete(self, request: SectionRequest) -> None:
        self.definitions.delete(request.context, self.repository, self._hook(request)["id"])

    def set_active(self, request: SectionRequest) -> str:
        document = self._hook(request)
        self.definitions.update(request.context, self.repository, document["id"],
                                {"active": request.form.get("active") == "yes"})
        return f"#webhook-{document['id']}"

    def ping(self, request: SectionRequest) -> str:
        document = self._hook(request)
        self.service.ping(document, event("ping", request.context, repository=self.repository))
        return f"#webhook-{document['id']}-log"

    def redeliver(self, request: SectionRequest) -> str:
        document = self._hook(request)
        delivery = request.form.get("delivery")
        if self.service.redeliver(document["id"], delivery) is None:
            raise RegistryError("NAME_UNKNOWN", f"webhook {document['id']} of {self.repository} has no delivery "
                                f"{delivery}")
        return f"#webhook-{document['id']}-log"
