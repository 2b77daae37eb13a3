"""Where each box and line of an image graph (index/graph.py) goes in the tag page's SVG.

The graph is drawn as a tree from left to right: a manifest's children (the manifests an index
lists, then its config, its layers, then the manifests that refer to it) sit in the next column,
one row each for a leaf, and a parent is level with its first child. Referrers hang off their
subject like its other children but with a dashed line, so they read as beside it. The template
(templates/_graph.html) draws what `layout` returns: boxes with two short lines of text and
elbow lines, no script, styled by classes of ui.css (an inline `style` would need 'unsafe-inline').
At most MAX_BOXES boxes are drawn; `truncated` says when more were left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry_core.ui.render import human_size, short_digest

BOX_WIDTH = 250
BOX_HEIGHT = 40
COLUMN_GAP = 40
ROW_PITCH = 48
MARGIN = 4
MAX_BOXES = 400
MAX_TEXT = 36


@dataclass
class Box:
    kind: str          # index, manifest, referrer, config, layer, missing
    title: str
    detail: str
    digest: str | None
    x: int = 0
    y: int = 0
    shared: bool = False
    children: list["Box"] = field(default_factory=list)
    dashed: bool = False   # the line from its parent: a referrer's


@dataclass
class Line:
    path: str
    dashed: bool


@dataclass
class Layout:
    width: int
    height: int
    boxes: list[Box]
    lines: list[Line]
    truncated: bool
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT


def layout(graph: dict) -> Layout:
    counter = [0]
    root = _tree(graph["root"], counter, referrer=False)
    boxes: list[Box] = []
    rows = [0]

    def place(box: Box, column: int) -> None:
        box.x = MARGIN + column * (BOX_WIDTH + COLUMN_GAP)
        if not box.children:
            box.y = MARGIN + rows[0] * ROW_PITCH
            rows[0] += 1
        for child in box.children:
            place(child, column + 1)
        if box.children:
            box.y = box.children[0].y
        boxes.append(box)
    place(root, 0)
    lines = []
    for box in boxes:
        for child in box.children:
            x1, y1 = box.x + BOX_WIDTH, box.y + BOX_HEIGHT // 2
            x2, y2 = child.x, child.y + BOX_HEIGHT // 2
            middle = x1 + COLUMN_GAP // 2
            lines.append(Line(f"M{x1} {y1} H{middle} V{y2} H{x2}", child.dashed))
    width = MARGIN * 2 + (max(box.x for box in boxes) - MARGIN) + BOX_WIDTH
    height = MARGIN * 2 + rows[0] * ROW_PITCH - (ROW_PITCH - BOX_HEIGHT)
    return Layout(width, height, sorted(boxes, key=lambda b: (b.x, b.y)), lines, counter[0] > MAX_BOXES)


def _tree(node: dict, counter: list[int], referrer: bool) -> Box:
    counter[0] += 1
    box = _manifest_box(node, referrer)
    if not node["present"]:
        return box
    children: list[Box] = []

    def add(child: Box) -> bool:
        if counter[0] >= MAX_BOXES:
            counter[0] += 1
            return False
        counter[0] += 1
        children.append(child)
        return True
    for child in node["manifests"]:
        if counter[0] >= MAX_BOXES:
            counter[0] += 1
            break
        children.append(_tree(child, counter, referrer=False))
    if node["config"]:
        config = node["config"]
        add(Box("config", "config " + short_digest(config.get("digest")), _clip(human_size(config.get("size"))),
                config.get("digest")))
    for number, layer in enumerate(node["layers"], start=1):
        shared = layer["sharedWith"]
        detail = human_size(layer.get("size")) + (f" · also in {', '.join(shared[:3])}" +
                                                  ("…" if len(shared) > 3 else "") if shared else "")
        if not add(Box("layer", f"layer {number} " + short_digest(layer.get("digest")), _clip(detail),
                       layer.get("digest"), shared=bool(shared))):
            break
    for child in node["referrers"]:
        if counter[0] >= MAX_BOXES:
            counter[0] += 1
            break
        children.append(_tree(child, counter, referrer=True))
    box.children = children
    return box


def _manifest_box(node: dict, referrer: bool) -> Box:
    media_type = node.get("mediaType") or ""
    is_index = "index" in media_type or "manifest.list" in media_type
    kind = "referrer" if referrer else "index" if is_index else "manifest"
    if not node["present"]:
        kind = "missing"
    what = node.get("artifactType") if referrer else node.get("platform")
    title = f"{'index' if is_index else 'referrer' if referrer else 'manifest'} {short_digest(node['digest'])}"
    detail = ", ".join(part for part in (what, human_size(node.get("size")) if node.get("size") is not None else None,
                                         None if node["present"] else "not in this repository") if part)
    box = Box(kind, _clip(title), _clip(detail or media_type.rpartition("/")[2]), node["digest"])
    box.dashed = referrer
    return box


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"
