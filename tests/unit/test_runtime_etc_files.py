"""The per-run hosts, resolv.conf and hostname files."""

import os
import time

import pytest

from kiln.errors import InvalidArgument
from kiln.runtime import RunOptions
from kiln.runtime.etc_files import hosts_text, resolv_conf_text, write_etc_files

HOST = """# generated
nameserver 127.0.0.53
nameserver 10.0.0.2
search corp.example
options edns0 trust-ad
"""


def test_hosts_has_localhost_add_hosts_and_hostname():
    text = hosts_text(RunOptions(args=["x"], add_hosts=["db:10.1.2.3", "v6:[fd00::1]"]), "box")
    lines = text.splitlines()
    assert lines[0].startswith("127.0.0.1\tlocalhost")
    assert lines[1].startswith("::1\tlocalhost")
    assert "10.1.2.3\tdb" in lines and "fd00::1\tv6" in lines
    assert lines[-1].split() == ["127.0.1.1", "box"]


def test_resolv_conf_keeps_host_setup_on_host_network():
    text = resolv_conf_text(RunOptions(args=["x"], network="host"), HOST)
    assert "nameserver 127.0.0.53" in text and "nameserver 10.0.0.2" in text
    assert "search corp.example" in text and "options edns0 trust-ad" in text


def test_resolv_conf_drops_loopback_nameservers_off_the_host_network():
    text = resolv_conf_text(RunOptions(args=["x"], network="none"), HOST)
    assert "127.0.0.53" not in text and "nameserver 10.0.0.2" in text


@pytest.mark.parametrize(
    "ns, loopback",
    [("127.0.0.53", True), ("127.9.8.7", True), ("::1", True), ("0:0::1", True),
     ("::1%lo", True), ("10.0.0.2", False), ("::ffff:127.0.0.1", False), ("fe80::1%eth0", False),
     ("fd00::53", False), ("0177.0.0.1", False), ("localhost", False)],
)  # fmt: skip
def test_resolv_conf_drops_exactly_the_loopback_nameservers(ns, loopback):
    """Loopback as ``ipaddress`` has it (127.0.0.0/8, ::1); what is no address is kept."""
    text = resolv_conf_text(
        RunOptions(args=["x"], network="none"), f"nameserver {ns}\nnameserver 10.9.9.9\n"
    )
    assert (f"nameserver {ns}\n" in text) == (not loopback)


def test_resolv_conf_falls_back_when_only_loopback_was_configured():
    text = resolv_conf_text(RunOptions(args=["x"], network="private"), "nameserver 127.0.0.1\n")
    assert "nameserver 8.8.8.8" in text


def test_resolv_conf_overrides():
    opts = RunOptions(args=["x"], dns=["1.1.1.1"], dns_search=["a.test", "b.test"],
                      dns_options=["ndots:2"])  # fmt: skip
    text = resolv_conf_text(opts, HOST)
    assert text == "nameserver 1.1.1.1\nsearch a.test b.test\noptions ndots:2\n"


def test_dns_search_dot_clears_search():
    text = resolv_conf_text(RunOptions(args=["x"], dns_search=["."]), HOST)
    assert "search" not in text


def test_bad_dns_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="--dns 'resolver'"):
        resolv_conf_text(RunOptions(args=["x"], dns=["resolver"]), HOST)


def test_files_land_in_the_bundle(tmp_path):
    files = write_etc_files(str(tmp_path), RunOptions(args=["x"]), "box")
    assert set(files) == {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}
    assert all(path.startswith(str(tmp_path)) for path in files.values())
    assert (tmp_path / "hostname").read_text() == "box\n"


def _stamps(paths):
    return {p: (os.stat(p).st_ctime_ns, os.stat(p).st_ino) for p in paths}


def test_a_reused_bundle_rewrites_only_what_changed_or_was_touched(tmp_path):
    written: dict = {}
    opts = RunOptions(args=["true"])
    files = write_etc_files(str(tmp_path), opts, "box", written)
    first = _stamps(files.values())
    time.sleep(0.05)  # a rewrite now would show in the ctime
    assert write_etc_files(str(tmp_path), opts, "box", written) == files
    assert _stamps(files.values()) == first  # nothing written again
    # a run wrote through the bind mount (same length, mtime put back): written again
    hosts = files["/etc/hosts"]
    before = os.stat(hosts)
    with open(hosts, "r+b") as f:
        f.write(b"#")
    os.utime(hosts, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(files["/etc/hostname"], 0o666)
    write_etc_files(str(tmp_path), opts, "box", written)
    with open(hosts) as f:
        assert f.read() == hosts_text(opts, "box")
    assert os.stat(files["/etc/hostname"]).st_mode & 0o777 == 0o644
    # another hostname: the files that name it change
    write_etc_files(str(tmp_path), opts, "other", written)
    with open(files["/etc/hostname"]) as f:
        assert f.read() == "other\n"
