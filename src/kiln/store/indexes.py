"""Manifest lists and image indexes kept as named records beside images.

A stored index is a row (``indexes``) naming its current document, which is a blob
in the store like any manifest, plus the names that point at it (``index_names``).
A name points at an image or at an index, never at both: giving a name to one takes
it from the other, as tagging moves a name between images.

Every child of a stored index is in the store: its manifest, config and layer blobs
were checked when the index was put, and are recorded in ``index_blobs``, so GC keeps
them for as long as the index exists, even when no image row names them any more
(``kiln rmi`` of an image a list still holds frees nothing the list needs). Children
must be image manifests (OCI or Docker schema 2): a nested index, a child of another
media type, a child whose bytes do not match its descriptor or a document over
``MAX_INDEX_BYTES`` / ``MAX_INDEX_ENTRIES`` is refused before anything is written.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

from kiln.errors import (
    AlreadyExists,
    Conflict,
    DigestMismatch,
    InvalidArgument,
    KilnError,
    NotFound,
)
from kiln.oci import Digest, Index, Manifest, Reference
from kiln.oci import media_types as mt
from kiln.oci.reference import is_short_name
from kiln.oci.strict_json import MAX_MANIFEST_BYTES
from kiln.store import paths
from kiln.store.content import Content
from kiln.store.db import Database
from kiln.store.gc import file_clock
from kiln.store.images import _full_id, normalise_name
from kiln.store.records import IndexRecord
from kiln.util.locks import file_lock
from kiln.util.timefmt import rfc3339

#: the largest index document kept (the same cap as every manifest kiln reads)
MAX_INDEX_BYTES = MAX_MANIFEST_BYTES
#: the most children one index may name (Docker Hub's largest lists have a few dozen)
MAX_INDEX_ENTRIES = 4096


def check_index(raw: bytes, media_type: str = "") -> Index:
    """``raw`` parsed as a list kiln keeps: within the size and entry caps, every entry an
    image manifest (no nested lists). What ``put_index`` checks before looking at children;
    pullers call it before fetching anything."""
    if len(raw) > MAX_INDEX_BYTES:
        raise InvalidArgument(
            f"manifest list is {len(raw)} bytes, over the {MAX_INDEX_BYTES}-byte limit"
        )
    index = Index.parse(raw, media_type)
    if len(index.manifests) > MAX_INDEX_ENTRIES:
        raise InvalidArgument(
            f"manifest list names {len(index.manifests)} manifests, over the limit of "
            f"{MAX_INDEX_ENTRIES}"
        )
    for i, child in enumerate(index.manifests):
        where = f"manifest list entry {i} ({child.digest})"
        if mt.is_index(child.media_type):
            raise InvalidArgument(
                f"{where} is itself a manifest list: nested lists are not supported; "
                "add the images it names instead"
            )
        if child.media_type not in mt.MANIFESTS:
            raise InvalidArgument(
                f"{where} has media type {child.media_type or '(none)'}: a manifest list "
                "can only name OCI or Docker schema 2 image manifests"
            )
    return index


def new_index_id() -> str:
    """A fresh list ID: random, in the same form as image IDs (podman's are random too)."""
    return "sha256:" + os.urandom(32).hex()


class Indexes:
    """The index role: manifest lists kept by name beside images; their documents are
    blobs of ``content``."""

    def __init__(self, root: str, db: Database, content: Content):
        self.root = root
        self.db = db
        self._content = content

    # records ----------------------------------------------------------------

    def put_index(
        self,
        raw: bytes,
        media_type: str = "",
        *,
        index_id: str | None = None,
        names: Sequence[str] = (),
        created: str | None = None,
        expect_digest: str | None = None,
        claim_names: bool = False,
    ) -> IndexRecord:
        """Store ``raw`` (an OCI index or Docker manifest list) as a new list or, with
        ``index_id``, as the new content of that list; ``names`` point at it afterwards.

        The document is verified as a blob; every child must already be in the store
        (manifest, config, layers). Nothing is written when any check fails.
        ``expect_digest``: store only if the list's document is still that one, else
        ``Conflict`` (an edit made from a document someone else replaced meanwhile).
        ``claim_names``: ``AlreadyExists`` if an image or a list holds one of ``names``
        already (checked in the same transaction: two creates of one name, one wins).
        """
        index = check_index(raw, media_type)
        kept = self._child_blobs(index)
        digest = self._content.put_bytes(raw)
        if index_id is not None:
            index_id = self.get_index(index_id).id
        new_id = index_id or new_index_id()
        gc_lock = os.path.join(self.root, paths.GC_LOCK)
        # under the shared GC lock: no GC marks between the check and the row
        with file_lock(gc_lock, exclusive=False), self.db.transaction() as conn:
            missing = [d for d in kept if not os.path.exists(self._path(d))]
            if missing:
                raise NotFound(
                    f"manifest list needs blob {missing[0]}, which is not in the store any more"
                )
            for d in kept:
                os.utime(self._path(d))  # restart the grace period of what the list keeps
            if index_id is None:
                conn.execute(
                    "INSERT INTO indexes(id, digest, media_type, created, added) "
                    "VALUES (?,?,?,?,?)",
                    (new_id, str(digest), index.media_type, created or rfc3339(), time.time()),
                )
            else:
                row = conn.execute("SELECT digest FROM indexes WHERE id=?", (new_id,)).fetchone()
                if row is None:
                    raise NotFound(f"{new_id}: manifest list not known")
                if expect_digest is not None and row[0] != expect_digest:
                    raise Conflict(f"manifest list {new_id} was changed by someone else")
                self._release_index(conn, new_id)
                conn.execute(
                    "UPDATE indexes SET digest=?, media_type=? WHERE id=?",
                    (str(digest), index.media_type, new_id),
                )
                conn.execute("DELETE FROM index_blobs WHERE index_id=?", (new_id,))
            conn.executemany(
                "INSERT OR IGNORE INTO index_blobs(index_id, digest) VALUES (?,?)",
                [(new_id, d) for d in kept],
            )
            for name in names:
                if claim_names:
                    self._refuse_taken(conn, name)
                self.tag_index(name, new_id)
        return self.get_index(new_id)

    def _refuse_taken(self, conn: sqlite3.Connection, name: str) -> None:
        norm = normalise_name(name)
        row = conn.execute(
            "SELECT image_id FROM names WHERE name=? UNION ALL "
            "SELECT index_id FROM index_names WHERE name=?",
            (norm, norm),
        ).fetchone()
        if row is not None:
            raise AlreadyExists(
                f'image name "{norm}" is already associated with image '
                f'"{row[0].removeprefix("sha256:")}": that name is already in use'
            )

    def get_index(self, index_id: str) -> IndexRecord:
        row = self.db.one("SELECT * FROM indexes WHERE id=?", (_full_id(index_id),))
        if row is None:
            raise NotFound(f"{index_id}: manifest list not known")
        return self._index_from_row(row)

    def list_indexes(self) -> list[IndexRecord]:
        with self.db.snapshot():
            rows = self.db.query("SELECT * FROM indexes ORDER BY added, id")
            names: dict[str, list[str]] = {}
            for index_id, name in self.db.query(
                "SELECT index_id, name FROM index_names ORDER BY name"
            ):
                names.setdefault(index_id, []).append(name)
            return [self._index_from_row(r, names.get(r["id"], [])) for r in rows]

    def index_count(self) -> int:
        """How many manifest lists the store holds (one query)."""
        row = self.db.one("SELECT COUNT(*) FROM indexes")
        return int(row[0]) if row is not None else 0

    def index_bytes(self, rec: IndexRecord) -> bytes:
        """The list's current document, read back and checked against its digest."""
        digest = Digest.parse(rec.digest)
        try:
            with open(self._path(rec.digest), "rb") as f:
                raw = f.read(MAX_INDEX_BYTES + 1)
        except FileNotFoundError:
            raise NotFound(f"manifest list {rec.id}: its document {digest} is missing") from None
        if Digest.of_bytes(raw, digest.algorithm) != digest:
            raise DigestMismatch(f"manifest list {rec.id}: its document {digest} is corrupt")
        return raw

    def delete_index(self, index_id: str) -> None:
        """Forget a list (its names); GC frees what only it kept. Its images stay."""
        index_id = _full_id(index_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM indexes WHERE id=?", (index_id,)).fetchone() is None:
                raise NotFound(f"{index_id}: manifest list not known")
            self._release_index(conn, index_id)
            conn.execute("DELETE FROM indexes WHERE id=?", (index_id,))

    def indexes_using(self, digest: str) -> list[str]:
        """IDs of the lists that keep blob ``digest`` (a child manifest, config or layer)."""
        rows = self.db.query(
            "SELECT DISTINCT index_id FROM index_blobs WHERE digest=? ORDER BY index_id",
            (str(digest),),
        )
        return [r[0] for r in rows]

    # names ------------------------------------------------------------------

    def tag_index(self, name: str, index_id: str) -> None:
        """Point ``name`` at a list (an image holding the name loses it)."""
        name = normalise_name(name)
        index_id = _full_id(index_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM indexes WHERE id=?", (index_id,)).fetchone() is None:
                raise NotFound(f"{index_id}: manifest list not known")
            conn.execute("DELETE FROM names WHERE name=?", (name,))
            conn.execute(
                "INSERT INTO index_names(name, index_id) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET index_id=excluded.index_id",
                (name, index_id),
            )

    def untag_index(self, name: str) -> str:
        """Remove a list's name; returns the list's ID. ``NotFound`` if no list has it."""
        norm = normalise_name(name)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT index_id FROM index_names WHERE name=?", (norm,)).fetchone()
            if row is None:
                raise NotFound(f"{name}: manifest list not known")
            conn.execute("DELETE FROM index_names WHERE name=?", (norm,))
            return row[0]

    # resolving ----------------------------------------------------------------

    def resolve_index(self, name_or_id: str) -> IndexRecord:
        """A list by name, ``name@digest``, full ID or unique ID prefix; ``NotFound``."""
        found = self._find_index(name_or_id.strip())
        if found is None:
            raise NotFound(f"{name_or_id}: manifest list not known")
        return self.get_index(found)

    def _find_index(self, value: str) -> str | None:
        bare = value.removeprefix("sha256:")
        if len(bare) == 64 and _is_hex(bare):
            row = self.db.one("SELECT id FROM indexes WHERE id=?", ("sha256:" + bare,))
            return row[0] if row is not None else None
        return self.by_reference(value) or self.by_prefix(value)

    def by_reference(self, value: str) -> str | None:
        """The ID of the list ``value`` names (a name or ``name@digest``), if any."""
        try:
            ref = Reference.parse(value)
        except KilnError:
            return None
        if ref.digest:
            row = self.db.one(
                "SELECT id FROM indexes WHERE digest=? ORDER BY added", (str(ref.digest),)
            )
            return row[0] if row is not None else None
        candidates = [str(ref)]
        if is_short_name(value):
            candidates.append(str(Reference.parse("localhost/" + value)))
        for name in candidates:
            row = self.db.one("SELECT index_id FROM index_names WHERE name=?", (name,))
            if row is not None:
                return row[0]
        return None

    def by_prefix(self, value: str) -> str | None:
        """The ID of the one list whose ID starts with ``value``, if any."""
        bare = value.removeprefix("sha256:")
        if not (3 <= len(bare) < 64 and _is_hex(bare)):
            return None
        rows = self.db.query(
            "SELECT id FROM indexes WHERE id >= ? AND id < ? LIMIT 2",
            (f"sha256:{bare}", f"sha256:{bare}g"),
        )
        if len(rows) > 1:
            raise InvalidArgument(
                f"{value}: ambiguous ID prefix: it matches several manifest lists; "
                "give more characters of the ID"
            )
        return rows[0][0] if rows else None

    # helpers ----------------------------------------------------------------

    def _path(self, digest: str) -> str:
        return paths.blob_path(self.root, Digest.parse(digest))

    def _child_blobs(self, index: Index) -> list[str]:
        """Every blob the children need (manifests, configs, layers), checked present."""
        kept: dict[str, None] = {}
        for i, child in enumerate(index.manifests):
            where = f"manifest list entry {i} ({child.digest})"
            raw = self._read_child(child.digest, child.size, where)
            manifest = Manifest.parse(raw, child.media_type)
            kept[str(child.digest)] = None
            for blob in (manifest.config, *manifest.layers):
                if not os.path.exists(self._path(str(blob.digest))):
                    raise NotFound(
                        f"{where}: its blob {blob.digest} is not in the store; "
                        "pull or load the image first"
                    )
                kept[str(blob.digest)] = None
        return list(kept)

    def _read_child(self, digest: Digest, size: int, where: str) -> bytes:
        try:
            with open(self._path(str(digest)), "rb") as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise NotFound(f"{where} is not in the store; pull or load the image first") from None
        if len(raw) != size or Digest.of_bytes(raw, digest.algorithm) != digest:
            raise DigestMismatch(f"{where}: the stored manifest does not match its descriptor")
        return raw

    def _release_index(self, conn: sqlite3.Connection, index_id: str) -> None:
        """Note what the list kept, for the next GC to free at once (what another root
        still holds is marked and stays)."""
        conn.execute(
            "INSERT INTO released(kind, ref, at) SELECT 'blob', d, ?1 FROM ("
            "SELECT digest AS d FROM indexes WHERE id=?2 "
            "UNION SELECT digest FROM index_blobs WHERE index_id=?2"
            ") WHERE d IS NOT NULL ON CONFLICT(kind, ref) DO UPDATE SET at=excluded.at",
            (file_clock(), index_id),
        )

    def _index_from_row(self, row: sqlite3.Row, names: list[str] | None = None) -> IndexRecord:
        index_id = row["id"]
        if names is None:
            names = [
                r[0]
                for r in self.db.query(
                    "SELECT name FROM index_names WHERE index_id=? ORDER BY name", (index_id,)
                )
            ]
        rec = IndexRecord(
            id=index_id,
            digest=row["digest"],
            media_type=row["media_type"],
            created=row["created"],
            names=names,
            added=row["added"],
        )
        try:
            raw = self.index_bytes(rec)
            rec.size = len(raw)
            rec.manifests = [str(m.digest) for m in Index.parse(raw, rec.media_type).manifests]
        except KilnError:
            pass  # fsck reports it; the record stays listable and removable
        return rec


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
