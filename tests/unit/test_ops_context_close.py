"""Closing a command's context: its scratch dir goes and both databases are checkpointed
(their WAL folded in: the command's commits are in the database files themselves), the
two closes at the same time."""

from __future__ import annotations

import os
import sqlite3

from kiln.ops.context import open_context


def _wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except FileNotFoundError:
        return 0


def test_close_checkpoints_both_databases_and_removes_the_scratch_dir(tmp_path):
    root = tmp_path / "root"
    with open_context(root=str(root)) as ctx:
        scratch = ctx.tmpdir
        snaps = ctx.snapshots
        dbs = [os.path.join(root, "kiln.db"), os.path.join(snaps.root, "snapshots.db")]
        for db in dbs:  # a commit in each (the context's connections stay open meanwhile)
            other = sqlite3.connect(db, isolation_level=None)
            other.execute("CREATE TABLE t_close (x)")
            other.close()
        assert all(_wal_bytes(db) > 0 for db in dbs) and os.path.isdir(scratch)
    assert not os.path.exists(scratch)
    assert [_wal_bytes(db) for db in dbs] == [0, 0]


def test_an_empty_scratch_dir_goes_with_one_rmdir_and_a_used_one_whole(tmp_path, monkeypatch):
    """Most builds leave nothing in their scratch dir: it is removed without a look at the
    mount table; one with files in it is unmounted under and deleted as a whole."""
    import kiln.snapshot.mount as mount_module

    looked: list[str] = []
    real = mount_module.unmount_all_under
    monkeypatch.setattr(
        mount_module, "unmount_all_under", lambda path: looked.append(path) or real(path)
    )
    for used in (False, True):
        with open_context(root=str(tmp_path / "root")) as ctx:
            scratch = ctx.tmpdir
            if used:
                os.makedirs(os.path.join(scratch, "sub"))
                with open(os.path.join(scratch, "sub", "f"), "w") as f:
                    f.write("x")
        assert not os.path.exists(scratch)
        assert looked == ([scratch] if used else [])
