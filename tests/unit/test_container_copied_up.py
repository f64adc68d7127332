"""The directories a run copied up only for its mountpoints, found and pruned without following
symlinks out of the layers."""

from __future__ import annotations

import os

from kiln.container.copied_up import (
    below,
    exists_in,
    placeholder_parents,
    prune_copied_up,
    prune_unchanged,
)


def test_placeholder_parents_are_deepest_first_and_any_spelling_terminates():
    got = placeholder_parents(["//srv//cache/x", "/srv/cache/y/", "run/secrets/s", "/"])
    assert got[:2] == ["/srv/cache", "/run/secrets"] or got[:2] == ["/run/secrets", "/srv/cache"]
    assert set(got) == {"/etc", "/srv", "/srv/cache", "/run", "/run/secrets"}


def test_prune_removes_only_unchanged_empty_copies(tmp_path):
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    for d in ("srv/cache", "etc", "opt"):
        (lower / d).mkdir(parents=True)
        (upper / d).mkdir(parents=True)
    (upper / "etc" / "kept").write_text("x")
    os.chmod(upper / "opt", 0o700)
    removed = prune_copied_up(str(upper), [str(lower)], ["/srv/cache", "/etc", "/opt", "/none"])
    assert removed == ["/srv/cache"]
    assert (upper / "etc" / "kept").exists() and (upper / "opt").is_dir()


def test_prune_never_follows_a_symlink_the_run_planted(tmp_path):
    victim = tmp_path / "victim"
    (victim / "x").mkdir(parents=True)
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    (lower / "data" / "x").mkdir(parents=True)
    os.symlink("data", lower / "app")
    os.symlink(str(victim), upper / "app")
    assert not exists_in(str(upper), "/app/x")
    assert prune_copied_up(str(upper), [str(lower)], ["/app/x", "/app"]) == []
    assert (victim / "x").is_dir()


def test_what_was_below_is_read_from_the_merged_view_before_the_run(tmp_path):
    # the merged view (here a plain tree) shows the first lower holding each path
    merged, upper = tmp_path / "merged", tmp_path / "upper"
    (merged / "etc").mkdir(parents=True)
    (merged / "srv").mkdir()
    os.chmod(merged / "srv", 0o750)
    (merged / "file").write_text("x")
    os.symlink("etc", merged / "lnk")
    before = below(str(merged), ["/etc", "/srv", "/file", "/lnk", "/none"])
    assert before["/etc"] is not None and before["/srv"][0] & 0o777 == 0o750
    assert before["/file"] is None and before["/lnk"] is None and before["/none"] is None
    # the run copied up /etc and /srv (as they were) and created /file/, /lnk/ and /none/
    for d in ("etc", "srv", "file", "lnk", "none"):
        (upper / d).mkdir(parents=True)
    os.chmod(upper / "srv", 0o750)
    assert prune_unchanged(str(upper), before) == ["/etc", "/srv"]
    assert sorted(os.listdir(upper)) == ["file", "lnk", "none"]
