"""A ``kiln`` command leaves the store's WAL to the next one: the commits it made are synced
in the WAL, not checkpointed into the database file at its exit (a WAL made, synced and
deleted by every command), and a command that only reads the store writes and syncs nothing.

An in-process caller's close still checkpoints (``test_ops_context_close``)."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys

# the console script, with every os.fsync of the process named on stderr at its exit
SCRIPT = """
import atexit, os, sys
synced = []
_fsync = os.fsync

def fsync(fd):
    synced.append(os.readlink(f"/proc/self/fd/{fd}"))
    _fsync(fd)

os.fsync = fsync
atexit.register(lambda: sys.stderr.write(f"synced={synced!r}\\n"))
sys.argv = ["kiln", *sys.argv[1:]]
from kiln.cli.main import main
main()
"""


def _kiln(root, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--root", str(root), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stderr.splitlines() if x.startswith("synced=")][-1]
    return ast.literal_eval(line.removeprefix("synced="))


def _state(path) -> tuple[int, int, bytes]:
    st = os.stat(path)
    with open(path, "rb") as f:
        return st.st_size, st.st_mtime_ns, f.read()


def test_a_command_syncs_its_commits_in_the_wal_and_a_reading_one_writes_nothing(tmp_path):
    root = tmp_path / "root"
    db, wal = root / "kiln.db", root / "kiln.db-wal"
    synced = _kiln(root, "images")  # a new store: its schema is committed
    assert str(wal) in synced
    assert wal.stat().st_size > 0  # left for the next command, not checkpointed
    before = {p: _state(p) for p in (db, wal)}

    synced = _kiln(root, "images")
    assert not [p for p in synced if p.startswith(str(root))]
    assert {p: _state(p) for p in (db, wal)} == before

    # what the first command committed is there for any reader of the database
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] > 0
    finally:
        conn.close()


def test_the_wal_a_command_leaves_stays_small(tmp_path):
    """The next command's first connection reads all of it: checkpointed past 1 MiB."""
    from kiln.util.sqlite import WAL_AUTOCHECKPOINT_PAGES, Database

    db = Database(str(tmp_path / "t.db"), ["CREATE TABLE t (x BLOB)"], "a test database")
    try:
        for _ in range(2 * WAL_AUTOCHECKPOINT_PAGES):
            with db.transaction() as conn:
                conn.execute("INSERT INTO t VALUES (?)", (os.urandom(4000),))
        frame = 4096 + 24
        assert os.path.getsize(tmp_path / "t.db-wal") <= (WAL_AUTOCHECKPOINT_PAGES + 8) * frame
    finally:
        db.close()


ENDED_THREAD = """
import os, sys, threading
synced = []
_fsync = os.fsync
os.fsync = lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), _fsync(fd))
from kiln.util.sqlite import Database, leave_wal_at_exit
leave_wal_at_exit()
db = Database(sys.argv[1], ["CREATE TABLE t (x INTEGER)"], "a test database")

def insert():
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")

worker = threading.Thread(target=insert)
worker.start()
worker.join()
reader = threading.Thread(target=db.execute, args=("SELECT 1",))
reader.start()  # its new connection: the ended thread's one is closed
reader.join()
db.close()
print(repr(synced))
"""


def test_a_commit_by_an_ended_thread_is_synced_at_close(tmp_path):
    """The ended thread's connection, closed early, took with it the count of changes
    close looks at: the CLI's close left that commit unsynced in the WAL."""
    from kiln.util.sqlite import Database

    path = str(tmp_path / "t.db")
    Database(path, ["CREATE TABLE t (x INTEGER)"], "a test database").close()  # migrated
    done = subprocess.run([sys.executable, "-c", ENDED_THREAD, path], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert path + "-wal" in ast.literal_eval(done.stdout)
