"""Which stored image another was built on, and which it is the parent of, by index.

podman's rule (libimage's layer tree: ``image inspect``'s ``Parent``, ``images``'
``ParentId``, what is dangling, intermediate or a child): ``p`` is a parent of ``c`` when
``p``'s top layer is ``c``'s top layer (``c``'s step only changed metadata) or the one
below it (``c``'s step added one layer), and ``p``'s history is a strict prefix of
``c``'s. Sharing layers is not enough: an unnamed image whose layers another image
extends with an unrelated history (another import of the same tarball) is dangling.
Among several parents the one with the longest history wins, then the earliest added.

Columns of ``images`` answer that with indexed lookups and no config read:

- ``top_chain``: the chain ID of the image's top layer (NULL: no layers). A chain ID
  names its whole chain, so ``p``'s layers are a prefix of ``c``'s exactly when
  ``p.top_chain`` is one of ``c``'s chain IDs;
- ``layer_count``;
- ``history_key``: a rolling digest of the config's history entries,
  ``k0 = sha256("")``, ``k(i+1) = sha256(k(i) + canonical(entry i))``, so each prefix of a
  history has a key. ``''``: the config could not be read (never a parent);
- ``parent_keys`` (V10): the first 16 bytes of the keys of the strict prefixes of the
  history a parent could have, shortest first: those that made one layer less than the
  image or as many (all strict prefixes when the history does not count the layers, as
  a tool that rewrites history leaves it). ``b''``: no parent possible (no layers, or an
  unreadable config).

Rows stored before V6 and V10 are filled from their configs when the store opens.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from json.encoder import encode_basestring

from kiln.errors import KilnError, NotFound
from kiln.oci import Digest, History, ImageConfig
from kiln.oci.strict_json import MAX_CONFIG_BYTES, canonical
from kiln.store import paths
from kiln.store.db import Database

UNREADABLE = ""

KEY_BYTES = 16  # of a history key, in parent_keys: 128 bits tell the prefixes apart
_KEYS_PER_STATEMENT = 500  # history keys bound in one statement (SQLite's limit is higher)

# each image with the chain ID below its top one (NULL with fewer than two layers)
_RELATION_ROWS = (
    "SELECT i.id, i.top_chain, i.history_key, i.parent_keys, i.added, il.chain_id AS below "
    "FROM images i LEFT JOIN image_layers il "
    "ON il.image_id = i.id AND il.position = i.layer_count - 2"
)


def stored_history(root: str, config_digest: str) -> Sequence[History] | None:
    """The stored config's history; None if the config cannot be read."""
    try:
        with open(paths.blob_path(root, Digest.parse(config_digest)), "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        return ImageConfig.parse(raw).history
    except (OSError, KilnError, ValueError):
        return None


def keys_of(history: Sequence[History]) -> list[str]:
    """The key of every prefix of ``history`` (``[k0, ..., kN]``)."""
    key = hashlib.sha256(b"").hexdigest()
    keys = [key]
    for entry in history:
        key = hashlib.sha256(key.encode() + _canonical_entry(entry)).hexdigest()
        keys.append(key)
    return keys


# History.to_json's keys, in the order canonical() sorts them
_ENTRY_FIELDS = (
    ("author", '"author":'),
    ("comment", '"comment":'),
    ("created", '"created":'),
    ("created_by", '"created_by":'),
)


def _canonical_entry(entry: History) -> bytes:
    """``canonical(entry.to_json())``, the same bytes, written out for the usual entry of
    strings (an image inspect hashes every entry of its history); anything else goes the
    long way."""
    parts = []
    for name, head in _ENTRY_FIELDS:
        value = getattr(entry, name)
        if value:
            if type(value) is not str:
                return canonical(entry.to_json())
            parts.append(head + encode_basestring(value))
    if entry.empty_layer:
        parts.append('"empty_layer":true')
    return ("{" + ",".join(parts) + "}").encode()


def parent_keys(history: Sequence[History] | None, layer_count: int) -> bytes:
    """The ``parent_keys`` column of an image with this history and as many layers."""
    if history is None or not layer_count:
        return b""
    return b"".join(bytes.fromhex(k)[:KEY_BYTES] for k in _parent_key_list(history, layer_count))


def _parent_key_list(history: Sequence[History], layer_count: int) -> list[str]:
    """The whole keys of the strict prefixes of ``history`` a parent could have, shortest
    first (see ``parent_keys``)."""
    keys = keys_of(history)
    made = [0]  # made[n]: layers the first n entries made
    for entry in history:
        made.append(made[-1] + (0 if entry.empty_layer else 1))
    if made[-1] == layer_count:
        lengths: Sequence[int] = [n for n in range(len(history)) if made[n] >= layer_count - 1]
    else:
        lengths = range(len(history))
    return [keys[n] for n in lengths]


def index_columns(root: str, config_digest: str, layers: list[str],
                  history: Sequence[History] | None = None) -> tuple:  # fmt: skip
    """``(top_chain, layer_count, history_key, parent_keys)`` of an image being put;
    ``history``: its stored config's, when the caller has parsed it (else the config is
    read back)."""
    if history is None:
        history = stored_history(root, config_digest)
    key = keys_of(history)[-1] if history is not None else UNREADABLE
    top = layers[-1] if layers else None
    return (top, len(layers), key, parent_keys(history, len(layers)))


def _short(history_key: str | None) -> bytes | None:
    return bytes.fromhex(history_key)[:KEY_BYTES] if history_key else None


def _prefix_rank(keys: bytes) -> dict[bytes, int]:
    """The ``parent_keys`` of an image: key -> how long the prefix is, in rank."""
    return {keys[i : i + KEY_BYTES]: i for i in range(0, len(keys), KEY_BYTES)}


class Lineage:
    """Which stored image another was built on and which images it is the parent of
    (podman's rule, see the module docstring), by index."""

    def __init__(self, root: str, db: Database):
        self.root = root
        self.db = db

    def parent_of(
        self,
        image_id: str,
        layers: list[str],
        config_digest: str,
        history: Sequence[History] | None = None,
    ) -> str | None:
        """The ID of the image ``image_id`` (with these layers and config) was built on, as
        podman's ``Parent``; None if it has none. ``history``: its config's history, when
        the caller has parsed it (``image inspect``); else its row's ``parent_keys``."""
        if not layers:
            return None
        tops = (layers[-1], layers[-2] if len(layers) > 1 else layers[-1])
        if history is not None:  # parsed already: hashing it costs less than a statement
            whole = _parent_key_list(history, len(layers))
            return self._parent_by_whole_keys(whole, tops, image_id)
        row = self.db.one("SELECT parent_keys FROM images WHERE id=?", (image_id,))
        keys: bytes | None = row[0] if row is not None else None
        if keys is None:  # written by an older kiln since this store was opened
            keys = parent_keys(stored_history(self.root, config_digest), len(layers))
        # each prefix key the parent could have, longest first: the images on one of these
        # top chains whose history key starts with it (hex digits sort below 'g'), found
        # by one index on both (V11) whatever the count of images on the same layers or
        # with the same history; the longest prefix wins, then the earliest added
        for i in range(len(keys) - KEY_BYTES, -1, -KEY_BYTES):
            low = keys[i : i + KEY_BYTES].hex()
            rows = self.db.query(
                "SELECT id, added FROM images WHERE history_key >= ? AND history_key < ? "
                "AND top_chain IN (?, ?) AND id != ?",
                (low, low + "g", *tops, image_id),
            )
            if rows:
                return min((row["added"], row["id"]) for row in rows)[1]
        return None

    def _parent_by_whole_keys(self, keys: list[str], tops: tuple[str, str],
                              image_id: str) -> str | None:  # fmt: skip
        """``parent_of`` from the whole prefix keys (shortest first): looked up all at once
        on the index of top chain and history key (V11)."""
        rank = {key: n for n, key in enumerate(keys)}
        best: tuple[int, float, str] | None = None
        for start in range(0, len(keys), _KEYS_PER_STATEMENT):
            chunk = keys[start : start + _KEYS_PER_STATEMENT]
            rows = self.db.query(
                "SELECT id, history_key, added FROM images WHERE top_chain IN (?, ?) "
                f"AND history_key IN ({','.join('?' * len(chunk))}) AND id != ?",
                (*tops, *chunk, image_id),
            )
            for row in rows:
                candidate = (-rank[row["history_key"]], row["added"], row["id"])
                best = candidate if best is None or candidate < best else best
        return best[2] if best else None

    def children_of(self, image_id: str) -> list[str]:
        """The images ``image_id`` is a parent of (podman's rule), sorted; ``NotFound`` if
        no such image. Read from the images on its top layer and one layer above it."""
        if len(image_id) == 64 and ":" not in image_id:
            image_id = "sha256:" + image_id
        row = self.db.one(
            "SELECT top_chain, layer_count, history_key FROM images WHERE id=?", (image_id,)
        )
        if row is None:
            raise NotFound(f"{image_id}: image not known")
        top, count, mine = row["top_chain"], row["layer_count"], _short(row["history_key"])
        if top is None or mine is None:
            return []
        rows = self.db.query(
            "SELECT id, parent_keys FROM images WHERE top_chain=? AND id != ? UNION ALL "
            "SELECT i.id, i.parent_keys FROM image_layers il JOIN images i ON i.id = il.image_id "
            "WHERE il.chain_id=? AND il.position=? AND i.layer_count=?",
            (top, image_id, top, count - 1, count + 1),
        )
        return sorted(
            r["id"] for r in rows if r["parent_keys"] and mine in _prefix_rank(r["parent_keys"])
        )

    def parent_links(self) -> tuple[dict[str, str], set[str]]:
        """Every image's parent (image ID -> parent ID; none: not there) and the images
        that are a parent of some image, in one query of the index columns."""
        rows = self.db.query(_RELATION_ROWS)
        on_layer: dict[tuple[bytes, str], list[tuple[float, str]]] = {}
        for r in rows:
            key = _short(r["history_key"])
            if key is not None and r["top_chain"] is not None:
                on_layer.setdefault((key, r["top_chain"]), []).append((r["added"], r["id"]))
        parents: dict[str, str] = {}
        with_children: set[str] = set()
        for r in rows:
            keys, child = r["parent_keys"], r["id"]
            if not keys:
                continue
            tops = {r["top_chain"], r["below"]} - {None}
            best: tuple[int, float, str] | None = None
            for i in range(0, len(keys), KEY_BYTES):
                for top in tops:
                    for added, parent in on_layer.get((keys[i : i + KEY_BYTES], top), ()):
                        if parent != child:
                            with_children.add(parent)
                            candidate = (-i, added, parent)
                            best = candidate if best is None or candidate < best else best
            if best is not None:
                parents[child] = best[2]
        return parents, with_children

    def fill(self) -> None:
        """Record ``history_key`` and ``parent_keys`` of images stored before schema V6
        and V10, from their configs."""
        pending = self.db.query(
            "SELECT id, config_digest, layer_count FROM images WHERE parent_keys IS NULL "
            "LIMIT 100000"
        )
        if not pending:
            return
        updates = []
        for image_id, config_digest, layer_count in pending:
            history = stored_history(self.root, config_digest)
            key = keys_of(history)[-1] if history is not None else UNREADABLE
            updates.append((key, parent_keys(history, layer_count), image_id))
        with self.db.transaction() as conn:
            conn.executemany("UPDATE images SET history_key=?, parent_keys=? WHERE id=?", updates)


def put_lineage(conn: sqlite3.Connection, root: str, image_id: str, config_digest: str,
                layers: list[str], history: Sequence[History] | None = None) -> None:  # fmt: skip
    """Record the lineage columns of an image just put (inside its transaction)."""
    conn.execute(
        "UPDATE images SET top_chain=?, layer_count=?, history_key=?, parent_keys=? WHERE id=?",
        (*index_columns(root, config_digest, layers, history), image_id),
    )
