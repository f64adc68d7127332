"""Image, name, repo-digest and layer metadata.

A name points at exactly one image; tagging an image with a name another image
holds moves the name and leaves the old image dangling (still stored, still a
GC root, until ``delete_image``). Names are stored normalised, e.g.
``docker.io/library/busybox:latest``.
"""

from __future__ import annotations

import json
import sqlite3
import time

from kiln.errors import Conflict, InvalidArgument, NotFound
from kiln.oci import Reference
from kiln.store.db import Database
from kiln.store.records import ImageRecord, LayerRecord


def normalise_name(name: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``; digests are not names."""
    ref = Reference.parse(name)
    if ref.digest:
        raise InvalidArgument(
            f'"{name}" has a digest; a name is a repository with an optional tag, '
            "e.g. docker.io/library/busybox:latest"
        )
    return str(ref)


def normalise_repo_digest(value: str) -> str:
    ref = Reference.parse(value, default_tag=False)
    if not ref.digest:
        raise InvalidArgument(f'"{value}" is not a repo digest (expected name@sha256:<hex>)')
    return f"{ref.name}@{ref.digest}"


class ImagesMixin:
    db: Database

    # images -----------------------------------------------------------------

    def put_image(self, rec: ImageRecord) -> None:
        """Insert or update an image and its ordered layer list (layers must be put first)."""
        with self.db.transaction() as conn:
            for chain_id in rec.layers:
                if (
                    conn.execute("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
                    is None
                ):
                    raise NotFound(
                        f"layer {chain_id} of image {rec.id} is not in the store; put_layer it first"
                    )
            old = conn.execute("SELECT added FROM images WHERE id=?", (rec.id,)).fetchone()
            added = old["added"] if old is not None else (rec.added or time.time())
            conn.execute(
                "INSERT INTO images(id, manifest_digest, manifest_media_type, config_digest, "
                "created, size, platform, added, labels) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest, "
                "manifest_media_type=excluded.manifest_media_type, "
                "config_digest=excluded.config_digest, created=excluded.created, "
                "size=excluded.size, platform=excluded.platform, "
                "labels=COALESCE(excluded.labels, images.labels)",
                (
                    rec.id,
                    rec.manifest_digest,
                    rec.manifest_media_type,
                    rec.config_digest or rec.id,
                    rec.created,
                    rec.size,
                    rec.platform,
                    added,
                    _labels_json(rec.labels),
                ),
            )
            conn.execute("DELETE FROM image_layers WHERE image_id=?", (rec.id,))
            conn.executemany(
                "INSERT INTO image_layers(image_id, position, chain_id) VALUES (?,?,?)",
                [(rec.id, i, c) for i, c in enumerate(rec.layers)],
            )
            for name in rec.names:
                self.tag(name, rec.id)
            for rd in rec.repo_digests:
                self.add_repo_digest(rec.id, rd)
            # visible and leased at once, so a prune cannot slip in between
            self._join_leases_image(rec.id)  # type: ignore[attr-defined]
        rec.added = added

    def get_image(self, image_id: str) -> ImageRecord:
        row = self.db.one("SELECT * FROM images WHERE id=?", (_full_id(image_id),))
        if row is None:
            raise NotFound(f"{image_id}: image not known")
        return self._image_from_row(row)

    def set_image_labels(self, labels_by_id: dict[str, dict[str, str]]) -> None:
        """Record the config labels of images stored without them (one transaction)."""
        with self.db.transaction() as conn:
            for image_id, labels in labels_by_id.items():
                conn.execute(
                    "UPDATE images SET labels=? WHERE id=?", (_labels_json(labels), image_id)
                )

    def list_images(self) -> list[ImageRecord]:
        with self.db.snapshot():
            rows = self.db.query("SELECT * FROM images ORDER BY added, id")
            return [self._image_from_row(r) for r in rows]

    def delete_image(self, image_id: str) -> None:
        """Forget an image (its names, repo digests, cache entries); GC frees its blobs."""
        image_id = _full_id(image_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"{image_id}: image not known")
            users = conn.execute(
                "SELECT id, name FROM containers WHERE image_id=?", (image_id,)
            ).fetchall()
            if users:
                raise Conflict(
                    f"image {image_id} is in use by container {users[0]['id'][:12]} "
                    f"({users[0]['name']}); remove the container first"
                )
            conn.execute("DELETE FROM images WHERE id=?", (image_id,))

    def children_of(self, image_id: str) -> list[str]:
        """Images whose layer chain strictly extends this image's."""
        mine = self.get_image(image_id).layers
        if not mine:
            rows = self.db.query(
                "SELECT DISTINCT image_id FROM image_layers WHERE image_id != ?", (image_id,)
            )
        else:
            rows = self.db.query(
                "SELECT il.image_id FROM image_layers il WHERE il.position=? AND il.chain_id=? "
                "AND EXISTS (SELECT 1 FROM image_layers x WHERE x.image_id=il.image_id "
                "AND x.position=?)",
                (len(mine) - 1, mine[-1], len(mine)),
            )
        return sorted(r[0] for r in rows)

    # names ------------------------------------------------------------------

    def tag(self, name: str, image_id: str) -> str | None:
        """Point ``name`` at ``image_id``; returns the image that lost the name, if any."""
        name = normalise_name(name)
        image_id = _full_id(image_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"{image_id}: image not known")
            row = conn.execute("SELECT image_id FROM names WHERE name=?", (name,)).fetchone()
            if row is not None and row[0] == image_id:
                return None
            conn.execute(
                "INSERT INTO names(name, image_id) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id",
                (name, image_id),
            )
            return row[0] if row is not None else None

    def untag(self, name: str) -> str:
        """Remove a name; returns the image it pointed at. ``NotFound`` if no such name."""
        norm = normalise_name(name)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT image_id FROM names WHERE name=?", (norm,)).fetchone()
            if row is None:
                raise NotFound(f"{name}: image not known")
            conn.execute("DELETE FROM names WHERE name=?", (norm,))
            return row[0]

    def names_of(self, image_id: str) -> list[str]:
        rows = self.db.query(
            "SELECT name FROM names WHERE image_id=? ORDER BY name", (_full_id(image_id),)
        )
        return [r[0] for r in rows]

    def add_repo_digest(self, image_id: str, repo_digest: str) -> None:
        value = normalise_repo_digest(repo_digest)
        image_id = _full_id(image_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"{image_id}: image not known")
            conn.execute(
                "INSERT OR IGNORE INTO repo_digests(image_id, repo_digest) VALUES (?, ?)",
                (image_id, value),
            )

    # layers -----------------------------------------------------------------

    def put_layer(self, rec: LayerRecord) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO layers(chain_id, diff_id, parent, blob_digest, media_type, size, "
                "uncompressed_size) VALUES (?,?,?,?,?,?,?) ON CONFLICT(chain_id) DO UPDATE SET "
                "blob_digest=excluded.blob_digest, media_type=excluded.media_type, "
                "size=excluded.size, uncompressed_size=excluded.uncompressed_size",
                (
                    rec.chain_id,
                    rec.diff_id,
                    rec.parent,
                    rec.blob_digest,
                    rec.media_type,
                    rec.size,
                    rec.uncompressed_size,
                ),
            )

    def get_layer(self, chain_id: str) -> LayerRecord:
        row = self.db.one("SELECT * FROM layers WHERE chain_id=?", (chain_id,))
        if row is None:
            raise NotFound(f"layer {chain_id} not known to the store")
        return _layer_from_row(row)

    def list_layers(self) -> list[LayerRecord]:
        return [_layer_from_row(r) for r in self.db.query("SELECT * FROM layers")]

    def images_using_layer(self, chain_id: str) -> list[str]:
        rows = self.db.query(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id=? ORDER BY image_id",
            (chain_id,),
        )
        return [r[0] for r in rows]

    # helpers ----------------------------------------------------------------

    def _image_from_row(self, row: sqlite3.Row) -> ImageRecord:
        image_id = row["id"]
        layers = self.db.query(
            "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY position", (image_id,)
        )
        digests = self.db.query(
            "SELECT repo_digest FROM repo_digests WHERE image_id=? ORDER BY repo_digest",
            (image_id,),
        )
        return ImageRecord(
            id=image_id,
            manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"],
            config_digest=row["config_digest"],
            created=row["created"],
            size=row["size"],
            layers=[r[0] for r in layers],
            platform=row["platform"],
            names=self.names_of(image_id),
            repo_digests=[r[0] for r in digests],
            added=row["added"],
            labels=_labels_from_json(row["labels"]),
        )


def _labels_json(labels: dict[str, str] | None) -> str | None:
    return None if labels is None else json.dumps(labels, sort_keys=True)


def _labels_from_json(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def _layer_from_row(row: sqlite3.Row) -> LayerRecord:
    return LayerRecord(
        chain_id=row["chain_id"],
        diff_id=row["diff_id"],
        parent=row["parent"],
        blob_digest=row["blob_digest"],
        media_type=row["media_type"],
        size=row["size"],
        uncompressed_size=row["uncompressed_size"],
    )


def _full_id(image_id: str) -> str:
    """Accept a bare 64-hex ID as well as ``sha256:<hex>``."""
    if len(image_id) == 64 and ":" not in image_id:
        return "sha256:" + image_id
    return image_id
