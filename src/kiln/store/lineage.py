"""Which stored image another was built on, found by index instead of by scanning.

podman's rule (``image inspect``'s ``Parent``): a parent's layers are a prefix of the
child's (equal when the child's step only changed metadata) and its history a strict
prefix of the child's; among those the longest history wins. Images from tools that
rewrite history fall back to the image with the longest strict layer-chain prefix.

Three columns of ``images`` (schema V6) answer that with a few indexed lookups,
whatever the number of images (``images_lineage`` on history key and top chain, V9):

- ``top_chain``: the chain ID of the image's top layer (NULL: no layers). A chain ID
  names its whole chain, so ``o``'s layers are a prefix of ``r``'s exactly when
  ``o.top_chain`` is one of ``r``'s chain IDs (or ``o`` has no layers);
- ``layer_count``;
- ``history_key``: a rolling digest of the config's history entries,
  ``k0 = sha256("")``, ``k(i+1) = sha256(k(i) + canonical(entry i))``, so each prefix of a
  history has a key and an image whose history is a prefix of ``r``'s has one of the
  keys of ``r``'s prefixes. ``''``: the config could not be read (never a parent by
  history). Rows stored before V6 are filled when the store opens.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from json.encoder import encode_basestring

from kiln.errors import KilnError
from kiln.oci import Digest, History, ImageConfig
from kiln.oci.strict_json import MAX_CONFIG_BYTES, canonical
from kiln.store import paths
from kiln.store.db import Database

UNREADABLE = ""

_CANDIDATES = "SELECT id, history_key, top_chain, layer_count, added FROM images"


def stored_history(root: str, config_digest: str) -> Sequence[History] | None:
    """The stored config's history; None if the config cannot be read."""
    try:
        with open(paths.blob_path(root, Digest.parse(config_digest)), "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        return ImageConfig.parse(raw).history
    except (OSError, KilnError, ValueError):
        return None


def history_keys(root: str, config_digest: str) -> list[str] | None:
    """The key of every prefix of the stored config's history (``[k0, ..., kN]``); None if
    the config cannot be read."""
    history = stored_history(root, config_digest)
    return None if history is None else keys_of(history)


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


def index_columns(root: str, config_digest: str, layers: list[str],
                  history: Sequence[History] | None = None) -> tuple:  # fmt: skip
    """``(top_chain, layer_count, history_key)`` of an image being put; ``history``: its
    stored config's, when the caller has parsed it (else the config is read back)."""
    keys = history_keys(root, config_digest) if history is None else keys_of(history)
    return (layers[-1] if layers else None, len(layers), keys[-1] if keys else UNREADABLE)


class Lineage:
    """Which stored image another was built on (``parent_of``), by index."""

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
        """The ID of the image ``image_id`` (with these layers and config) was built on.
        ``history``: its config's history when the caller has parsed the config already
        (``image inspect``), which spares reading and parsing it again."""
        if history is None:
            history = stored_history(self.root, config_digest)
        if history:
            found = self._parent_by_history(image_id, layers, history)
            if found is not None:
                return found
        for chain in reversed(layers[:-1]):
            row = self.db.one(
                "SELECT id FROM images WHERE top_chain=? AND id != ? ORDER BY added, id LIMIT 1",
                (chain, image_id),
            )
            if row is not None:
                return row[0]
        return None

    def _parent_by_history(
        self, image_id: str, layers: list[str], history: Sequence[History]
    ) -> str | None:
        """Among images whose history is a strict prefix of ``history`` and whose layers are
        a prefix of ``layers``, the one with the longest history, the earliest added of
        equals. Searched in the index ``images_lineage`` (schema V9) on both conditions, so
        the rows read are the candidates, however many images share a history prefix with
        other layers (every rebuild of one Dockerfile with another context does).

        When the history's layer entries (``empty_layer`` false) count the layers, as a
        build leaves them, the image a prefix of n entries was is one with as many layers
        as those n entries made: one (history key, top chain) pair per prefix, one search
        each. A history that does not count the layers (rewritten by some tool) pairs
        every prefix with every layer prefix (so does one of 500 entries or more: an OR of
        as many terms would pass SQLite's expression depth)."""
        keys = keys_of(history)[:-1]
        made = [0]  # made[n]: layers the first n entries made
        for entry in history[:-1]:
            made.append(made[-1] + (0 if entry.empty_layer else 1))
        if made[-1] + (0 if history[-1].empty_layer else 1) == len(layers) and len(keys) < 500:
            pairs = [(key, layers[m - 1] if m else None) for key, m in zip(keys, made, strict=True)]
            where = " OR ".join(
                "(history_key=? AND top_chain=?)"
                if top
                else "(history_key=? AND top_chain IS NULL)"
                for _, top in pairs
            )
            params = [v for key, top in pairs for v in ((key, top) if top else (key,))]
            sql = f"{_CANDIDATES} WHERE ({where}) AND id != ?"
            rows = self.db.query(sql, (*params, image_id))
        else:  # two searches, not one OR: SQLite would search an OR by the history key alone
            k, c = ",".join("?" * len(keys)), ",".join("?" * len(layers))
            sql = (
                f"{_CANDIDATES} WHERE history_key IN ({k}) AND top_chain IN ({c}) AND id != ? "
                f"UNION ALL {_CANDIDATES} WHERE history_key IN ({k}) AND top_chain IS NULL "
                "AND id != ?"
            )
            rows = self.db.query(sql, (*keys, *layers, image_id, *keys, image_id))
        length = {k: i for i, k in enumerate(keys)}
        best: tuple[int, float, str] | None = None
        for row in rows:
            count, top = row["layer_count"] or 0, row["top_chain"]
            if count > len(layers) or (count and layers[count - 1] != top):
                continue  # its layers are not a prefix of this image's
            # the longest history first, then the earliest added (then the smallest ID)
            rank = (-length[row["history_key"]], row["added"], row["id"])
            if best is None or rank < best:
                best = rank
        return best[2] if best else None

    def fill(self) -> None:
        """Record ``history_key`` of images stored before schema V6, from their configs."""
        pending = self.db.query(
            "SELECT id, config_digest FROM images WHERE history_key IS NULL LIMIT 100000"
        )
        if not pending:
            return
        updates = []
        for image_id, config_digest in pending:
            keys = history_keys(self.root, config_digest)
            updates.append((keys[-1] if keys else UNREADABLE, image_id))
        with self.db.transaction() as conn:
            conn.executemany("UPDATE images SET history_key=? WHERE id=?", updates)


def put_lineage(conn: sqlite3.Connection, root: str, image_id: str, config_digest: str,
                layers: list[str], history: Sequence[History] | None = None) -> None:  # fmt: skip
    """Record the lineage columns of an image just put (inside its transaction)."""
    conn.execute(
        "UPDATE images SET top_chain=?, layer_count=?, history_key=? WHERE id=?",
        (*index_columns(root, config_digest, layers, history), image_id),
    )
