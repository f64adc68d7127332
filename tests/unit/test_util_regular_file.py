"""``open_regular_file`` under a Ctrl-C at each of its points: the descriptor is closed
exactly once (the file's or the clean-up's), never twice (a second close of a number that
may be another thread's by then: a socket, a blob)."""

from __future__ import annotations

import os

from kiln.util import regular_file


def test_a_ctrl_c_at_any_point_closes_the_descriptor_once(tmp_path):
    from ctrl_c_anywhere import every_point, open_fds

    path = tmp_path / "blob"
    path.write_bytes(b"x")
    opened: list[object] = []

    def call() -> None:
        with regular_file.open_regular_file(str(path)) as f:
            opened.append(f.read())

    before = open_fds()
    trials = 0
    # a second close of the same number fails EBADF here (one thread): an OSError, not the
    # KeyboardInterrupt, comes out of the trial
    for n, _interrupted in every_point(call, within=(regular_file.__file__,)):
        trials += 1
        assert open_fds().keys() == before.keys(), f"point {n} left a descriptor open"
    assert trials > 3
    assert opened and opened[-1] == b"x"
    assert os.path.exists(path)
