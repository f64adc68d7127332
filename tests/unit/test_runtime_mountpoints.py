"""In-root path resolution and the mountpoint placeholders built on it."""

import os

from kiln.runtime.mountpoints import ensure, prepare
from kiln.runtime.options import Mount, RunOptions
from kiln.util.inroot import InRoot


def test_resolve_clamps_dotdot_and_absolute_links(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink("/a", tmp_path / "link")
    os.symlink("../../../../a", tmp_path / "up")
    with InRoot(str(tmp_path)) as root:
        assert root.resolve("/link/../../link") == "/a"
        assert root.resolve("up") == "/a"


def test_ensure_does_not_escape_through_symlinks(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(str(outside), root / "etc")  # absolute host path: must mean <root>/<that path>
    with InRoot(str(root)) as r:
        created = ensure(r, "/etc/hosts", directory=False)
    assert not os.listdir(outside)
    assert created[-1].endswith("/hosts")
    assert os.path.isfile(str(root) + created[-1])


def test_prepare_and_cleanup_remove_only_empty_placeholders(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("kept\n")
    vol = tmp_path / "vol"
    vol.mkdir()
    opts = RunOptions(args=["true"], cwd="/srv/dir",
                      mounts=[Mount("bind", str(vol), "/mnt/vol", ("rbind",))])  # fmt: skip
    ph = prepare(opts, str(root))
    assert os.path.isfile(root / "etc" / "resolv.conf")
    assert os.path.isdir(root / "mnt" / "vol")
    assert os.path.isdir(root / "srv" / "dir")
    (root / "proc" / "something").write_text("written by the run")
    ph.cleanup()
    assert (root / "etc" / "hosts").read_text() == "kept\n"
    assert not (root / "etc" / "resolv.conf").exists()
    assert not (root / "etc" / "hostname").exists()
    # a mount target's missing parents stay (buildah, BuildKit); the target itself goes
    assert (root / "mnt").is_dir() and not (root / "mnt" / "vol").exists()
    assert not (root / "sys").exists() and not (root / "dev").exists()
    assert (root / "proc" / "something").exists()  # not an empty placeholder any more
    assert (root / "srv" / "dir").is_dir()  # the working directory is kept


def test_cleanup_gives_the_directories_of_placeholders_their_times_back(tmp_path):
    # a copy-driver container's tree is its snapshot: /etc keeps no trace of the placeholders
    root = tmp_path / "root"
    for d in ("etc", "var"):
        (root / d).mkdir(parents=True)
    for path in (root, root / "etc", root / "var"):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_500_000_000_000_000_000))
    ph = prepare(RunOptions(args=["true"]), str(root))
    assert (root / "etc" / "hosts").is_file() and (root / "proc").is_dir()
    (root / "var" / "log").mkdir()  # the run's own change to a directory with no placeholder
    ph.cleanup()
    for path in (root, root / "etc"):
        st = os.stat(path)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_600_000_000_000_000_000,
                                                    1_500_000_000_000_000_000), path  # fmt: skip
    assert os.stat(root / "var").st_mtime_ns != 1_500_000_000_000_000_000


def test_cleanup_keeps_the_time_of_a_directory_the_run_changed_too(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.utime(root / "etc", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    ph = prepare(RunOptions(args=["true"]), str(root))
    (root / "etc" / "motd").write_text("written by the run\n")
    ph.cleanup()
    assert (root / "etc" / "motd").exists()
    assert os.stat(root / "etc").st_mtime_ns != 1_500_000_000_000_000_000
