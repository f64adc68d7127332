"""kiln.runtime.run against a real busybox rootfs, with runc ("oci") and "chroot" isolation."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

from killed_process import wait_for_line
from kiln.errors import ProcessFailed, Unavailable
from kiln.runtime import Mount, RunOptions, parse_volume, run

BUSYBOX = "/bin/busybox"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]

ISOLATIONS = [
    pytest.param("oci", marks=[pytest.mark.runc, pytest.mark.skipif(
        shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin") is None,
        reason="needs runc")]),
    "chroot",
]  # fmt: skip


def make_rootfs(path):
    bindir = path / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            os.symlink("busybox", bindir / applet)
    (path / "etc").mkdir()
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1500:1600:b:/home/builder:/bin/sh\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\nbuilders:x:1600:\nextra:x:1700:builder\n")
    (path / "tmp").mkdir(mode=0o1777)
    return path


@pytest.fixture
def rootfs(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "state"))
    return make_rootfs(tmp_path / "rootfs")


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path)
                  for d, dirs, files in os.walk(path) for n in dirs + files)  # fmt: skip


def sh(rootfs, isolation, script, **kwargs):
    """Run ``sh -c script``; returns (exit code, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        opts = RunOptions(args=["sh", "-c", script], isolation=isolation, stdin=subprocess.DEVNULL,
                          stdout=out, stderr=err, **kwargs)  # fmt: skip
        code = run(opts, str(rootfs))
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(), err.read().decode()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_echo_and_exit_codes(rootfs, isolation):
    assert sh(rootfs, isolation, "echo hi")[:2] == (0, "hi\n")
    assert sh(rootfs, isolation, "exit 3")[0] == 3


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_while_running_is_called_once_while_the_process_runs(rootfs, isolation):
    """The caller's ``while_running`` work overlaps the process (a build loads its commit
    code while runc starts the RUN): the process here waits for a line only that call
    writes. A run whose call never came is cancelled after a minute and fails below."""
    read_fd, write_fd = os.pipe()
    calls = []

    def feed():
        calls.append("fed")
        os.write(write_fd, b"fed\n")

    cancel = threading.Event()
    deadline = threading.Timer(60, cancel.set)
    deadline.start()
    try:
        with tempfile.TemporaryFile() as out:
            opts = RunOptions(args=["sh", "-c", "read line; echo got $line"], isolation=isolation,
                              stdin=read_fd, stdout=out, stderr=subprocess.DEVNULL,
                              cancel=cancel, while_running=feed)  # fmt: skip
            code = run(opts, str(rootfs))
            out.seek(0)
            assert (code, out.read().decode(), calls) == (0, "got fed\n", ["fed"])
        assert not cancel.is_set()
    finally:
        deadline.cancel()
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_env_and_cwd_created_if_missing(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, 'echo "$GREETING"; pwd; echo $PATH',
                      env=["GREETING=hello there"], cwd="/srv/src")  # fmt: skip
    assert code == 0
    greeting, cwd, path = out.splitlines()
    assert (greeting, cwd) == ("hello there", "/srv/src")
    assert "/usr/bin" in path
    assert (rootfs / "srv" / "src").is_dir()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_numeric_user(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "id -u; id -g", user="1000:1000")
    assert (code, out.split()) == (0, ["1000", "1000"])


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_named_user_from_passwd(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "id -u; id -g; id -G; echo $HOME", user="builder")
    lines = out.splitlines()
    assert code == 0
    assert lines[:2] == ["1500", "1600"]
    assert "1700" in lines[2].split()
    assert lines[3] == "/home/builder"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_non_root_user_has_no_effective_capabilities(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "grep CapEff /proc/self/status", user="1000")
    assert code == 0 and out.split()[1] == "0000000000000000"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_hostname_hosts_and_dns(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation,
                      "hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf",
                      hostname="builder-box", add_hosts=["db.internal:10.9.8.7"],
                      dns=["192.0.2.53"], dns_search=["corp.test"])  # fmt: skip
    assert code == 0
    hostname, hosts, resolv = out.split("--\n")
    assert hostname.strip() == "builder-box"
    assert "10.9.8.7\tdb.internal" in hosts and "builder-box" in hosts
    assert "nameserver 192.0.2.53" in resolv and "search corp.test" in resolv


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_network_none_has_only_loopback(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "tail -n +3 /proc/net/dev | cut -d: -f1", network="none")
    assert code == 0
    assert [line.strip() for line in out.splitlines()] == ["lo"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_readonly_volume_and_tmpfs(rootfs, isolation, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    code, out, _ = sh(rootfs, isolation,
                      "cat /data/in.txt; touch /data/new 2>/dev/null && echo WROTE;"
                      " echo t > /scratch/f && cat /scratch/f; grep ' /scratch ' /proc/mounts",
                      mounts=[parse_volume(f"{data}:/data:ro"),
                              Mount("tmpfs", "", "/scratch", ("size=1m",))])  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "from the host" and "WROTE" not in out
    assert lines[1] == "t" and lines[2].split()[2] == "tmpfs"
    assert sorted(os.listdir(data)) == ["in.txt"]
    assert not (rootfs / "data").exists() and not (rootfs / "scratch").exists()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_writable_volume(rootfs, isolation, tmp_path):
    data = tmp_path / "rw"
    data.mkdir()
    assert sh(rootfs, isolation, "echo out > /out/f", mounts=[parse_volume(f"{data}:/out")])[0] == 0
    assert (data / "f").read_text() == "out\n"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_cap_drop_chown(rootfs, isolation):
    script = "touch /tmp/f && chown 1000 /tmp/f && echo CHOWNED"
    assert "CHOWNED" in sh(rootfs, isolation, script)[1]
    code, out, _ = sh(rootfs, isolation, script, cap_drop=["CHOWN"])
    assert code != 0 and "CHOWNED" not in out


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_no_placeholders_left_in_rootfs(rootfs, isolation):
    before = tree(rootfs)
    assert (
        sh(rootfs, isolation, "test -f /etc/hosts && test -f /etc/resolv.conf && ls /proc/1")[0]
        == 0
    )
    assert tree(rootfs) == before
    assert not (rootfs / "etc" / "hosts").exists()
    assert not (rootfs / "etc" / "resolv.conf").exists()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_existing_etc_hosts_is_not_touched(rootfs, isolation):
    (rootfs / "etc" / "hosts").write_text("image hosts\n")
    assert sh(rootfs, isolation, "echo changed > /etc/hosts")[0] == 0
    assert (rootfs / "etc" / "hosts").read_text() == "image hosts\n"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_missing_binary_is_127_with_a_clear_message(rootfs, isolation):
    with tempfile.TemporaryFile() as err:
        opts = RunOptions(args=["no-such-tool", "--x"], isolation=isolation, stderr=err,
                          stdin=subprocess.DEVNULL)  # fmt: skip
        with pytest.raises(ProcessFailed) as info:
            run(opts, str(rootfs))
        err.seek(0)
        assert err.read() == b""  # one message, kiln's, not the runtime's as well
    assert info.value.exit_code == 127
    assert str(info.value) == (
        'running container: exec: "no-such-tool": executable file not found in $PATH'
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_host_state_is_invisible(rootfs, isolation, tmp_path):
    state = tmp_path / "state"
    code, out, _ = sh(rootfs, isolation,
                      f"ls /run/kiln 2>/dev/null && echo RUN; ls {state} 2>/dev/null && echo STATE;"
                      " ls /proc/self/fd")  # fmt: skip
    assert code == 0
    assert "RUN" not in out and "STATE" not in out
    fds = sorted(int(x) for x in out.split()) if out.split() else []
    assert fds == [0, 1, 2, 3]  # stdio plus the fd ls uses to read the directory


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_readonly_rootfs(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "touch /x 2>/dev/null || echo RO; echo ok > /tmp/y || true",
                      readonly_rootfs=True)  # fmt: skip
    assert "RO" in out


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_ulimit_applied(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation, "ulimit -n", ulimits=["nofile=512:1024"])
    assert (code, out.strip()) == (0, "512")


@pytest.mark.runc
def test_missing_runtime_binary_is_unavailable(rootfs, tmp_path):
    opts = RunOptions(args=["true"], runtime=str(tmp_path / "no-runc"))
    with pytest.raises(Unavailable, match="not found: install runc or pass --runtime PATH"):
        run(opts, str(rootfs))
    with pytest.raises(Unavailable, match='runtime "definitely-not-a-runtime" not found'):
        run(RunOptions(args=["true"], runtime="definitely-not-a-runtime"), str(rootfs))


@pytest.mark.runc
@pytest.mark.parametrize("isolation", ISOLATIONS[:1])
def test_seccomp_default_blocks_mount_unconfined_does_not_matter(rootfs, isolation):
    code, out, err = sh(rootfs, isolation, "unshare -m true && echo UNSHARED")
    assert "UNSHARED" not in out
    assert sh(rootfs, isolation, "echo fine", seccomp="unconfined")[1] == "fine\n"


@pytest.mark.runc
@pytest.mark.parametrize("isolation", ISOLATIONS[:1])
def test_memory_limit_reaches_the_cgroup(rootfs, isolation):
    code, out, _ = sh(rootfs, isolation,
                      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                      " || cat /sys/fs/cgroup/memory.max",
                      memory=64 << 20, network="none")  # fmt: skip
    assert (code, out.strip()) == (0, str(64 << 20))


SIGNAL_SCRIPT = """
import os, sys
sys.path[:0] = [{src!r}]
os.environ["KILN_RUNTIME_DIR"] = {state!r}
from kiln.runtime import RunOptions, run
code = run(RunOptions(args=["sh", "-c", {script!r}], isolation={isolation!r}), {rootfs!r})
print("EXIT", code, flush=True)
"""


def _run_and_signal(rootfs, isolation, tmp_path, script, signals):
    import signal
    import sys
    import time

    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = SIGNAL_SCRIPT.format(src=os.path.abspath(src), state=str(tmp_path / "state"),
                                script=script, isolation=isolation, rootfs=str(rootfs))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert wait_for_line(proc, "started") == ["started"]  # with a deadline, unlike readline
    for sig in signals:
        proc.send_signal(getattr(signal, sig))
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_sigterm_is_forwarded_and_everything_is_cleaned_up(rootfs, isolation, tmp_path):
    before = tree(rootfs)
    out = _run_and_signal(rootfs, isolation, tmp_path,
                          "trap 'exit 7' TERM; echo started; sleep 60 & wait", ["SIGTERM"])  # fmt: skip
    assert "EXIT 7" in out
    assert tree(rootfs) == before
    assert os.listdir(tmp_path / "state" / "bundles") == []
    if isolation == "oci":
        assert os.listdir(tmp_path / "state" / "runc") == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_second_signal_kills_a_container_that_ignores_the_first(rootfs, isolation, tmp_path):
    out = _run_and_signal(rootfs, isolation, tmp_path, "echo started; sleep 60",
                          ["SIGTERM", "SIGTERM"])  # fmt: skip
    assert "EXIT 137" in out
    assert os.listdir(tmp_path / "state" / "bundles") == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_missing_absolute_path_is_127(rootfs, isolation):
    with tempfile.TemporaryFile() as err:
        opts = RunOptions(args=["/opt/nothing"], isolation=isolation, stderr=err)
        with pytest.raises(ProcessFailed) as info:
            run(opts, str(rootfs))
        err.seek(0)
        assert err.read() == b""
    assert info.value.exit_code == 127
    assert str(info.value) == (
        'running container: exec: "/opt/nothing": stat /opt/nothing: no such file or directory'
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_not_executable_is_126_and_a_starting_command_keeps_its_stderr(rootfs, isolation):
    with pytest.raises(ProcessFailed, match='exec: "/etc": permission denied') as info:
        run(RunOptions(args=["/etc"], isolation=isolation), str(rootfs))
    assert info.value.exit_code == 126
    with tempfile.TemporaryFile() as err:
        opts = RunOptions(args=["sh", "-c", "echo own >&2; exit 127"], isolation=isolation,
                          stderr=err)  # fmt: skip
        assert run(opts, str(rootfs)) == 127
        err.seek(0)
        assert err.read() == b"own\n"


@pytest.mark.runc
def test_runtime_start_failure_is_unavailable_not_exit_1(rootfs):
    bad = Mount("tmpfs", "", "/x", ("size=lots",))
    with pytest.raises(Unavailable, match="could not start the container"):
        run(RunOptions(args=["true"], mounts=[bad], stderr=subprocess.DEVNULL), str(rootfs))
    assert not (rootfs / "x").exists()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_runs_in_one_process_share_a_bundle_but_nothing_of_each_other(rootfs, isolation, tmp_path):
    # a build's RUN steps reuse one bundle (no directory of six files made and deleted per
    # step); what a run wrote into its /etc files never reaches the next
    hosts = "cat /etc/hosts /etc/hostname /etc/resolv.conf; stat -c %a /etc/hosts"
    code, first, _ = sh(rootfs, isolation, hosts)
    assert code == 0
    tamper = ("echo 10.6.6.6 planted >> /etc/hosts; echo planted > /etc/hostname; "
              "echo nameserver 10.6.6.6 >> /etc/resolv.conf; chmod 600 /etc/hosts")  # fmt: skip
    assert sh(rootfs, isolation, tamper)[0] == 0
    code, again, _ = sh(rootfs, isolation, hosts)
    assert code == 0 and "planted" not in again and "10.6.6.6" not in again
    assert again == first  # the same hostname: the same bundle
    assert len(os.listdir(tmp_path / "state" / "bundles")) == 1


@pytest.mark.runc
@pytest.mark.skipif(shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin") is None,
                    reason="needs runc")  # fmt: skip
def test_a_runc_error_is_read_from_this_run_only(rootfs):
    # runc appends to the reused bundle's log: an earlier run's error must not turn a later
    # run's plain exit 1 into that error
    onto_a_dir = Mount(type="bind", source=str(rootfs / "etc" / "passwd"), destination="/bin")
    with pytest.raises(Unavailable, match="could not start the container"):
        run(RunOptions(args=["true"], isolation="oci", mounts=[onto_a_dir],
                       stderr=subprocess.DEVNULL), str(rootfs))  # fmt: skip
    assert sh(rootfs, "oci", "exit 1")[0] == 1


def test_a_process_leaves_no_bundle_when_it_exits(rootfs, tmp_path):
    script = (
        "import sys, subprocess\n"
        "from kiln.runtime import RunOptions, run\n"
        "for _ in range(2):\n"
        "    assert run(RunOptions(args=['true'], isolation='chroot'), sys.argv[1]) == 0\n"
    )
    subprocess.run([sys.executable, "-c", script, str(rootfs)], check=True, timeout=120)
    assert os.listdir(tmp_path / "state" / "bundles") == []
