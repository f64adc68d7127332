"""Image, name, repo-digest and layer metadata.

A name points at exactly one image; tagging an image with a name another image
holds moves the name and leaves the old image dangling (still stored, still a
GC root, until ``delete_image``). Names are stored normalised, e.g.
``docker.io/library/busybox:latest``.

Each image records the blobs its own manifest names (``image_layers.blob_digest``):
two images may share a chain ID (same content) through different blobs (gzip, zstd,
uncompressed), and each keeps its own until it is deleted. The ``layers`` row of a
chain holds what all its encodings share (diff_id, parent, uncompressed size) plus the
last blob seen, which nothing relies on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from kiln.errors import Conflict, InvalidArgument, KilnError, NotFound
from kiln.oci import Digest, History, Manifest, Reference
from kiln.oci.strict_json import MAX_MANIFEST_BYTES
from kiln.store import paths
from kiln.store.db import Database
from kiln.store.gc import IMAGE_BLOBS_SQL, file_clock
from kiln.store.leases import Leases
from kiln.store.lineage import put_lineage
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


class Images:
    """The image role: image rows, their names and repo digests, and layer chains. An
    image put joins the open leases (``leases``) in the transaction that makes it visible."""

    def __init__(self, root: str, db: Database, leases: Leases):
        self.root = root
        self.db = db
        self._leases = leases

    # images -----------------------------------------------------------------

    def put_image(self, rec: ImageRecord, history: Sequence[History] | None = None) -> None:
        """Insert or update an image and its ordered layer list (layers must be put first).
        ``history``: the history of the stored config, when the caller has it parsed (a
        build step), which spares reading the config back for the lineage columns. The
        statements do not grow with the layer count (a build's step 20 costs what step 2
        does): the layer list goes in as one JSON array."""
        with self.db.transaction() as conn:
            missing = conn.execute(
                "SELECT j.value FROM json_each(?) j WHERE NOT EXISTS "
                "(SELECT 1 FROM layers l WHERE l.chain_id = j.value) LIMIT 1",
                (json.dumps(list(rec.layers)),),
            ).fetchone()
            if missing is not None:
                raise NotFound(
                    f"layer {missing[0]} of image {rec.id} is not in the store; put_layer it first"
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
            blobs = self._layer_blobs_of(conn, rec)
            if old is not None:
                conn.execute("DELETE FROM image_layers WHERE image_id=?", (rec.id,))
            conn.execute(
                "INSERT INTO image_layers(image_id, position, chain_id, blob_digest) "
                "SELECT ?, j.key, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]') "
                "FROM json_each(?) j",
                (rec.id, json.dumps(list(zip(rec.layers, blobs, strict=True)))),
            )
            put_lineage(conn, self.root, rec.id, rec.config_digest or rec.id, rec.layers, history)
            for name in rec.names:
                self.tag(name, rec.id)
            for rd in rec.repo_digests:
                self.add_repo_digest(rec.id, rd)
            # visible and leased at once, so a prune cannot slip in between
            self._leases.join_image(rec.id)
        rec.added = added

    def get_image(self, image_id: str) -> ImageRecord:
        """The image ``image_id`` (full ID, bare or ``sha256:``), in one statement."""
        row = self.db.one(_SELECT_IMAGE + "WHERE i.id=?", (_full_id(image_id),))
        if row is None:
            raise NotFound(f"{image_id}: image not known")
        return _record_of_row(row)

    def image_named(self, name: str) -> ImageRecord | None:
        """The image the normalised ``name`` points at, or None, in one statement."""
        row = self.db.one(
            _SELECT_IMAGE + "JOIN names n ON n.image_id = i.id WHERE n.name=?", (name,)
        )
        return None if row is None else _record_of_row(row)

    def set_image_labels(self, labels_by_id: dict[str, dict[str, str]]) -> None:
        """Record the config labels of images stored without them (one transaction)."""
        with self.db.transaction() as conn:
            for image_id, labels in labels_by_id.items():
                conn.execute(
                    "UPDATE images SET labels=? WHERE id=?", (_labels_json(labels), image_id)
                )

    def list_images(self, blobs: bool = True) -> list[ImageRecord]:
        """Every image, oldest first: four queries however many images there are.

        Without ``blobs`` the records' ``layer_blobs`` stay empty (a listing needs only
        the chain IDs): each image's chain is then walked from its top chain ID up the
        ``layers`` rows' parents (one row per distinct chain, not one per image and
        layer), as a chain ID names its whole chain."""
        with self.db.snapshot() as conn:
            cur = conn.cursor()
            cur.row_factory = None  # plain tuples: a Row per image costs more than its fields
            rows = cur.execute(_LIST_IMAGES).fetchall()
            chains = None if blobs else _chains_of(cur, rows)
            if chains is None:
                layers = _grouped(cur.execute(_LIST_LAYERS).fetchall())
            digests = _grouped(
                cur.execute(
                    "SELECT image_id, repo_digest FROM repo_digests ORDER BY repo_digest"
                ).fetchall()
            )
            names = _grouped(
                cur.execute("SELECT image_id, name FROM names ORDER BY name").fetchall()
            )
        out = []
        for r in rows:
            image_id = r[0]
            if chains is not None:
                chain, layer_blobs = list(chains[r[9]]) if r[9] else [], []
            else:
                own = layers.get(image_id, ())
                chain, layer_blobs = [x[0] for x in own], [x[1] for x in own]
            out.append(
                ImageRecord(
                    image_id, r[1], r[2], r[3], r[4], r[5], chain, r[6],
                    names=[n[0] for n in names.get(image_id, ())],
                    repo_digests=[d[0] for d in digests.get(image_id, ())],
                    added=r[7], labels=_labels_from_json(r[8]), layer_blobs=layer_blobs,
                )
            )  # fmt: skip
        return out

    def image_count(self) -> int:
        """How many images the store holds (one query)."""
        row = self.db.one("SELECT COUNT(*) FROM images")
        return int(row[0]) if row is not None else 0

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
            self._release(conn, image_id)
            conn.execute("DELETE FROM images WHERE id=?", (image_id,))

    def _release(self, conn: sqlite3.Connection, image_id: str) -> None:
        """Note what the image held, for the next GC to free even inside its grace period
        (the user asked for the space). Not for an image a live lease holds: in-flight
        work still uses it."""
        now = file_clock()  # blobs reused from now on have later mtimes: GC keeps them
        leased = conn.execute(
            "SELECT 1 FROM lease_resources lr JOIN leases l ON l.id = lr.lease_id "
            "WHERE lr.kind='image' AND lr.ref=? AND l.expires > ?",
            (image_id, time.time()),
        ).fetchone()
        if leased is not None:
            return
        conn.execute(
            f"INSERT INTO released(kind, ref, at) SELECT 'blob', d, ?2 FROM ({IMAGE_BLOBS_SQL}) "
            "WHERE d IS NOT NULL ON CONFLICT(kind, ref) DO UPDATE SET at=excluded.at",
            (image_id, now),
        )
        conn.execute(
            "INSERT INTO released(kind, ref, at) SELECT 'layer', chain_id, ?1 FROM image_layers "
            "WHERE image_id=?2 ON CONFLICT(kind, ref) DO UPDATE SET at=excluded.at",
            (now, image_id),
        )

    # names ------------------------------------------------------------------

    def tag(self, name: str, image_id: str) -> str | None:
        """Point ``name`` at ``image_id``; returns the image that lost the name, if any."""
        name = normalise_name(name)
        image_id = _full_id(image_id)
        row = self.db.one("SELECT image_id FROM names WHERE name=?", (name,))
        if row is not None and row[0] == image_id:
            return None  # already so (a rebuild's tag): no write lock taken
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"{image_id}: image not known")
            row = conn.execute("SELECT image_id FROM names WHERE name=?", (name,)).fetchone()
            if row is not None and row[0] == image_id:
                return None
            conn.execute("DELETE FROM index_names WHERE name=?", (name,))  # a name moves
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

    def remove_repo_digest(self, repo_digest: str) -> bool:
        """Forget a recorded ``name@digest``; False if none was recorded."""
        value = normalise_repo_digest(repo_digest)
        with self.db.transaction() as conn:
            gone = conn.execute("DELETE FROM repo_digests WHERE repo_digest=?", (value,))
            return gone.rowcount > 0

    # layers -----------------------------------------------------------------

    def put_layer(self, rec: LayerRecord) -> None:
        self.put_layers([rec])

    def put_layers(self, recs: Sequence[LayerRecord]) -> None:
        """Insert or update layer rows in one statement; a row that would not change is not
        written (a build step re-puts its base's rows: they cost no write)."""
        if not recs:
            return
        rows = [
            (r.chain_id, r.diff_id, r.parent, r.blob_digest, r.media_type, r.size,
             r.uncompressed_size)
            for r in recs
        ]  # fmt: skip
        cols = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(7))
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO layers(chain_id, diff_id, parent, blob_digest, media_type, size, "
                f"uncompressed_size) SELECT {cols} FROM json_each(?) WHERE true "
                "ON CONFLICT(chain_id) DO UPDATE SET blob_digest=excluded.blob_digest, "
                "media_type=excluded.media_type, size=excluded.size, "
                "uncompressed_size=excluded.uncompressed_size "
                "WHERE layers.blob_digest IS NOT excluded.blob_digest "
                "OR layers.media_type IS NOT excluded.media_type "
                "OR layers.size IS NOT excluded.size "
                "OR layers.uncompressed_size IS NOT excluded.uncompressed_size",
                (json.dumps(rows),),
            )

    def get_layer(self, chain_id: str) -> LayerRecord:
        row = self.db.one("SELECT * FROM layers WHERE chain_id=?", (chain_id,))
        if row is None:
            raise NotFound(f"layer {chain_id} not known to the store")
        return _layer_from_row(row)

    def uncompressed_sizes(self, chain_ids: Sequence[str]) -> dict[str, int]:
        """The uncompressed size of each of these chains the store knows (one query)."""
        rows = self.db.query(
            "SELECT l.chain_id, l.uncompressed_size FROM json_each(?) j "
            "JOIN layers l ON l.chain_id = j.value",
            (json.dumps(list(chain_ids)),),
        )
        return {r[0]: r[1] for r in rows}

    def chain_blobs(self, chain_ids: Sequence[str]) -> dict[str, str]:
        """The blob each of these chains is recorded with, for those the store knows (one
        query)."""
        rows = self.db.query(
            "SELECT l.chain_id, l.blob_digest FROM json_each(?) j "
            "JOIN layers l ON l.chain_id = j.value",
            (json.dumps(list(chain_ids)),),
        )
        return {r[0]: r[1] for r in rows}

    def list_layers(self) -> list[LayerRecord]:
        return [_layer_from_row(r) for r in self.db.query("SELECT * FROM layers")]

    def images_using_layer(self, chain_id: str) -> list[str]:
        rows = self.db.query(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id=? ORDER BY image_id",
            (chain_id,),
        )
        return [r[0] for r in rows]

    # helpers ----------------------------------------------------------------

    def _layer_blobs_of(self, conn: sqlite3.Connection, rec: ImageRecord) -> list[str]:
        """The blob of each layer of ``rec``: as given, else as its manifest in the store
        names them, else (a manifest kiln cannot read) the chain's last-seen blob."""
        if rec.layer_blobs:
            if len(rec.layer_blobs) != len(rec.layers):
                raise InvalidArgument(
                    f"image {rec.id} has {len(rec.layers)} layers but "
                    f"{len(rec.layer_blobs)} layer blobs"
                )
            return [str(b) for b in rec.layer_blobs]
        found = manifest_layer_blobs(self.root, rec.manifest_digest, rec.manifest_media_type)
        if found is not None and len(found) == len(rec.layers):
            return found
        rows = conn.execute(
            "SELECT l.blob_digest FROM json_each(?) j JOIN layers l ON l.chain_id = j.value "
            "ORDER BY j.key",
            (json.dumps(list(rec.layers)),),
        ).fetchall()
        return [r[0] for r in rows]

    def fill_layer_blobs(self) -> None:
        """Record the layer blobs of images stored before schema V3, from their manifests."""
        pending = self.db.query(
            "SELECT DISTINCT i.id, i.manifest_digest, i.manifest_media_type FROM images i "
            "JOIN image_layers il ON il.image_id = i.id WHERE il.blob_digest IS NULL"
        )
        updates = []
        for image_id, manifest, media_type in pending:
            blobs = manifest_layer_blobs(self.root, manifest, media_type)
            count = self.db.value("SELECT COUNT(*) FROM image_layers WHERE image_id=?", (image_id,))
            # unreadable: GC falls back to the chain's row (fsck reports the manifest)
            if blobs is not None and len(blobs) == count:
                updates += [(b, image_id, i) for i, b in enumerate(blobs)]
        if updates:
            with self.db.transaction() as conn:
                conn.executemany(
                    "UPDATE image_layers SET blob_digest=? WHERE image_id=? AND position=? "
                    "AND blob_digest IS NULL",
                    updates,
                )


def manifest_layer_blobs(root: str, manifest_digest: str, media_type: str) -> list[str] | None:
    """The layer digests the stored manifest names, bottom first; None if kiln cannot read it."""
    try:
        path = paths.blob_path(root, Digest.parse(manifest_digest))
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            return None
        manifest = Manifest.parse(raw, media_type)
    except (OSError, KilnError, ValueError):
        return None
    return [str(d.digest) for d in manifest.layers]


def _labels_json(labels: dict[str, str] | None) -> str | None:
    return None if labels is None else json.dumps(labels, sort_keys=True)


def _labels_from_json(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    if text == "{}":  # most images: a list of thousands skips parsing it
        return {}
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


def _grouped(rows: Sequence[Sequence]) -> dict[str, list[tuple]]:
    """Rows ``(image_id, *values)`` grouped by image, each group in query order."""
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(tuple(r[1:]))
    return out


# the columns ``list_images`` reads, in ImageRecord's order where they match it
_LIST_IMAGES = (
    "SELECT id, manifest_digest, manifest_media_type, config_digest, created, size, platform, "
    "added, labels, top_chain, layer_count FROM images ORDER BY added, id"
)
_LIST_LAYERS = (
    "SELECT il.image_id, il.chain_id, COALESCE(il.blob_digest, l.blob_digest) "
    "FROM image_layers il LEFT JOIN layers l ON l.chain_id = il.chain_id "
    "ORDER BY il.image_id, il.position"
)


def _chains_of(cur: sqlite3.Cursor, rows: list[tuple]) -> dict[str, tuple[str, ...]] | None:
    """Each listed top chain ID's chain, bottom first, from the ``layers`` rows' parents;
    None when one does not add up to its image's layer count (a store ``kiln check``
    would question): the caller then reads every image's layer rows instead."""
    parent_of = dict(cur.execute("SELECT chain_id, parent FROM layers").fetchall())
    chains: dict[str, tuple[str, ...]] = {}
    for r in rows:
        top, count = r[9], r[10]
        if top is None:
            if count:
                return None
            continue
        chain = chains.get(top)
        if chain is None:
            walked: list[str] = []
            link = top
            while link and len(walked) <= count:
                walked.append(link)
                link = parent_of.get(link, "")
            chain = chains[top] = tuple(reversed(walked))
        if len(chain) != count or chain[0] not in parent_of:
            return None
    return chains


# One image row with its layers, repo digests and names, each aggregated as a JSON array by
# an indexed subquery: one statement per image instead of four. Aggregation order is not
# guaranteed by SQLite (before 3.44), so layers carry their position and all are sorted here.
_SELECT_IMAGE = (
    "SELECT i.*, "
    "(SELECT json_group_array(json_array(il.position, il.chain_id, "
    "COALESCE(il.blob_digest, l.blob_digest))) FROM image_layers il "
    "LEFT JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id = i.id) AS j_layers, "
    "(SELECT json_group_array(repo_digest) FROM repo_digests WHERE image_id = i.id) AS j_digests, "
    "(SELECT json_group_array(name) FROM names WHERE image_id = i.id) AS j_names "
    "FROM images i "
)


def _record_of_row(row: sqlite3.Row) -> ImageRecord:
    """An ImageRecord from a ``_SELECT_IMAGE`` row."""
    layers = sorted(json.loads(row["j_layers"]))
    return _image_record(
        row,
        [(chain, blob) for _, chain, blob in layers],
        sorted(json.loads(row["j_digests"])),
        sorted(json.loads(row["j_names"])),
    )


def _image_record(
    row: sqlite3.Row, layers: list[tuple], repo_digests: list[str], names: list[str]
) -> ImageRecord:
    """An ImageRecord from its ``images`` row, its ``(chain_id, blob)`` layers in order,
    its repo digests and its names."""
    return ImageRecord(
        id=row["id"],
        manifest_digest=row["manifest_digest"],
        manifest_media_type=row["manifest_media_type"],
        config_digest=row["config_digest"],
        created=row["created"],
        size=row["size"],
        layers=[r[0] for r in layers],
        platform=row["platform"],
        names=names,
        repo_digests=repo_digests,
        added=row["added"],
        labels=_labels_from_json(row["labels"]),
        layer_blobs=[r[1] for r in layers],
    )
