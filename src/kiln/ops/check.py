"""``kiln system check [--repair] [--quick]``: verify the store and remove what is safe.

What is checked (``kiln.store.check``, ``kiln.snapshot.upkeep``, ``kiln.ops.leftovers``):

- every blob: its digest (not with ``quick``) and its size against every descriptor;
- every image: manifest, config and layers present and consistent (chain IDs from the
  config's diff IDs); every manifest list: its document and every child's blobs;
- every unpacked layer, in full (not with ``quick``): its layer blob is decompressed once,
  its digest compared with the layer's diff ID, and every entry compared with the layer's
  directory (``kiln.snapshot.verify``); a flat layer of the copy driver is not verifiable;
- leftovers of killed processes: running RUN containers and bundles (and runc containers
  of kiln's with no bundle), working containers
  of dead builds, scratch directories, active snapshots nobody holds or names, unrecorded
  snapshot directories and ``tmp/`` work, what is mounted in any of them, ingests nobody
  is writing, and leases of dead processes or expired;
- the database (integrity and foreign keys).

With ``repair``: leftovers are removed; a corrupt blob is deleted; a damaged image or
manifest list is removed (not an image a working container uses, unless ``force``: then
the container goes too); a damaged unpacked layer is removed with the layers above it, so
its next use unpacks it again (not while a working container rests on it). What cannot be
repaired (the database) is reported. The report lists each finding and what was done.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import TYPE_CHECKING, Any

from kiln.archive.compression import open_decompressed
from kiln.container import Builder
from kiln.errors import Conflict, KilnError, NotFound
from kiln.oci import Digest
from kiln.ops.leftovers import find_leftovers, remove_leftovers
from kiln.runtime.leftovers import stray_containers
from kiln.snapshot.usage import tree_size
from kiln.store.check import (
    check_content,
    delete_corrupt_blob,
    remove_damaged_image,
    remove_damaged_list,
)
from kiln.store.ingest import remove_stale_ingests
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.ops.context import Context

__all__ = ["CheckReport", "Finding", "check"]

REMOVED = "removed"


@dataclass
class Finding:
    kind: str  # blob, image, manifest-list, layer, snapshot, directory, mount, run, container,
    # scratch, ingest, lease, database
    subject: str
    problem: str
    action: str = ""  # what repair did: "removed", or why it was left ("left: ...")
    bytes: int = 0

    @property
    def fixed(self) -> bool:
        return self.action.startswith(REMOVED) or self.action == "unmounted"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "problem": self.problem,
                "action": self.action, "bytes": self.bytes}  # fmt: skip


@dataclass
class CheckReport:
    quick: bool
    repair: bool
    checked: dict[str, int] = field(default_factory=dict)
    snapshot_check: str = "full"  # "full" or "skipped (--quick)"
    findings: list[Finding] = field(default_factory=list)
    bytes_freed: int = 0  # everything repair removed: findings' bytes and leftover_bytes
    leftover_bytes: int = 0  # the scratch and snapshot directories of leftovers

    @property
    def problems(self) -> list[Finding]:
        """What is still wrong (everything, without repair)."""
        return [f for f in self.findings if not f.fixed]

    @property
    def removed(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.findings:
            if f.fixed:
                counts[f.kind] = counts.get(f.kind, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """kiln's own report, with podman's ``SystemCheckReport`` keys beside it."""
        by = lambda kind: {f.subject: [f.problem] for f in self.findings if f.kind == kind}  # noqa: E731
        return {
            "Errors": bool(self.findings),
            "Images": by("image"),
            "Layers": by("layer"),
            "Containers": by("container"),
            "RemovedImages": {
                f.subject: [] for f in self.findings if f.kind == "image" and f.fixed
            },  # fmt: skip
            "RemovedContainers": {
                f.subject: "" for f in self.findings if f.kind == "container" and f.fixed
            },  # fmt: skip
            "RemovedLayers": [f.subject for f in self.findings if f.kind == "layer" and f.fixed],
            "quick": self.quick,
            "repair": self.repair,
            "snapshot_check": self.snapshot_check,
            "checked": dict(self.checked),
            "findings": [f.to_json() for f in self.findings],
            "removed": self.removed,
            "bytes_freed": self.bytes_freed,
            "clean": not self.problems,
        }


def check(ctx: Context, *, repair: bool = False, quick: bool = False,
          force: bool = False) -> CheckReport:  # fmt: skip
    """Check the store (see the module); with ``repair`` remove what is safe."""
    report = CheckReport(quick=quick, repair=repair)
    report.snapshot_check = "skipped (--quick)" if quick else "full"
    _leftovers(ctx, report)
    _content(ctx, report, force)
    _ingests(ctx, report)
    if not quick:
        _layers(ctx, report)
    report.bytes_freed = report.leftover_bytes + sum(f.bytes for f in report.findings if f.fixed)
    return report


# leftovers of killed processes --------------------------------------------------------


def _leftovers(ctx: Context, report: CheckReport) -> None:
    found = find_leftovers(ctx, deep=True)
    done = remove_leftovers(ctx, found) if report.repair and found.count() else None
    snaps, done_snaps = found.snapshots, done.snapshots if done else None

    def add(kind: str, items: list[str], problem: str, removed: list[str] | None) -> None:
        for item in items:
            action = REMOVED if removed is not None and item in removed else ""
            if report.repair and not action:
                action = "left: in use again, or could not be removed"
            report.findings.append(Finding(kind, item, problem, action))

    add("run", found.runs, "a RUN container of a killed kiln (stopped and its bundle removed)",
        done.runs if done else None)  # fmt: skip

    root = ctx.store.root  # only this store's (the runtime directory is every store's)
    strays = stray_containers(dry_run=True, store_root=root)
    add("run", strays, "a RUN container under runc with no bundle (killed and deleted)",
        stray_containers(store_root=root) if report.repair and strays else None)  # fmt: skip
    add("container", found.builds, "the working container of a killed build",
        done.builds if done else None)  # fmt: skip
    add("scratch", found.scratch_dirs, "the scratch directory of a killed kiln",
        done.scratch_dirs if done else None)  # fmt: skip
    add("snapshot", snaps.orphans, "an active snapshot no container names and no process holds",
        done_snaps.orphans if done_snaps else None)  # fmt: skip
    add("directory", snaps.unrecorded, "a snapshot directory no record names",
        done_snaps.unrecorded if done_snaps else None)  # fmt: skip
    add("directory", snaps.scratch, "unfinished snapshot work",
        done_snaps.scratch if done_snaps else None)  # fmt: skip
    add("mount", sorted(set(found.mounts)), "mounted inside a leftover",
        (done.mounts if done else None))  # fmt: skip
    gone = {lease.id for lease in done.leases} if done else None
    for lease in found.leases:
        why = "its owner process is gone" if not lease.alive else "it has expired"
        action = ""
        if gone is not None:
            action = REMOVED if lease.id in gone else "left: released meanwhile"
        report.findings.append(Finding("lease", lease.id, f"a lease nothing will release: {why} "
                                       f"(holds {lease.images} image(s), {lease.blobs} blob(s))",
                                       action))  # fmt: skip
    for f in report.findings:
        if f.kind == "mount" and f.action == REMOVED:
            f.action = "unmounted"
    if done is not None:  # measured per directory, reported as one sum
        report.leftover_bytes = done.bytes


# blobs, images, lists, database -------------------------------------------------------


def _content(ctx: Context, report: CheckReport, force: bool) -> None:
    store = ctx.store
    found = check_content(store, quick=report.quick)
    report.checked.update(blobs=found.blobs_checked, images=found.images_checked,
                          manifest_lists=found.lists_checked)  # fmt: skip
    for blob in found.blobs:
        f = Finding("blob", blob.digest, blob.problem)
        if report.repair:
            gone = delete_corrupt_blob(store, blob)
            f.action, f.bytes = (REMOVED, blob.size) if gone else ("left: replaced meanwhile", 0)
        report.findings.append(f)
    for list_id, problems in sorted(found.lists.items()):
        f = Finding("manifest-list", list_id, "; ".join(problems))
        if report.repair:
            try:
                names = remove_damaged_list(store, list_id)
                f.action = REMOVED + (f" ({', '.join(names)}: create it again)" if names else "")
            except NotFound:
                f.action = REMOVED
        report.findings.append(f)
    for image_id, problems in sorted(found.images.items()):
        f = Finding("image", image_id, "; ".join(problems))
        if report.repair:
            f.action = _remove_image(ctx, image_id, force)
        report.findings.append(f)
    for problem in found.database:
        report.findings.append(Finding("database", os.path.join(store.root, "kiln.db"), problem,
                                       "left: restore the store or remove it" if report.repair
                                       else ""))  # fmt: skip


def _remove_image(ctx: Context, image_id: str, force: bool) -> str:
    users = ctx.store.containers_using(image_id)
    if users and not force:
        return f"left: in use by container {users[0].name} (--force removes it too)"
    for c in users:
        try:
            Builder.load(ctx, c.id).delete()
        except KilnError:
            return f"left: cannot remove container {c.name}"
    try:
        names = remove_damaged_image(ctx.store, image_id)
    except NotFound:
        return REMOVED
    except Conflict as exc:
        return f"left: {exc}"
    return REMOVED + (f" ({', '.join(names)}: pull or build it again)" if names else "")


def _ingests(ctx: Context, report: CheckReport) -> None:
    count, size = remove_stale_ingests(ctx.store.root, 0.0, dry_run=True)
    if not count:
        return
    f = Finding("ingest", os.path.join(ctx.store.root, "ingest"),
                f"{count} unfinished blob write(s) of a killed command (a pull, build or load)")  # fmt: skip
    if report.repair:
        done, freed = remove_stale_ingests(ctx.store.root, 0.0)
        f.action, f.bytes = (REMOVED, freed) if done else ("left: being written again", 0)
    report.findings.append(f)


# unpacked layers ----------------------------------------------------------------------


def _layers(ctx: Context, report: CheckReport) -> None:
    snaps = ctx.snapshots
    store = ctx.store
    verified = skipped = 0
    damaged: list[tuple[str, str]] = []
    for row in snaps.layer_rows():
        if row.flat:
            skipped += 1  # the copy driver's whole tree: no layer tar to compare with
            continue
        blob, diff_id = _layer_blob(store, row.chain_id)
        if blob is None:
            skipped += 1  # no image uses it any more: GC removes it
            continue
        try:
            with store.open_blob(Digest.parse(blob)) as raw, open_decompressed(raw) as tar:
                verdict = snaps.verify_layer(row, tar)
        except (KilnError, OSError, EOFError, ValueError):
            skipped += 1  # an unreadable blob: the blob check reports it
            continue
        verified += 1
        if verdict.diff_id and verdict.diff_id != diff_id:
            continue  # the blob itself is wrong: the blob check reports it
        if verdict.problems:
            damaged.append((row.chain_id, "; ".join(verdict.problems)))
    report.checked.update(layers_verified=verified, layers_not_verifiable=skipped)
    for chain_id, problem in damaged:
        f = Finding("layer", chain_id, f"the unpacked layer does not match its diff ID: {problem}")
        if report.repair:
            f.action, f.bytes = _remove_layer(snaps, chain_id)
        report.findings.append(f)


def _layer_blob(store: Any, chain_id: str) -> tuple[str | None, str]:
    """A present blob of the layer ``chain_id`` and its diff ID (None: no image has one)."""

    try:
        layer = store.get_layer(chain_id)
    except NotFound:
        return None, ""
    candidates = [layer.blob_digest]
    for image_id in store.images_using_layer(chain_id):
        rec = store.get_image(image_id)
        if chain_id in rec.layers and len(rec.layer_blobs) == len(rec.layers):
            candidates.append(rec.layer_blobs[rec.layers.index(chain_id)])
    for blob in dict.fromkeys(candidates):
        if blob and store.has_blob(Digest.parse(blob)):
            return blob, layer.diff_id
    return None, layer.diff_id


def _remove_layer(snaps: Any, chain_id: str) -> tuple[str, int]:
    doomed = snaps.layers_above(chain_id)
    resting = snaps.active_on(doomed)
    if resting:
        return f"left: working container snapshot {resting[0]} rests on it (remove it first)", 0
    freed = 0
    for chain in doomed:  # top first
        try:
            path = os.path.dirname(snaps.layer_dirs(chain)[0])
            size = tree_size(path)
            snaps.remove_layer(chain)
            freed += size
        except NotFound:
            continue
        except Conflict as exc:
            return f"left: {exc}", freed
    return REMOVED, freed
