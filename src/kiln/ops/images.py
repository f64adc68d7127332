"""Image-store use cases: list, inspect, history, exists, tag, untag, rmi, prune, tree, diff.

Each is a plain function ``(ctx, ...) -> plain result`` over the store in ``ctx``;
they never print. Semantics and error texts follow podman where users rely on them:

- removing one name of a multi-named image only untags it;
- removing by ID an image that has several names needs ``force``;
- an image used by a working container is refused unless ``force``, which removes
  those containers too; a running build's container is never removed (refused even
  with ``force``: it would vanish from under the build);
- an image with child images is deleted as podman deletes it, its data staying for
  them (reported untagged, not deleted); with ``docker`` (the Docker API) as dockerd
  refuses it: by ID never (``force`` does not change that), by its last name only
  untagged, left as an untagged intermediate image;
- deleting an image deletes its parent too when that is left dangling (no name, no
  child), and so on down, as podman and dockerd do (``prune_parents``; Docker's
  ``noprune`` turns it off).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kiln.errors import Conflict, InvalidArgument, KilnError, NotFound
from kiln.oci import Digest, ImageConfig, Reference
from kiln.oci import media_types as mt
from kiln.oci.reference import local_name, match_name
from kiln.oci.strict_json import MAX_CONFIG_BYTES
from kiln.ops import image_events
from kiln.ops.context import sweep_leftovers
from kiln.ops.timefmt import parse_time, parse_timestamp
from kiln.store import IndexRecord
from kiln.util.gc_pause import cyclic_gc_paused
from kiln.util.lazy_dataclass import dataclass
from kiln.util.process_owner import is_alive

if TYPE_CHECKING:
    from kiln.oci import ImageConfig
    from kiln.ops.context import Context
    from kiln.store import ImageRecord

NONE = "<none>"


# --- listing -----------------------------------------------------------------


@dataclass
class ImageSummary:
    """One image as ``kiln images`` shows it."""

    id: str  # "sha256:<hex>"
    names: list[str]
    repo_digests: list[str]
    digest: str  # manifest digest
    created: str  # RFC 3339
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    containers: int = 0
    parent_id: str = ""
    has_children: bool = False
    is_list: bool = False  # a manifest list / image index (kiln.ops.manifests)
    in_list: bool = False  # an unnamed image a stored list names: shown and kept with it

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def dangling(self) -> bool:
        return not self.names and not self.has_children and not self.in_list

    @property
    def intermediate(self) -> bool:
        return not self.names and (self.has_children or self.in_list)

    @cached_property
    def created_ts(self) -> float:  # a list sorts, filters and shows by it: parsed once
        return parse_time(self.created) or 0.0

    def repo_tags(self) -> list[tuple[str, str]]:
        """(repository, tag) pairs, one per name; ``(<none>, <none>)`` when unnamed."""
        if not self.names:
            return [(NONE, NONE)]
        return [split_name(n) for n in self.names]

    def to_json(self) -> dict[str, Any]:
        """The object ``podman images --format json`` prints for an image."""
        return {
            "Id": self.id.removeprefix("sha256:"),
            "ParentId": self.parent_id.removeprefix("sha256:"),
            "RepoTags": list(self.names) or None,
            "RepoDigests": list(self.repo_digests),
            "Size": self.size,
            "SharedSize": 0,
            "VirtualSize": self.size,
            "Labels": dict(self.labels) or None,
            "Containers": self.containers,
            "Names": list(self.names),
            "Digest": self.digest,
            "Dangling": self.dangling,
            "Created": int(self.created_ts),
            "CreatedAt": self.created,
            "IsManifestList": self.is_list,
        }


def podman_repo_digests(names: Iterable[str], stored: Iterable[str], digest: str) -> list[str]:
    """RepoDigests as podman shows them: the digests recorded from registries, then each
    name's repository at the image's manifest digest (``localhost/app@sha256:...``), which
    podman lists for a built or loaded image too (dockerd, and the Docker API, only the
    former)."""
    made = [f"{split_name(n)[0]}@{digest}" for n in names] if digest else []
    return list(dict.fromkeys([*stored, *made]))


def split_name(name: str) -> tuple[str, str]:
    """``docker.io/library/a:1`` -> (``docker.io/library/a``, ``1``); digests -> tag <none>."""
    repo, at, _digest = name.partition("@")
    slash, colon = repo.rfind("/"), repo.rfind(":")
    if colon > slash:
        return repo[:colon], repo[colon + 1 :]
    return repo, NONE


_FILTER_KEYS = (
    "dangling",
    "label",
    "label!",
    "reference",
    "before",
    "since",
    "until",
    "id",
    "intermediate",
    "after",
    "containers",
    "readonly",
)


def list_images(
    ctx: Context,
    all: bool = False,
    filters: Iterable[str] = (),
    references: Iterable[str] = (),
) -> list[ImageSummary]:
    """Images in the store, newest first.

    Intermediate images (unnamed images that other images build on) are left out
    unless ``all``. ``filters`` are podman's ``--filter`` strings: ``dangling=true|false``,
    ``label=KEY[=VALUE]``, ``label!=KEY[=VALUE]`` (images without that label),
    ``reference=GLOB``, ``before=IMAGE``, ``since=IMAGE``, ``until=TIME`` (created before
    TIME: epoch seconds, RFC 3339, a date, or a duration ago such as ``24h``),
    ``id=PREFIX``, ``intermediate=true|false``, and podman's ``after=IMAGE`` (``since``),
    ``containers=true|false`` (used by a working container or not) and ``readonly=true|false``
    (kiln has no read-only additional stores: every image is writable). ``references`` are extra reference globs
    (``kiln images busybox``).
    """
    parsed = _parse_filters(ctx, filters)
    refs = [*parsed.pop("reference", []), *references]
    with cyclic_gc_paused():  # thousands of objects, no cycles among them
        records = ctx.store.list_images(blobs=False)
        summaries = summarize(ctx, records) + list_summaries(ctx)
    out = []
    for s in summaries:
        if not all and s.intermediate and "intermediate" not in parsed:
            continue
        if refs and not any(reference_matches(s.names, pattern) for pattern in refs):
            continue
        if not _matches(s, parsed):
            continue
        out.append(s)
    out.sort(key=lambda s: (s.created_ts, s.id), reverse=True)
    return out


def summarize(
    ctx: Context, records: Sequence[ImageRecord], labels: bool = True
) -> list[ImageSummary]:
    """Summaries of ``records``, with parent/child links worked out among the store's images.

    Labels come from the image rows; an image stored before the store kept them has its
    config read once (with ``labels``) and its labels recorded for the next listing.

    Parents and children follow podman's rule (``kiln.store.lineage``: the child's layers
    extend the parent's by at most one and its history extends the parent's), the same
    rule as ``image inspect``'s ``Parent``, answered from the store's index columns in one
    query: no config is read.
    """
    known = _record_labels(ctx, records) if labels else {}
    parents, with_children = ctx.store.parent_links()
    listed = {d for i in ctx.store.list_indexes() for d in i.manifests}
    containers: dict[str, int] = {}
    for c in ctx.store.list_containers():
        if c.image_id:
            containers[c.image_id] = containers.get(c.image_id, 0) + 1
    return [
        ImageSummary(
            id=r.id,
            names=list(r.names),
            repo_digests=list(r.repo_digests),
            digest=r.manifest_digest,
            created=r.created,
            size=r.size,
            labels=known.get(r.id) or dict(r.labels or {}),
            containers=containers.get(r.id, 0),
            parent_id=parents.get(r.id, ""),
            has_children=r.id in with_children,
            in_list=r.manifest_digest in listed,
        )
        for r in records
    ]


def list_summaries(ctx: Context) -> list[ImageSummary]:
    """One row per stored manifest list (as podman shows a list: once, its size the
    document's)."""
    return [
        ImageSummary(
            id=r.id,
            names=list(r.names),
            repo_digests=[],
            digest=r.digest,
            created=r.created,
            size=r.size,
            is_list=True,
        )
        for r in ctx.store.list_indexes()
    ]


def reference_matches(names: Iterable[str], pattern: str) -> bool:
    """Does any name match ``pattern`` (podman's ``reference=`` filter)?

    A pattern without a tag matches the repository; familiar forms
    (``busybox``, ``library/busybox``) match ``docker.io/library/busybox``.
    """
    slash, colon = pattern.rfind("/"), pattern.rfind(":")
    has_tag = colon > slash or "@" in pattern
    for name in names:
        for form in _name_forms(name):
            target = form if has_tag else split_name(form)[0]
            if fnmatch.fnmatchcase(target, pattern):
                return True
    return False


def _name_forms(name: str) -> list[str]:
    forms = [name]
    if name.startswith("docker.io/"):
        short = name[len("docker.io/") :]
        forms.append(short)
        if short.startswith("library/"):
            forms.append(short[len("library/") :])
    elif name.startswith("localhost/"):
        forms.append(name[len("localhost/") :])
    return forms


def _parse_filters(ctx: Context, filters: Iterable[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _FILTER_KEYS:
            raise InvalidArgument(
                f'unsupported image filter "{key}": use KEY=VALUE with KEY one of '
                + ", ".join(_FILTER_KEYS)
            )
        if key == "after":
            key = "since"
        if key in ("dangling", "intermediate", "containers", "readonly"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f'invalid filter "{item}": the value must be true or false')
            out.setdefault(key, []).append(value.lower() in ("true", "1"))
        elif key in ("before", "since"):
            rec = ctx.store.resolve_image(value)
            out.setdefault(key, []).append(parse_time(rec.created) or 0.0)
        elif key == "until":
            ts = parse_timestamp(value)
            if ts is None:
                raise InvalidArgument(
                    f'invalid filter "{item}": give a time as epoch seconds, RFC 3339 '
                    "(2024-01-02T03:04:05Z), a date (2024-01-02) or a duration ago (24h, 90m)"
                )
            out.setdefault(key, []).append(ts)
        elif key in ("label", "label!"):
            k, has_value, v = value.partition("=")
            out.setdefault(key, []).append((k, v if has_value else None))
        else:
            out.setdefault(key, []).append(value)
    return out


def _matches(s: ImageSummary, filters: dict[str, list]) -> bool:
    for want in filters.get("dangling", []):
        if s.dangling != want:
            return False
    for want in filters.get("intermediate", []):
        if s.intermediate != want:
            return False
    for want in filters.get("containers", []):
        if (s.containers > 0) != want:
            return False
    if any(filters.get("readonly", [])):  # no image of kiln's is read-only
        return False
    for k, v in filters.get("label", []):
        if k not in s.labels or (v is not None and s.labels[k] != v):
            return False
    for k, v in filters.get("label!", []):
        if k in s.labels and (v is None or s.labels[k] == v):
            return False
    for ts in filters.get("until", []):
        if not s.created_ts < ts:
            return False
    for ts in filters.get("before", []):
        if not s.created_ts < ts:
            return False
    for ts in filters.get("since", []):
        if not s.created_ts > ts:
            return False
    ids = filters.get("id", [])
    return not ids or any(
        s.id.removeprefix("sha256:").startswith(i.removeprefix("sha256:")) for i in ids
    )


def image_config(ctx: Context, rec: ImageRecord) -> ImageConfig:
    with ctx.store.open_blob(Digest.parse(rec.config_digest)) as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidArgument(f"image {rec.id}: config is larger than {MAX_CONFIG_BYTES} bytes")
    return ImageConfig.parse(raw)


def _record_labels(ctx: Context, records: Sequence[ImageRecord]) -> dict[str, dict[str, str]]:
    """Labels of the images whose rows lack them, read from their configs and recorded."""
    found: dict[str, dict[str, str]] = {}
    for r in records:
        if r.labels is None:
            try:
                found[r.id] = dict(image_config(ctx, r).config.labels or {})
            except (NotFound, InvalidArgument):
                continue
    if found:
        with contextlib.suppress(Exception):  # best effort: a read-only or busy store still lists
            ctx.store.set_image_labels(found)
    return found


# --- single images ------------------------------------------------------------


def image_exists(ctx: Context, name: str) -> bool:
    """``kiln image exists``: whether ``name`` (a name, an ID or an ID's prefix) is an image
    in the store; a name that is no valid reference is ``InvalidArgument``."""
    return image_id_of(ctx, name) is not None


def image_id_of(ctx: Context, name: str) -> str | None:
    """The ID of the image ``name`` names; None when it names none."""
    try:
        return ctx.store.resolve_image(name).id
    except NotFound:
        return None


def repository_names(ctx: Context, repository: str) -> list[str]:
    """The names in the store of ``repository`` (a full one: ``docker.io/library/app``),
    sorted: what ``docker push --all-tags`` pushes."""
    records = ctx.store.list_images(blobs=False)
    return sorted(n for r in records for n in r.names if split_name(n)[0] == repository)


def inspect_image(ctx: Context, name: str, container_config: bool = False) -> dict[str, Any]:
    """The object ``podman image inspect`` prints for one image (with ``container_config``,
    Docker's ``Container`` and ``ContainerConfig`` too: ``kiln.image.inspect``)."""
    # start-up: kiln images loads no image layer
    from kiln.image.inspect import inspect_image as _inspect

    return _inspect(ctx.store, name, container_config)


def podman_comment(data: dict[str, Any]) -> str:
    """``Comment`` as podman's inspect shows it for the inspect object ``data``: an OCI
    image's is its first history entry's (an OCI config has no comment; podman import's
    message is there), a Docker image's its config's."""
    history = data.get("History") or []
    if data.get("ManifestType") == mt.OCI_MANIFEST and history and isinstance(history[0], dict):
        return str(history[0].get("comment") or "")
    return str(data.get("Comment") or "")


@dataclass(frozen=True)
class HistoryEntry:
    id: str  # image ID for the top entry, else "<missing>"
    created: str
    created_by: str
    size: int
    comment: str
    tags: list[str] = field(default_factory=list)
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        """As ``podman history --format json`` prints an entry."""
        return {
            "id": self.id.removeprefix("sha256:"),
            "created": self.created,
            "CreatedBy": self.created_by,
            "size": self.size,
            "comment": self.comment,
            "tags": list(self.tags) or None,
        }


def history(ctx: Context, name: str) -> list[HistoryEntry]:
    """The image's history, newest first, with each layer's uncompressed size."""
    from kiln.image.history import image_history  # start-up, as above

    return [_history_entry(h) for h in image_history(ctx.store, name)]


def _history_entry(h: Any) -> HistoryEntry:
    if isinstance(h, HistoryEntry):
        return h
    get = h.get if isinstance(h, dict) else lambda k, d=None: getattr(h, k, d)
    return HistoryEntry(
        id=get("id", "") or "<missing>",
        created=get("created", "") or "",
        created_by=get("created_by", "") or "",
        size=int(get("size", 0) or 0),
        comment=get("comment", "") or "",
        tags=list(get("tags", None) or []),
        empty_layer=bool(get("empty_layer", False)),
    )


def tree(ctx: Context, name: str, what_requires: bool = False) -> str:
    """The text ``podman image tree`` prints."""
    from kiln.image.tree import image_tree  # start-up, as above

    return image_tree(ctx.store, name, what_requires=what_requires)


def diff(ctx: Context, a: str, b: str | None = None) -> list[tuple[str, str]]:
    """Changes of image ``a`` against ``b`` (default: its parent): (``A``|``C``|``D``, path)."""
    from kiln.image.diff import image_diff  # start-up, as above

    return [(str(kind), str(path)) for kind, path in image_diff(ctx.store, ctx.snapshots, a, b)]


# --- names --------------------------------------------------------------------


def tag(ctx: Context, source: str, *targets: str) -> str:
    """Add ``targets`` as names of ``source``; returns the image ID.

    A name that pointed at another image moves; that image may become dangling.
    """

    if not targets:
        raise InvalidArgument("at least one target name is required")
    refs = []
    for t in targets:
        ref = Reference.parse(local_name(t))
        if ref.digest:
            raise InvalidArgument(f'"{t}": a tag cannot contain a digest; give NAME[:TAG]')
        refs.append(str(ref))

    rec = ctx.store.resolve(source)
    put_name = ctx.store.tag_index if isinstance(rec, IndexRecord) else ctx.store.tag
    with ctx.store.transaction():
        for name in refs:
            put_name(name, rec.id)  # a manifest list is tagged as podman tags one
    for name in refs:
        image_events.record(ctx, "tag", rec.id, name)
    return rec.id


def untag(ctx: Context, image: str, *names: str) -> list[str]:
    """Remove ``names`` from ``image`` (all names when none given); returns the removed names."""

    rec = ctx.store.resolve(image)
    if isinstance(rec, IndexRecord):  # a list's own names, never its image's
        return _untag_list(ctx, rec, names)
    current = ctx.store.names_of(rec.id)
    if not names:
        wanted = list(current)
    else:
        wanted = []
        for n in names:
            match = match_name(n, current)
            if match is None:
                raise NotFound(
                    f"{n}: tag not known for image {rec.id.removeprefix('sha256:')[:12]}"
                )
            wanted.append(match)
    with ctx.store.transaction():
        for n in wanted:
            ctx.store.untag(n)
    image_events.record_removal(ctx, wanted, (), dict.fromkeys(wanted, rec.id))
    return wanted


def _untag_list(ctx: Context, rec: Any, names: Sequence[str]) -> list[str]:
    wanted = []
    for n in names or rec.names:
        match = match_name(n, rec.names)
        if match is None:
            raise NotFound(f"{n}: tag not known for manifest list {rec.id[7:19]}")
        wanted.append(match)
    with ctx.store.transaction():
        for n in wanted:
            ctx.store.untag_index(n)
    image_events.record_removal(ctx, wanted, (), dict.fromkeys(wanted, rec.id))
    return wanted


# --- removal ------------------------------------------------------------------


@dataclass
class RemoveResult:
    untagged: list[str] = field(default_factory=list)
    untagged_from: dict[str, str] = field(default_factory=dict)  # name -> the ID it named
    deleted: list[str] = field(default_factory=list)  # full image IDs ("sha256:...")
    # deleted too, with child images keeping their data: podman reports them untagged only
    deleted_with_children: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)
    errors: list[KilnError] = field(default_factory=list)

    def note_untagged(self, image_id: str, names: Iterable[str]) -> None:
        for name in names:
            self.untagged.append(name)
            self.untagged_from[name] = image_id


def remove_images(
    ctx: Context,
    names: Sequence[str] = (),
    force: bool = False,
    all: bool = False,
    ignore: bool = False,
    lists_only: bool = False,
    docker: bool = False,
    prune_parents: bool = True,
) -> RemoveResult:
    """``kiln rmi``: untag and delete images (see the module docstring for the rules:
    ``docker`` for dockerd's with child images, ``prune_parents`` for dangling parents).

    Errors for individual images are collected in ``result.errors`` (the others
    still go); ``ignore`` drops "image not known" errors. Call
    :func:`raise_first_error` to turn them into an exception. ``lists_only`` (podman's
    ``lookupManifest``, what ``podman manifest rm`` sends): every name must be a manifest
    list, which goes and its images stay; a name of an image is an error, never removed.
    """
    from kiln.util.arguments import string_list  # start-up: `kiln images` removes nothing

    names = string_list(names, "remove_images: names")
    if all and names:
        raise InvalidArgument(
            "when using the --all switch, you may not pass any images names or IDs"
        )
    if not all and not names:
        raise InvalidArgument("image name or ID must be specified")
    result = RemoveResult()
    try:
        if all:
            _remove_all(ctx, force, result)
        else:
            how = _How(force, docker, prune_parents)
            _remove_named(ctx, names, how, ignore, result, lists_only)
    finally:  # what went before an unexpected error still happened
        deleted = [*result.deleted, *result.deleted_with_children]
        image_events.record_removal(ctx, result.untagged, deleted, result.untagged_from)
    return result


@dataclass(frozen=True)
class _How:
    """How an rmi removes (see :func:`remove_images`)."""

    force: bool = False
    docker: bool = False
    prune_parents: bool = True


def _remove_named(
    ctx: Context,
    names: Sequence[str],
    how: _How,
    ignore: bool,
    result: RemoveResult,
    lists_only: bool = False,
) -> None:
    for name in names:
        try:
            if lists_only:
                _remove_list(ctx, name, _list_named(ctx, name), result)
            else:
                _remove_one(ctx, name, how, result)
        except NotFound as exc:
            if not ignore:
                result.errors.append(exc)
        except (Conflict, InvalidArgument) as exc:
            result.errors.append(exc)
    if result.deleted or result.deleted_with_children:
        ctx.collect_garbage()


def raise_first_error(result: RemoveResult) -> None:
    if result.errors:
        raise result.errors[0]


def _remove_one(ctx: Context, name: str, how: _How, result: RemoveResult) -> None:
    store = ctx.store
    force = how.force
    found = store.resolve(name)
    if isinstance(found, IndexRecord):
        _remove_list(ctx, name, found, result)
        return
    rec = found
    names = store.names_of(rec.id)
    by_id = _is_id_reference(name, rec.id)
    by_digest = "@" in name or (name.startswith("sha256:") and not by_id)
    others = names or len(rec.repo_digests) > 1
    if how.docker and "@" in name and others and store.remove_repo_digest(name):
        # dockerd's: a recorded repo digest is a reference, removed alone while others remain
        result.note_untagged(rec.id, [name])
        return
    if len(names) > 1 and not force:
        if by_id and how.docker and not store.children_of(rec.id):
            # dockerd's soft conflict (a child is its hard one, which _delete answers)
            raise Conflict(
                f"conflict: unable to delete {rec.id.removeprefix('sha256:')[:12]} (must be "
                "forced) - image is referenced in multiple repositories"
            )
        if by_id and not how.docker:
            raise InvalidArgument(
                f'unable to delete image "{rec.id.removeprefix("sha256:")}" by ID with more than '
                f"one tag ({_golist(names)}): please force removal"
            )
        if by_digest:
            raise InvalidArgument(
                f'unable to delete image "{rec.id.removeprefix("sha256:")}" by digest with more '
                f"than one tag ({_golist(names)}): please force removal"
            )
    if not by_id and not by_digest and len(names) > 1:
        resolved = match_name(name, names)
        if resolved is not None:
            store.untag(resolved)
            result.note_untagged(rec.id, [resolved])
            return
    _delete(ctx, rec.id, names, how, result, by_name=not by_id and not by_digest)


def _list_named(ctx: Context, name: str) -> Any:
    """The manifest list ``name`` names; an image's name is refused (as podman's
    "image is not a manifest list"), an unknown name is NotFound."""
    found = ctx.store.resolve(name)
    if not isinstance(found, IndexRecord):
        raise InvalidArgument(f"{name}: image is not a manifest list")
    return found


def _remove_list(ctx: Context, name: str, rec: Any, result: RemoveResult) -> None:
    """rmi of a manifest list: the name goes (the list too, with its last name or by ID);
    its images stay."""
    resolved = match_name(name, rec.names)
    if resolved is not None and len(rec.names) > 1:
        ctx.store.untag_index(resolved)
        result.note_untagged(rec.id, [resolved])
        return
    ctx.store.delete_index(rec.id)
    result.note_untagged(rec.id, rec.names)
    result.deleted.append(rec.id)


def _delete(
    ctx: Context,
    image_id: str,
    names: list[str],
    how: _How,
    result: RemoveResult,
    by_name: bool = False,
) -> None:
    store = ctx.store
    users = store.containers_using(image_id)
    building = [c for c in users if _running_build(c.state)]
    if building:  # its container is the build's, not the user's: even a force leaves it
        raise Conflict(
            f"image used by {building[0].id}: image is in use by a running build: "
            "wait for the build to end, or stop it"
        )
    if users and not how.force:
        raise Conflict(
            f"image used by {users[0].id}: image is in use by a container: "
            "consider listing external containers and force-removing image"
        )
    children = store.children_of(image_id)
    if children and how.docker:
        if by_name and names:
            # what dockerd does: the names go, the data stays for the children
            with store.transaction():
                for n in names:
                    store.untag(n)
            result.note_untagged(image_id, names)
            return
        raise Conflict(
            f"image {image_id.removeprefix('sha256:')[:12]} has dependent child images "
            f"({', '.join(c.removeprefix('sha256:')[:12] for c in children)}); "
            "remove them first (this cannot be forced)"
        )
    rec = store.get_image(image_id)
    parent = store.parent_of(rec.id, rec.layers, rec.config_digest or rec.id)
    for c in users:
        _remove_container(ctx, c.id)
        result.removed_containers.append(c.id)
    with store.transaction():
        store.delete_image(image_id)
    result.note_untagged(image_id, names)
    # podman: an image with children is reported untagged, not deleted (their data stays)
    (result.deleted_with_children if children else result.deleted).append(image_id)
    if parent and how.prune_parents:
        _delete_dangling_parents(ctx, parent, result)


def _delete_dangling_parents(ctx: Context, image_id: str, result: RemoveResult) -> None:
    """Delete ``image_id`` if deleting its child left it dangling (no name, no child, not
    in a manifest list, no container, no work in flight), then its parent likewise."""
    store = ctx.store
    while image_id:
        try:
            rec = store.get_image(image_id)
        except NotFound:
            return
        if store.indexes_using(rec.manifest_digest):
            return  # a list's image is not dangling
        parent = store.parent_of(rec.id, rec.layers, rec.config_digest or rec.id)
        try:
            if _prune_one(ctx, rec.id, all=False) is None:
                return
        except (Conflict, NotFound):  # a container uses it, or another process took it
            return
        result.deleted.append(rec.id)
        image_id = parent or ""


def _remove_all(ctx: Context, force: bool, result: RemoveResult) -> None:
    """Delete every image, children before parents."""
    failed: set[str] = set()
    for lst in ctx.store.list_indexes():
        ctx.store.delete_index(lst.id)
        result.note_untagged(lst.id, lst.names)
        result.deleted.append(lst.id)
    while True:
        summaries = summarize(ctx, ctx.store.list_images(blobs=False), labels=False)
        leaves = [s for s in summaries if not s.has_children and s.id not in failed]
        if not leaves:
            break
        for s in leaves:
            try:  # every image goes: no parent is left to prune
                _delete(ctx, s.id, list(s.names), _How(force, prune_parents=False), result)
            except (Conflict, NotFound) as exc:
                failed.add(s.id)
                result.errors.append(exc)
    if result.deleted:
        ctx.collect_garbage()


def _running_build(state: Any) -> bool:
    """Whether a working container's state names a build process that still runs (the
    owner a build marks its containers with; a user's own have none)."""
    owner = state.get("owner") if isinstance(state, dict) else None
    return bool(owner) and is_alive(str(owner))


def _remove_container(ctx: Context, container_id: str) -> None:
    """Drop a working container (podman's ``rmi --force`` does this)."""
    from kiln.ops.containers import remove_containers  # start-up: loads kiln.container

    try:
        remove_containers(ctx, [container_id])
        return
    except KilnError:  # state another kiln wrote, or already half gone: drop the record
        pass
    with contextlib.suppress(NotFound):
        ctx.store.delete_container(container_id)


def _is_id_reference(name: str, image_id: str) -> bool:
    v = name.removeprefix("sha256:")
    hexid = image_id.removeprefix("sha256:")
    return len(v) >= 3 and all(c in "0123456789abcdef" for c in v) and hexid.startswith(v)


def _golist(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


# --- prune --------------------------------------------------------------------


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)  # image IDs
    untagged: list[str] = field(default_factory=list)
    untagged_from: dict[str, str] = field(default_factory=dict)  # name -> the ID it named
    bytes_freed: int = 0  # what left the disk: blobs, unpacked layers and snapshots
    blobs_removed: int = 0
    snapshots_removed: int = 0

    @property
    def reclaimed(self) -> int:
        """Docker's ``SpaceReclaimed``: the bytes actually freed (not the images' sizes,
        which count shared layers once per image and uncompressed)."""
        return self.bytes_freed


def prune(ctx: Context, all: bool = False, filters: Iterable[str] = ()) -> PruneResult:
    """Remove dangling images (with ``all``: every image no container uses), then GC.

    Repeats until nothing more goes, so an intermediate image whose last child
    was pruned goes too. Images with children are never removed.
    """

    sweep_leftovers(ctx)  # a killed build's lease no longer keeps its images
    filters = list(filters)
    result = PruneResult()
    while True:
        records = ctx.store.list_images(blobs=False)
        summaries = summarize(ctx, records, labels=any(f.startswith("label") for f in filters))
        if filters:
            keep_ids = {s.id for s in list_images(ctx, all=True, filters=filters)}
            summaries = [s for s in summaries if s.id in keep_ids]
        victims = [
            s
            for s in summaries
            if not s.has_children
            and s.containers == 0
            and (all or not s.names)
            and (all or not s.in_list)  # a list's image is not dangling
        ]
        if not victims:
            break
        gone = 0
        for s in victims:
            try:
                names = _prune_one(ctx, s.id, all)
            except (Conflict, NotFound):
                continue
            if names is None:
                continue
            gone += 1
            result.untagged.extend(names)
            result.untagged_from.update(dict.fromkeys(names, s.id))
            result.removed.append(s.id)
        if not gone:
            break
    image_events.record_removal(ctx, result.untagged, result.removed, result.untagged_from)
    gc = ctx.collect_garbage()
    result.bytes_freed, result.blobs_removed = gc.bytes_freed, gc.blobs_removed
    result.snapshots_removed = gc.snapshots_removed
    return result


def _prune_one(ctx: Context, image_id: str, all: bool) -> list[str] | None:
    """Delete one prune candidate if it still qualifies; returns the names it lost.

    Other processes share the store, so the listing may be stale by now: in one
    transaction, an image that got a name (unless ``all``), a child, or a lease (work
    in flight, e.g. a build step) is kept (None); a container user raises Conflict.
    """
    store = ctx.store
    with store.transaction():
        names = store.names_of(image_id)
        if (names and not all) or store.children_of(image_id):
            return None
        if image_id in store.leased_images():
            return None
        for n in names:
            store.untag(n)
        store.delete_image(image_id)
    return names


# names the curated kiln.__all__ exports
image_history = history
tag_image = tag
untag_image = untag
prune_images = prune
image_tree = tree
image_diff = diff

__all__ = [
    "HistoryEntry",
    "ImageSummary",
    "PruneResult",
    "RemoveResult",
    "diff",
    "history",
    "image_config",
    "image_exists",
    "image_id_of",
    "inspect_image",
    "list_images",
    "list_summaries",
    "prune",
    "raise_first_error",
    "reference_matches",
    "remove_images",
    "repository_names",
    "split_name",
    "summarize",
    "tag",
    "tree",
    "untag",
]
