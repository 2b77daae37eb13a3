"""Consistency checks of a store (`registry fsck`), and the repairs that lose nothing.

What is checked:

- blobs: every file in blobs/ is named by a digest, in the folder of its first two hex digits, and
  its content has that digest;
- documents: every file in meta.git (at the tip of main) parses and matches the schema of its kind
  (documents.validate), and sits where its kind lives (a tag in its bucket of `_tags/` under its
  own name, a manifest document in its bucket of `_manifests/` under its digest, …);
- manifests: the blobs each manifest document needs exist (its own bytes, config and layers;
  foreign layers with `urls` are not stored) and the config and layers are linked into its
  repository; its child manifests are documents of the repository;
- tags point at manifest documents of their repository;
- the referrers index: each entry names a manifest document whose subject is the entry's folder,
  and each manifest with a subject has its entry.

A mirror's repositories (`upstream` in the repository document) fetch blobs and child manifests
on first pull, so what is missing there is not a problem.

Repairs (`--repair`), each made only if it is still needed on the tip it is committed to: a missing
link to a blob that exists is written again; tags and referrer entries that point at a missing
manifest, or at a manifest with another subject, are removed; missing referrer entries are written
from their manifest document; tag, manifest and referrer documents outside their buckets (a
store from before the fanned-out layout of meta/paths.py: tags directly in `_tags/` or in 256
buckets of two hex digits, manifests directly in `_manifests/<alg>/`, referrers directly in
`_referrers/<alg>/`) are moved there, and removed where a later push already wrote their bucket's
copy. Metadata repairs are one commit per repository, authored by the acting user. Corrupt and
missing blobs and invalid documents need a person or a push: the report says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pygit2

from registry_core.context import Context
from registry_core.meta import paths as meta_paths
from registry_core.meta.documents import DocumentInvalid
from registry_core.meta.store import MetaStore, Snapshot, Transaction, load_blob
from registry_core.maintenance import inventory
from registry_core.maintenance.gc import human_size, plural
from registry_core.maintenance.inventory import RepositoryGraph
from registry_core.registry.blobs import hash_file
from registry_core.registry.manifests import referrer_descriptor
from registry_core.registry.mediatypes import ParsedManifest
from registry_core.storage import paths
from registry_core.storage.driver import StorageDriver

# The kind of document each folder holds (meta/paths.py), by the first `_folder` of a repository's path.
_REPOSITORY_KINDS = {meta_paths.REPOSITORY_DOC: "repository", "_tags": "tag", "_manifests": "manifest",
                     "_referrers": "referrer", "_collaborators": "collaborator", "_stars": "star",
                     "_comments": "comment"}


@dataclass
class Problem:
    code: str          # blob-corrupt, blob-missing, blob-misplaced, link-missing, document-invalid, ...
    path: str          # a path in the store: blobs/…, links/…, or meta.git:<path in the tree>
    message: str       # what is wrong
    action: str        # what to do about it
    repaired: bool = False
    fix: tuple | None = field(default=None, repr=False)  # what --repair does, if it can

    def as_json(self) -> dict:
        return {"code": self.code, "path": self.path, "message": self.message, "action": self.action,
                "repairable": self.fix is not None, "repaired": self.repaired}


@dataclass
class Report:
    store: str
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("blobs", "bytes", "documents", "repositories", "manifests", "tags", "referrers"), 0))
    temporary_files: int = 0
    repair: bool = False

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"store": self.store, "clean": self.clean, "checked": self.checked,
                "temporaryFiles": self.temporary_files, "repair": self.repair,
                "repaired": sum(p.repaired for p in self.problems),
                "problems": [p.as_json() for p in self.problems]}

    def lines(self) -> list[str]:
        lines = []
        for problem in self.problems:
            lines.append(f"PROBLEM {problem.code}: {problem.path}")
            lines.append(f"    {problem.message}")
            lines.append(f"    → {problem.action}")
            if problem.repaired:
                lines.append("    repaired")
        c = self.checked
        summary = (f"fsck of {self.store}: checked {plural(c['blobs'], 'blob')} ({human_size(c['bytes'])}), "
                   f"{plural(c['documents'], 'document')}, {plural(c['repositories'], 'repository', 'repositories')} "
                   f"({plural(c['manifests'], 'manifest')}, {plural(c['tags'], 'tag')}, "
                   f"{plural(c['referrers'], 'referrer entry', 'referrer entries')})")
        if self.clean:
            lines.append(summary + ": no problems.")
        else:
            repaired = sum(p.repaired for p in self.problems)
            repairable = sum(p.fix is not None and not p.repaired for p in self.problems)
            lines.append(summary + f": {plural(len(self.problems), 'problem')}"
                         + (f", {repaired} repaired" if self.repair else "")
                         + (f"; `registry fsck --repair` can fix {repairable}" if repairable else "") + ".")
        if self.temporary_files:
            lines.append(f"{plural(self.temporary_files, 'temporary file')} of interrupted writes left in blobs/ "
                         "(`registry garbage-collect` removes them).")
        return lines


class Checker:
    def __init__(self, driver: StorageDriver, meta: MetaStore, context: Context, store: str = ""):
        self.driver = driver
        self.meta = meta
        self.context = context
        self.store = store
        self.report = Report(store)
        self.users: dict[str, list[str]] = {}   # blob digest -> the manifests (NAME@DIGEST) that need it
        self.moving: set[str] = set()           # where --repair moves misplaced documents to

    def run(self, repair: bool = False) -> Report:
        snapshot = self.meta.snapshot()
        self.check_documents(snapshot)
        for name in inventory.repositories(snapshot):
            self.check_repository(snapshot, name)
        self.check_blobs()
        if repair:
            self.report.repair = True
            self.repair()
        return self.report

    def problem(self, code: str, path: str, message: str, action: str, fix: tuple | None = None) -> None:
        self.report.problems.append(Problem(code, path, message, action, fix=fix))

    def _git_log(self, path: str) -> str:
        return f"git --git-dir {os.path.join(self.store, 'meta.git')} log -p -- {path}"

    # --- documents ------------------------------------------------------------------------------

    def check_documents(self, snapshot: Snapshot) -> None:
        if snapshot.root is None:
            return
        for path, blob in snapshot.read(lambda: list(_files(snapshot.root, ""))):
            self.report.checked["documents"] += 1
            try:
                document = load_blob(blob, path)
            except DocumentInvalid as e:
                self.problem("document-invalid", f"meta.git:{path}", str(e).removeprefix(f"{path}: "),
                             f"restore it from history ({self._git_log(path)}), or correct it in a clone "
                             "of meta.git and push that to main")
                continue
            expected = expected_kind(path)
            if expected is not None and document["kind"] != expected:
                self.problem("document-misplaced", f"meta.git:{path}",
                             f"a {document['kind']} document where a {expected} document belongs",
                             f"move or remove it in a clone of meta.git ({self._git_log(path)} tells who wrote it)")
            elif (place := _place(path, document)) is not None:
                kind = document["kind"]
                there = (f"; {place} holds a copy a later push wrote, so --repair removes this one"
                         if snapshot.exists(place) else "")
                self.problem(f"{kind}-misplaced", f"meta.git:{path}",
                             f"{_what(document)} belongs at {place} (a store from before the fanned-out "
                             f"layout of meta.git): the registry does not see it here{there}",
                             "`registry fsck --repair` moves it there",
                             fix=("move", _repository_of(path), path, place))
                self.moving.add(place)
            elif (mismatch := _name_mismatch(path, document)) is not None:
                self.problem("document-misplaced", f"meta.git:{path}", mismatch,
                             f"correct it in a clone of meta.git and push that to main ({self._git_log(path)})")

    # --- one repository's graph -----------------------------------------------------------------

    def check_repository(self, snapshot: Snapshot, name: str) -> None:
        checked = self.report.checked
        checked["repositories"] += 1
        graph = RepositoryGraph.read(snapshot, name)   # invalid documents were reported above
        try:
            repository = snapshot.get(meta_paths.repository(name))
        except DocumentInvalid:
            repository = {}
        if repository is None:
            path = meta_paths.repository(name)
            self.problem("repository-missing", f"meta.git:{path}",
                         f"{name} has manifests or tags but no repository document, so nobody may pull it",
                         f"restore it from history ({self._git_log(path)})")
        mirror = bool((repository or {}).get("upstream"))
        checked["manifests"] += len(graph.manifests)
        checked["tags"] += len(graph.tags)
        for digest, document in graph.manifests.items():
            self.check_manifest(snapshot, graph, digest, document, mirror)
        for tag, digest in graph.tags.items():
            if digest not in graph.manifests:
                path = graph.tag_paths[tag]
                self.problem("tag-dangling", f"meta.git:{path}",
                             f"tag {name}:{tag} points at {digest}, which is not a manifest of {name}",
                             "`registry fsck --repair` removes the tag; or push the image to the tag again",
                             fix=("delete-tag", name, path, digest))
        self.check_referrers(snapshot, graph)

    def check_manifest(self, snapshot: Snapshot, graph: RepositoryGraph, digest: str, document: dict,
                       mirror: bool) -> None:
        name = graph.name
        here = f"{name}@{digest}"
        self.users.setdefault(digest, []).append(here)
        if not mirror and not self.driver.exists(paths.blob_path(digest)):
            self.problem("blob-missing", paths.blob_path(digest), f"the bytes of manifest {here} are missing",
                         f"push the image again (its manifest is stored again), or delete the manifest "
                         f"(`registry delete HOST/{here}`)")
        parts = ([("config", document["config"])] if "config" in document else []) + \
            [("layer", layer) for layer in document.get("layers", ())]
        for role, descriptor in parts:
            if descriptor.get("urls"):
                continue  # a foreign layer: clients fetch it from its URLs
            blob = descriptor["digest"]
            self.users.setdefault(blob, []).append(here)
            if not self.driver.exists(paths.blob_path(blob)):
                if not mirror:
                    self.problem("blob-missing", paths.blob_path(blob),
                                 f"blob {blob}, the {role} of {here}, is missing",
                                 f"push the image again (the registry answers 404 for the blob, so the client "
                                 f"uploads it), or delete the manifest (`registry delete HOST/{here}`)")
            elif not self.driver.exists(paths.link_path(name, blob)):
                self.problem("link-missing", paths.link_path(name, blob),
                             f"blob {blob}, the {role} of {here}, is in the store but not linked into {name}, "
                             "so pulls of that image fail with BLOB_UNKNOWN",
                             "`registry fsck --repair` links it again", fix=("link", name, blob))
        for child in document.get("manifests", ()):
            if not mirror and child["digest"] not in graph.manifests:
                self.problem("manifest-child-missing", f"meta.git:{meta_paths.manifest(name, child['digest'])}",
                             f"index {here} lists manifest {child['digest']}, which is not a manifest of {name}",
                             "push the index again with its child manifests (`registry copy --all-platforms`), "
                             f"or delete the index (`registry delete HOST/{here}`)")
        subject = document.get("subject")
        if subject is not None:
            path = meta_paths.referrer(name, subject["digest"], digest)
            if not snapshot.exists(path) and path not in self.moving:
                entry = {"kind": "referrer", "schemaVersion": 1,
                         "descriptor": referrer_descriptor(digest, document["size"], parsed(document))}
                self.problem("referrer-missing", f"meta.git:{path}",
                             f"{here} has the subject {subject['digest']} but the referrers API does not list it",
                             "`registry fsck --repair` writes the entry from the manifest document",
                             fix=("put-referrer", name, path, digest, subject["digest"], entry))

    def check_referrers(self, snapshot: Snapshot, graph: RepositoryGraph) -> None:
        """Every entry of the referrers index, in its bucket or at an older place: the subject is
        the entry's folder, under `_referrers/<alg>/`."""
        name = graph.name
        folder = meta_paths.referrers_root(name)
        for algorithm in snapshot.tree(folder) or ():
            if not isinstance(algorithm, pygit2.Tree):
                continue
            for path, entry in inventory.files_below(algorithm, f"{folder}/{algorithm.name}/"):
                if not entry.name.endswith(".yaml") or path.count("/") == folder.count("/") + 2:
                    continue
                subject = f"{algorithm.name}:{path.rsplit('/', 2)[1]}"
                self.report.checked["referrers"] += 1
                wrong = referrer_entry_problem(snapshot, name, path, subject)
                if wrong is not None:
                    code, message = wrong
                    if code is None:
                        continue  # an invalid document: reported with the documents
                    self.problem(code, f"meta.git:{path}", message,
                                 "`registry fsck --repair` removes the entry",
                                 fix=("delete-referrer", name, path, subject))

    # --- blobs ----------------------------------------------------------------------------------

    def check_blobs(self) -> None:
        for stored in inventory.blob_files(self.driver):
            if stored.temporary:
                self.report.temporary_files += 1
                continue
            if stored.digest is None:
                self.problem("blob-misplaced", stored.path,
                             "a file in blobs/ that is not named by a digest in the folder of its first two digits",
                             "move it out of the store: it is never served")
                continue
            actual = hash_file(self.driver, stored.path, stored.digest.partition(":")[0])
            if actual == stored.digest:
                self.report.checked["blobs"] += 1
                self.report.checked["bytes"] += inventory.size(self.driver, stored.path)
                continue
            if not self.driver.exists(stored.path):
                continue  # removed while it was read (garbage collection)
            self.report.checked["blobs"] += 1
            users = self.users.get(stored.digest, [])
            used = (f"; used by {', '.join(users[:3])}" + (f" and {len(users) - 3} more" if len(users) > 3 else "")
                    if users else "; no manifest uses it")
            self.problem("blob-corrupt", stored.path,
                         f"the content of blob {stored.digest} has the digest {actual}{used}",
                         "move the file out of the store: the registry then answers 404 for it, and the next "
                         "push of an image that has it uploads it again")

    # --- repairs --------------------------------------------------------------------------------

    def repair(self) -> None:
        metadata: dict[str, list[Problem]] = {}
        for problem in self.report.problems:
            if problem.fix is None:
                continue
            if problem.fix[0] == "link":
                _, name, digest = problem.fix
                if self.driver.exists(paths.blob_path(digest)):
                    self.driver.put_content(paths.link_path(name, digest), b"")
                    problem.repaired = True
            else:
                metadata.setdefault(problem.fix[1], []).append(problem)
        for name, problems in metadata.items():
            self._repair_metadata(name, problems)

    def _repair_metadata(self, name: str, problems: list[Problem]) -> None:
        def plan(snapshot: Snapshot) -> list[int]:
            return [i for i, problem in enumerate(problems) if still_needed(snapshot, problem.fix)]

        def apply(txn: Transaction, planned: list[int]) -> None:
            moved = {}  # a misplaced tag or referrer that is also dangling is moved first, then removed there
            for i in planned:
                fix = problems[i].fix
                if fix[0] == "put-referrer":
                    txn.put(fix[2], fix[5])
                elif fix[0] == "move":
                    if not txn.exists(fix[3]):  # else a later push wrote it there: that copy stays
                        txn.put(fix[3], txn.get(fix[2]))
                        moved[fix[2]] = fix[3]
                    txn.delete(fix[2])
                else:
                    txn.delete(moved.get(fix[2], fix[2]))

        def message(planned: list[int]) -> str:
            lines = []
            for i in planned:
                fix, problem = problems[i].fix, problems[i]
                verb = {"put-referrer": "Write", "move": f"Move to {fix[3]}"}.get(fix[0], "Remove")
                lines.append(f"- {verb} {fix[2]}: {problem.message}\n")
            return f"Repair {name} (registry fsck --repair)\n\n" + "".join(lines)

        for i in inventory.commit_planned(self.meta, self.context, plan, apply, message):
            problems[i].repaired = True


def still_needed(snapshot: Snapshot, fix: tuple) -> bool:
    """Whether a metadata repair is still to be made on `snapshot` (another writer may have made it moot)."""
    kind, name, path = fix[:3]
    try:
        if kind == "delete-tag":
            tag = snapshot.get(path)
            return (tag is not None and tag["digest"] == fix[3]
                    and manifest_document(snapshot, name, fix[3]) is None)
        if kind == "move":  # moved already if it is gone
            return snapshot.exists(path)
        if kind == "delete-referrer":
            wrong = referrer_entry_problem(snapshot, name, path, fix[3])
            return wrong is not None and wrong[0] is not None
        if kind == "put-referrer":
            manifest = manifest_document(snapshot, name, fix[3])
            return (not snapshot.exists(path) and manifest is not None
                    and (manifest.get("subject") or {}).get("digest") == fix[4])
    except DocumentInvalid:
        return False
    return False


def referrer_entry_problem(snapshot: Snapshot, name: str, path: str, subject: str) -> tuple | None:
    """(code, message) when the referrers-index entry at `path` is wrong; (None, …) when it is an
    invalid document; None when it is right."""
    stem = path.rsplit("/", 1)[1][:-len(".yaml")]
    algorithm, _, encoded = stem.partition("-")
    digest = f"{algorithm}:{encoded}"
    try:
        entry = snapshot.get(path)
        manifest = manifest_document(snapshot, name, digest)
    except DocumentInvalid as e:
        return None, str(e)
    if entry is None:
        return None
    if entry["descriptor"]["digest"] != digest:
        return "referrer-mismatch", (f"the entry is named for {digest} but describes "
                                     f"{entry['descriptor']['digest']}")
    if manifest is None:
        return "referrer-dangling", f"the referrers of {subject} list {digest}, which is not a manifest of {name}"
    actual = (manifest.get("subject") or {}).get("digest")
    if actual != subject:
        return "referrer-mismatch", (f"the referrers of {subject} list {digest}, whose subject is "
                                     f"{actual or 'none'}")
    return None


def manifest_document(snapshot: Snapshot, name: str, digest: str) -> dict | None:
    """A repository's manifest document: in its bucket, or where a store from before the buckets
    kept it (`_manifests/<alg>/<hex>.yaml`, moved by --repair), so repairs made in the same run do
    not take a manifest that is only misplaced for a missing one."""
    document = snapshot.get(meta_paths.manifest(name, digest))
    if document is None:
        algorithm, _, encoded = digest.partition(":")
        document = snapshot.get(f"{meta_paths.manifests_dir(name)}/{algorithm}/{encoded}.yaml")
    return document


def parsed(document: dict) -> ParsedManifest:
    """The parts of a manifest document that the referrers API describes."""
    return ParsedManifest(media_type=document["mediaType"], config=document.get("config"),
                          layers=document.get("layers", []), manifests=document.get("manifests", []),
                          subject=document.get("subject"), artifact_type=document.get("artifactType"),
                          annotations=document.get("annotations"))


def expected_kind(path: str) -> str | None:
    """The kind of document that belongs at `path` (meta/paths.py), or None for a place with no rule."""
    parts = path.split("/")
    if parts[0] == "users":
        if len(parts) == 2:
            return "user"
        if len(parts) == 4 and parts[2] == "tokens":
            return "token"
    elif parts[0] == "orgs" and len(parts) == 2:
        return "org"
    elif parts[0] == meta_paths.REPOSITORIES:
        for part in parts[1:]:
            if part.startswith("_"):
                return _REPOSITORY_KINDS.get(part)
    return None


def _place(path: str, document: dict) -> str | None:
    """Where a tag, manifest or referrer document that sits in its kind's folder under its own
    name, but not in its bucket, belongs; None if it is there (or has another name: see
    _name_mismatch)."""
    kind, parts = document["kind"], path.split("/")
    name = _repository_of(path)
    if kind == "tag" and parts[-1] == f"{document['name']}.yaml":
        place = meta_paths.tag(name, document["name"])
    elif kind == "manifest" and _under(parts, "_manifests") == document["digest"].partition(":")[0] \
            and parts[-1] == f"{document['digest'].partition(':')[2]}.yaml":
        place = meta_paths.manifest(name, document["digest"])
    elif kind == "referrer" and parts[-1] == f"{document['descriptor']['digest'].replace(':', '-', 1)}.yaml" \
            and "_referrers" in parts[:-3]:
        subject = f"{_under(parts, '_referrers')}:{parts[-2]}"
        place = meta_paths.referrer(name, subject, document["descriptor"]["digest"])
    else:
        return None
    return None if path == place else place


def _under(parts: list[str], folder: str) -> str | None:
    """The name of the folder just below `folder` in a path (the algorithm below `_manifests`)."""
    if folder not in parts[:-2]:
        return None
    return parts[parts.index(folder) + 1]


def _what(document: dict) -> str:
    if document["kind"] == "tag":
        return f"tag {document['name']}"
    if document["kind"] == "manifest":
        return f"the manifest document of {document['digest']}"
    return f"the referrers entry of {document['descriptor']['digest']}"


def _repository_of(path: str) -> str:
    return path[len(meta_paths.REPOSITORIES) + 1:].split("/_", 1)[0]


def _name_mismatch(path: str, document: dict) -> str | None:
    """What is wrong when a document's own name or digest differs from the one its path gives."""
    parts = path.split("/")
    stem = parts[-1][:-len(".yaml")] if parts[-1].endswith(".yaml") else parts[-1]
    kind = document["kind"]
    if kind == "manifest":
        named = f"{_under(parts, '_manifests')}:{stem}"
        if document["digest"] != named:
            return f"the manifest document of {named} says it describes {document['digest']}"
    elif kind == "tag" and document["name"] != stem:
        return f"the document of tag {stem} says it is tag {document['name']}"
    elif kind == "repository" and parts[-1] == meta_paths.REPOSITORY_DOC:
        named = "/".join(parts[1:-1])
        if document["name"] != named:
            return f"the repository document of {named} says it is {document['name']}"
    return None


def _files(tree: pygit2.Tree, prefix: str):
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if isinstance(entry, pygit2.Tree):
            yield from _files(entry, path + "/")
        elif isinstance(entry, pygit2.Blob):
            yield path, entry
