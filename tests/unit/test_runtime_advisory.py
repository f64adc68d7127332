"""The runc advisory: which versions public advisories name, read the way their maker
numbers them (Debian package versions with backports, upstream releases otherwise)."""

from __future__ import annotations

import os
import stat

import pytest

from kiln.runtime import advisory
from kiln.runtime.advisory import debian_compare, unfixed

OLD = ["CVE-2024-21626"]
NEW = ["CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"]


@pytest.mark.parametrize(
    ("version", "cves"),
    [
        ("1.0.3", OLD + NEW),
        ("1.1.11", OLD + NEW),
        ("1.1.12", NEW),
        ("1.1.15", NEW),
        ("1.2.0-rc.1", NEW),
        ("1.2.7", NEW),
        ("1.2.8", []),
        ("1.3.2", NEW),
        ("1.3.3", []),
        ("1.4.0-rc.2", NEW),
        ("1.4.0-rc.3", []),
        ("1.4.0", []),
        ("1.5.1", []),
        ("v1.1.12", NEW),
    ],
)
def test_upstream_releases(version, cves):
    assert unfixed(version, package=False) == cves


@pytest.mark.parametrize(
    ("version", "cves"),
    [
        ("1.1.5+ds1-1", OLD + NEW),  # bookworm before the security upload
        ("1.1.5+ds1-1+deb12u1", NEW),  # CVE-2024-21626 backported
        ("1.1.5+ds1-1+deb12u3", NEW),  # a later upload of the same release keeps it
        ("1.1.12+ds1-1", NEW),  # fixed upstream
        ("1.3.3+ds1-1", []),
        ("1.3.3-0ubuntu1~24.04.2", []),
        ("1.1.4+ds1-1+deb12u1", OLD + NEW),  # the backport is of 1.1.5, not 1.1.4
    ],
)
def test_package_versions_count_backports(version, cves):
    assert unfixed(version, package=True) == cves


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.1.5+ds1-1+deb12u1", "1.1.5+ds1-1", 1),
        ("1.1.5+ds1-1+deb12u1", "1.1.5+ds1-1+deb12u2", -1),
        ("1.0~rc1-1", "1.0-1", -1),  # a tilde sorts before the end
        ("1:1.0-1", "2.0-1", 1),  # the epoch first
        ("1.1.5a-1", "1.1.5.1-1", -1),  # letters sort before other characters
        ("1.10-1", "1.9-1", 1),  # digit runs as numbers
        ("1.0-1", "1.0-1", 0),
    ],
)
def test_debian_order(a, b, order):
    assert debian_compare(a, b) == order
    assert debian_compare(b, a) == -order


def _script(path, version: str, log) -> str:
    path.write_text(f'#!/bin/sh\necho x >> {log}\necho "runc version {version}"\necho "spec: 1"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _dpkg(admin, binary: str, version: str) -> str:
    (admin / "info").mkdir(parents=True)
    (admin / "info" / "runc.list").write_text(f"/.\n/usr\n{binary}\n")
    (admin / "status").write_text(
        "Package: other\nStatus: install ok installed\nVersion: 9\n\n"
        f"Package: runc\nStatus: install ok installed\nVersion: {version}\n"
        "Description: runtime\n continued line: not a field\n"
    )
    return str(admin)


def test_a_packaged_binary_is_judged_by_its_package(tmp_path):
    log = tmp_path / "calls"
    binary = _script(tmp_path / "runc", "1.1.5+ds1", log)
    admin = _dpkg(tmp_path / "dpkg", binary, "1.1.5+ds1-1+deb12u1")
    line = advisory.advisory_line(binary, admin=admin)
    assert line is not None
    assert "1.1.5+ds1-1+deb12u1 (package)" in line and "CVE-2024-21626" not in line
    assert all(c in line for c in NEW) and "KILN_RUNC_ADVISORY=ignore" in line
    assert not log.exists()  # the package's files answered; runc was not asked


def test_another_binary_is_judged_by_its_version_once(tmp_path):
    log = tmp_path / "calls"
    binary = _script(tmp_path / "runc", "1.1.11", log)
    # dpkg knows a runc, but not this file
    admin = _dpkg(tmp_path / "dpkg", str(tmp_path / "elsewhere"), "1.3.3+ds1-1")
    line = advisory.advisory_line(binary, admin=admin)
    assert line is not None and "runc 1.1.11 at" in line and "CVE-2024-21626" in line
    assert advisory.advisory_line(binary, admin=admin) == line
    assert log.read_text().count("x") == 1  # cached by (path, dev, inode, mtime)
    _script(tmp_path / "runc", "1.2.8", log)
    os.utime(binary, ns=(0, 1))  # a replaced binary is asked again
    assert advisory.advisory_line(binary, admin=admin) is None
    assert log.read_text().count("x") == 2


def test_an_unreadable_version_says_nothing(tmp_path):
    binary = tmp_path / "runc"
    binary.write_text("#!/bin/sh\necho something else\n")
    binary.chmod(0o755)
    assert advisory.advisory_line(str(binary), admin=str(tmp_path / "none")) is None
    assert advisory.advisory_line(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("first", [True, False])
def test_the_installed_runc_stanza_counts_wherever_it_is(tmp_path, first):
    binary = _script(tmp_path / "runc", "1.1.5+ds1", tmp_path / "calls")
    admin = tmp_path / "dpkg"
    _dpkg(admin, binary, "0")
    removed = b"Package: runc\nStatus: deinstall ok config-files\nVersion: 1.4.0\n\n"
    installed = b"Package: runc\nStatus: install ok installed\nVersion: 1.1.5+ds1-1\n"
    other = b"Package: caf\xe9\nStatus: install ok installed\nDescription: \xff\xfe\n\n"
    body = removed + installed if first else other + removed + other + installed + b"\n" + other
    (admin / "status").write_bytes(body)
    assert advisory._package_version(binary, str(admin)) == "1.1.5+ds1-1"
