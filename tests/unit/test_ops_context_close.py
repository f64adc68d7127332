"""Closing a command's context: its scratch dir goes and both databases are checkpointed
(their WAL folded in: the command's commits are in the database files themselves), the
two closes at the same time."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from kiln.ops.config import Config
from kiln.ops.context import Context, open_context
from kiln.store import Store


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


def _ctrl_c_after(fn):
    """``fn``, then a Ctrl-C in this (the main) thread: Python raises it at once."""

    def then_ctrl_c(*args, **kwargs):
        result = fn(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    return then_ctrl_c


def _scratch_dirs(base) -> list[str]:
    return [n for n in os.listdir(base) if n.startswith("kiln-scratch-")]


def test_a_ctrl_c_as_the_scratch_dir_is_made_leaves_no_directory_behind(tmp_path, monkeypatch):
    """Interrupted right after the directory was made, before the context knew it: the
    directory stayed, nobody's (found by the interrupt fuzzer, ``kiln copy``)."""
    import kiln.ops.context as context_module

    monkeypatch.setattr(
        context_module, "make_scratch_dir", _ctrl_c_after(context_module.make_scratch_dir)
    )
    base = tmp_path / "tmp"
    config = Config.from_env(root=str(tmp_path / "root"), tmpdir=str(base))
    with pytest.raises(KeyboardInterrupt), open_context(config.root, config=config) as ctx:
        ctx.tmpdir  # noqa: B018
    assert _scratch_dirs(base) == []


def test_a_ctrl_c_as_the_context_closes_still_closes_it(tmp_path, monkeypatch):
    """Interrupted in its first lines, ``close`` forgot the scratch dir and closed nothing."""
    import kiln.ops.context as context_module

    real = context_module.run_together

    def ctrl_c_then(jobs):
        signal.raise_signal(signal.SIGINT)
        real(jobs)

    monkeypatch.setattr(context_module, "run_together", ctrl_c_then)
    base = tmp_path / "tmp"
    config = Config.from_env(root=str(tmp_path / "root"), tmpdir=str(base))
    ctx = Context(store=Store.open(config.root), config=config)
    assert os.path.basename(ctx.tmpdir) in _scratch_dirs(base)
    with pytest.raises(KeyboardInterrupt):
        ctx.close()
    assert _scratch_dirs(base) == []
