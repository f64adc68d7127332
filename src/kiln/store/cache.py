"""The build cache (step key -> image), what went into each key (for ``--explain``) and
the stat-keyed context checksum cache."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from kiln.store.context_indexes import (
    CONTEXT_INDEX_DIR,
    IndexFile,
    list_indexes,
    name_directory,
    remove_indexes,
)
from kiln.store.db import Database
from kiln.util.process_owner import is_alive, this_process

#: seconds: a cache hit rewrites its entry's ``last_used`` only when the recorded one is
#: older (``prune_cache`` ages are minutes to days): a rebuild within it writes nothing
TOUCH_AFTER = 60.0


class BuildCache:
    """The build-cache role: step key -> image, what went into each key, and the
    checksums of build contexts."""

    def __init__(self, root: str, db: Database):
        self.root = root
        self.db = db
        self._untrimmed = False  # put_cache_inputs(trim=False) wrote rows since the last trim

    def put_cache(self, key: str, image_id: str) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO build_cache(key, image_id, created, last_used) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET image_id=excluded.image_id, "
                "last_used=excluded.last_used",
                (key, image_id, now, now),
            )

    def get_cache(self, key: str) -> str | None:
        """The image cached under ``key``; a hit marks the entry used (within ``TOUCH_AFTER``
        seconds: a fully cached build takes no write lock per step)."""
        row = self.db.one("SELECT image_id, last_used FROM build_cache WHERE key=?", (key,))
        if row is None:
            return None
        now = time.time()
        if not 0 <= now - row[1] < TOUCH_AFTER:
            with self.db.transaction() as conn:
                conn.execute("UPDATE build_cache SET last_used=? WHERE key=?", (now, key))
        return str(row[0])

    def delete_cache(self, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM build_cache WHERE key=?", (key,))

    def prune_cache(self, unused_for: float = 0.0) -> int:
        """Drop build-cache entries not used for ``unused_for`` seconds; returns how many."""
        cutoff = time.time() - unused_for
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM build_cache WHERE last_used <= ?", (cutoff,))
            conn.execute("DELETE FROM cache_inputs WHERE created <= ?", (cutoff,))
            count = cur.rowcount
        # context checksum indexes not rewritten since (a cache too: the next build rehashes)
        folder = os.path.join(self.root, CONTEXT_INDEX_DIR)
        remove_indexes(folder, written_before=cutoff)
        return count

    # -- what went into each key (``kiln build --explain``) ------------------------------

    #: inputs kept per step locator, and in all: older ones are dropped as new ones come
    inputs_per_locator = 4
    inputs_max = 2000
    inputs_max_bytes = 128 * 1024  # compressed, per key: past it the file lists are dropped

    def put_cache_inputs(
        self, key: str, locator: str, instruction: str, inputs: dict[str, Any], *,
        trim: bool = True,
    ) -> None:  # fmt: skip
        """Remember what went into ``key`` (``kiln.build.cache_key.step_inputs`` plus file
        lists); kept bounded: the newest few per ``locator``, the newest ``inputs_max``, each
        at most ``inputs_max_bytes`` compressed (else without its file lists).

        ``trim=False``: the bounds wait for ``trim_cache_inputs`` (a build trims once at its
        end, not at every step: the bound on all rows sorts the whole table)."""
        self.put_packed_cache_inputs(
            self.pack_cache_inputs(key, locator, instruction, inputs), trim=trim
        )

    def pack_cache_inputs(
        self, key: str, locator: str, instruction: str, inputs: dict[str, Any]
    ) -> PackedInputs:
        """The row ``put_cache_inputs`` writes, made without touching the database: a
        build packs a step's inputs (compressing its file lists) before the step's one
        write transaction, so the write lock is not held meanwhile."""
        instr = json.dumps(inputs.get("instruction", {}), sort_keys=True)
        blob = _packed(inputs)
        if len(blob) > self.inputs_max_bytes and inputs.get("manifests"):
            blob = _packed({**inputs, "manifests": {}})  # too many files to name: none named
        parent = str(inputs.get("parent", ""))
        return PackedInputs(key, locator, parent, instruction, _short_hash(instr), blob)

    def put_packed_cache_inputs(self, row: PackedInputs, *, trim: bool = True) -> None:
        """Write a row ``pack_cache_inputs`` made (``trim`` as in ``put_cache_inputs``)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cache_inputs(key, locator, parent, instruction, "
                "instruction_digest, created, inputs) VALUES (?,?,?,?,?,?,?)",
                (row.key, row.locator, row.parent, row.instruction,
                 row.instruction_digest, time.time(), row.blob),
            )  # fmt: skip
            if not trim:
                self._untrimmed = True
            else:
                conn.execute(
                    "DELETE FROM cache_inputs WHERE locator=? AND key NOT IN (SELECT key FROM "
                    "cache_inputs WHERE locator=? ORDER BY created DESC LIMIT ?)",
                    (row.locator, row.locator, self.inputs_per_locator),
                )
                self._trim_all(conn)

    def trim_cache_inputs(self, *, if_put: bool = False) -> None:
        """Apply the bounds of ``put_cache_inputs`` to every row: the newest
        ``inputs_per_locator`` per locator, the newest ``inputs_max`` in all. ``if_put``:
        only if this store put untrimmed rows since its last trim (a build whose every
        step was cached sorts no table and takes no write lock), and only if a row is past
        the bounds (a read of the locator index: most builds have nothing to trim)."""
        if if_put and not self._untrimmed:
            return
        self._untrimmed = False
        if if_put and not self._past_bounds():
            return
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM cache_inputs WHERE key IN (SELECT key FROM (SELECT key, "
                "ROW_NUMBER() OVER (PARTITION BY locator ORDER BY created DESC) AS newer "
                "FROM cache_inputs) WHERE newer > ?)",
                (self.inputs_per_locator,),
            )
            self._trim_all(conn)

    def _past_bounds(self) -> bool:
        """Whether a trim would drop a row: a locator with more than its rows, or more
        rows than in all."""
        return bool(
            self.db.value(
                "SELECT (SELECT COUNT(*) FROM cache_inputs) > ? OR EXISTS (SELECT 1 FROM "
                "cache_inputs GROUP BY locator HAVING COUNT(*) > ?)",
                (self.inputs_max, self.inputs_per_locator),
            )
        )

    def _trim_all(self, conn: Any) -> None:
        conn.execute(
            "DELETE FROM cache_inputs WHERE key NOT IN (SELECT key FROM cache_inputs "
            "ORDER BY created DESC LIMIT ?)",
            (self.inputs_max,),
        )

    def has_cache_inputs(self, key: str) -> bool:
        return self.db.one("SELECT 1 FROM cache_inputs WHERE key=?", (key,)) is not None

    def cache_inputs_candidates(
        self, key: str, locator: str, parent: str, instruction_fields: dict[str, Any], *,
        with_inputs: bool = True,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Earlier inputs that may explain a miss of ``key``: those of the same step
        (locator), the same parent or the same instruction, newest first; each with
        ``key``, ``locator``, ``parent``, ``instruction``, ``created`` and ``inputs``.
        ``with_inputs=False``: without ``inputs`` (up to 64 blobs not decompressed, for a
        caller that picks one and reads it with ``get_cache_inputs``)."""
        digest = _short_hash(json.dumps(instruction_fields, sort_keys=True))
        rows = self.db.query(
            "SELECT key, locator, parent, instruction, instruction_digest, created"
            + (", inputs" if with_inputs else "")
            + " FROM cache_inputs WHERE key != ? AND (locator=? OR parent=? OR "
            "instruction_digest=?) ORDER BY created DESC LIMIT 64",
            (key, locator, parent, digest),
        )
        out = []
        for r in rows:
            found = {"key": r["key"], "locator": r["locator"], "parent": r["parent"],
                     "instruction": r["instruction"], "created": r["created"],
                     "same_instruction": r["instruction_digest"] == digest}  # fmt: skip
            if with_inputs:
                inputs = _unpacked(r["inputs"])
                if inputs is None:
                    continue
                found["inputs"] = inputs
            out.append(found)
        return out

    def get_cache_inputs(self, key: str) -> dict[str, Any] | None:
        """What went into ``key`` as ``put_cache_inputs`` kept it; None if not kept (or
        unreadable)."""
        row = self.db.one("SELECT inputs FROM cache_inputs WHERE key=?", (key,))
        return None if row is None else _unpacked(row[0])

    def prune_cache_orphans(self) -> int:
        """Drop build-cache entries whose image is no longer in the store; returns how many."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM build_cache WHERE image_id NOT IN (SELECT id FROM images)"
            )
            return cur.rowcount

    def count_cache(self) -> int:
        """How many build-cache entries there are."""
        row = self.db.one("SELECT COUNT(*) FROM build_cache")
        return int(row[0]) if row is not None else 0

    def get_checksum(self, path: str, st: os.stat_result) -> str | None:
        row = self.db.one("SELECT * FROM checksum_cache WHERE path=?", (path,))
        if row is None or tuple(row)[1:7] != _stat_key(st):
            return None
        return row["digest"]

    def get_checksums(self, prefix: str) -> dict[str, tuple[tuple[int, ...], str]]:
        """Every cached checksum of a path under directory ``prefix``, in one query:
        ``{path: ((dev, ino, size, mtime_ns, ctime_ns, mode), digest)}``."""
        base = prefix.rstrip("/") + "/"
        cur = self.db.execute(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, digest FROM checksum_cache "
            "WHERE path >= ? AND path < ?",
            (base, base[:-1] + "0"),  # "0" sorts right after "/": the range is the subtree
        )
        # row by row, not fetchall: 200,000 rows would be held twice (~80 MB more)
        return {path: ((dev, ino, size, mt, ct, mode), digest)
                for path, dev, ino, size, mt, ct, mode, digest in cur}  # fmt: skip

    def put_checksum(self, path: str, st: os.stat_result, digest: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO checksum_cache(path, dev, ino, size, mtime_ns, ctime_ns, "
                "mode, digest) VALUES (?,?,?,?,?,?,?,?)",
                (path, *_stat_key(st), digest),
            )

    def put_checksums(self, items: Iterable[tuple[str, tuple[int, ...], str]]) -> None:
        """Many checksums in one transaction, streamed (never listed whole):
        ``(path, (dev, ino, size, mtime_ns, ctime_ns, mode), digest)`` each."""
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO checksum_cache(path, dev, ino, size, mtime_ns, ctime_ns, "
                "mode, digest) VALUES (?,?,?,?,?,?,?,?)",
                ((path, *key, digest) for path, key, digest in items),
            )

    def get_context_index(self, context_root: str) -> bytes | None:
        """The checksum index last stored for the context directory ``context_root``
        (opaque bytes, see ``kiln.build.context_index``), or None."""
        f = self.open_context_index(context_root)
        if f is None:
            return None
        try:
            with f:
                return f.read()
        except OSError:
            return None

    def open_context_index(self, context_root: str) -> io.BufferedReader | None:
        """The checksum index of ``context_root`` opened for reading (the caller closes it),
        or None: a big one is read a piece at a time (``kiln.build.context_index``)."""
        # only a regular file: anything else there (a FIFO, a link to /dev/zero) is not an
        # index kiln wrote, and reading it could block or never end
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(_index_path(self.root, context_root), flags)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            return os.fdopen(fd, "rb")
        except OSError:
            os.close(fd)
            return None

    def list_context_indexes(self) -> list[IndexFile]:
        """The context checksum indexes kept (``system df``'s build cache)."""
        return list_indexes(os.path.join(self.root, CONTEXT_INDEX_DIR))

    def put_context_index(self, context_root: str, chunks: Iterable[bytes]) -> None:
        """Replace the index of ``context_root`` (``chunks`` joined, written as they come)
        atomically. Not fsynced: it is a cache that checks itself when read, and a lost
        one costs a rehash, never a wrong digest."""
        path = _index_path(self.root, context_root)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{this_process()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            os.replace(tmp, path)
            name_directory(path, context_root)  # so a GC can tell when it is gone
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _remove_dead_writers(path)


def _remove_dead_writers(path: str) -> None:
    """Remove the temporary files of the index ``path`` that a killed writer left (as big
    as the index: tens of MB for a big context). Each names its writer (``<index>.<owner>.
    <thread>.tmp``); one whose process still runs is being written."""
    folder, base = os.path.split(path)
    prefix = base + "."
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                owner = entry.name[len(prefix) : -len(".tmp")].rpartition(".")[0]
                if not is_alive(owner):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _index_path(store_root: str, context_root: str) -> str:
    name = hashlib.sha256(context_root.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(store_root, CONTEXT_INDEX_DIR, name)


class PackedInputs(NamedTuple):
    """One ``cache_inputs`` row, ready to write (``pack_cache_inputs``)."""

    key: str
    locator: str
    parent: str
    instruction: str
    instruction_digest: str
    blob: bytes


def _packed(inputs: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(inputs, sort_keys=True).encode("utf-8", "replace"), 6)


def _unpacked(blob: bytes) -> dict[str, Any] | None:
    try:
        inputs = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        return None
    return inputs if isinstance(inputs, dict) else None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
