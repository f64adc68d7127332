"""binfmt_misc handlers as the kernel lists them, and finding or describing an emulator
(the kernel side, registering and mounting, is in tests/integration/test_build_platforms.py)."""

from __future__ import annotations

import os
import platform

import pytest

from kiln.errors import Unavailable
from kiln.oci.platform import Platform
from kiln.runtime.binfmt import (
    Emulator,
    binfmt_mounted,
    ensure_emulator,
    find_emulator,
    handler_line,
    host_arch,
    needs_emulation,
    registered_emulators,
)


def test_handlers_are_read_and_register_status_skipped(tmp_path):
    (tmp_path / "register").write_text("")
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n"
        "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
        "mask ffffffffffffff00fffffffffffffffffeffffff\n"
    )
    (tmp_path / "qemu-arm").write_text("disabled\ninterpreter /usr/bin/qemu-arm-static\nflags: \n")
    assert binfmt_mounted(str(tmp_path))
    assert registered_emulators(str(tmp_path)) == [
        Emulator("qemu-aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", True, "POCF"),
        Emulator("qemu-arm", "/usr/bin/qemu-arm-static", False, ""),
    ]


def test_not_mounted_means_none(tmp_path):
    missing = str(tmp_path / "nothing")
    assert not binfmt_mounted(missing) and registered_emulators(missing) == []


# -- finding and registering an emulator ------------------------------------------------

MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


def _handler(directory, name, interpreter, flags="POF", state="enabled"):
    (directory / name).write_text(f"{state}\ninterpreter {interpreter}\nflags: {flags}\n")


def _binfmt(tmp_path):
    d = tmp_path / "binfmt"
    d.mkdir()
    (d / "status").write_text("enabled\n")
    (d / "register").write_text("")
    return d


def _conf(tmp_path, interpreter, flags="OP", name="qemu-aarch64.conf"):
    d = tmp_path / "binfmt.d"
    d.mkdir(exist_ok=True)
    line = f":qemu-aarch64:M::{MAGIC}:{MASK}:{interpreter}:{flags}\n"
    (d / name).write_text("# comment\n" + line)
    return d


def test_the_host_architecture_is_native_and_others_are_not():
    assert not needs_emulation(host_arch())
    foreign = "arm64" if host_arch() != "arm64" else "amd64"
    assert needs_emulation(foreign)
    if host_arch() == "amd64":
        assert not needs_emulation("386")  # 32-bit x86 runs on an x86-64 kernel


# ``uname -m`` -> the OCI architecture and variant that machine runs without an emulator
HOSTS = [
    ("armv7l", "arm", "v7"),
    ("aarch64", "arm64", ""),
    ("x86_64", "amd64", ""),
    ("i686", "386", ""),
    ("ppc64le", "ppc64le", ""),
    ("s390x", "s390x", ""),
    ("riscv64", "riscv64", ""),
]


@pytest.mark.parametrize("machine, arch, variant", HOSTS)
def test_each_host_runs_its_own_oci_architecture_natively(monkeypatch, machine, arch, variant):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert host_arch() == arch
    assert Platform.host() == Platform("linux", arch, variant)  # what a build targets there
    assert not needs_emulation(arch)
    assert not needs_emulation(machine)  # uname's name is the same architecture
    assert needs_emulation("mips64le")


def test_a_handler_is_found_by_its_name_or_its_interpreter(tmp_path):
    d = _binfmt(tmp_path)
    _handler(d, "qemu-aarch64_be", "/usr/bin/qemu-aarch64_be-static")
    assert find_emulator("arm64", str(d)) is None  # big-endian aarch64 is another machine
    _handler(d, "aarch64", "/usr/bin/qemu-aarch64-static")
    assert find_emulator("arm64", str(d)).name == "aarch64"
    _handler(d, "qemu-riscv64", "/opt/any/interp")
    assert find_emulator("riscv64", str(d)).interpreter == "/opt/any/interp"


def test_the_handler_line_gets_the_fix_binary_flag(tmp_path):
    interp = tmp_path / "qemu-aarch64-static"
    interp.write_bytes(b"")
    conf = _conf(tmp_path, interp, flags="OP")
    line = handler_line("arm64", (str(conf),))
    assert line.split(":")[1] == "qemu-aarch64" and line.endswith(f":{interp}:OPF")
    conf = _conf(tmp_path, interp, flags="OPF")
    assert handler_line("arm64", (str(conf),)).endswith(":OPF")  # not FF


def test_no_handler_line_when_the_interpreter_is_missing(tmp_path):
    conf = _conf(tmp_path, tmp_path / "not-installed")
    assert handler_line("arm64", (str(conf),)) is None
    assert handler_line("arm64", (str(tmp_path / "no-such-dir"),)) is None


def test_no_emulator_says_which_package_enables_it(tmp_path):
    d = _binfmt(tmp_path)
    with pytest.raises(Unavailable, match="no emulator for arm64.*qemu-user-static"):
        ensure_emulator("arm64", str(d), conf_dirs=(str(tmp_path / "none"),))


def test_a_handler_without_the_fix_binary_flag_is_refused(tmp_path):
    d = _binfmt(tmp_path)
    _handler(d, "qemu-aarch64", "/usr/bin/qemu-aarch64-static", flags="OC")
    with pytest.raises(Unavailable, match=r"no fix-binary \(F\) flag.*inside a container"):
        ensure_emulator("arm64", str(d), conf_dirs=())


def test_a_disabled_handler_is_refused(tmp_path):
    d = _binfmt(tmp_path)
    _handler(d, "qemu-aarch64", "/usr/bin/qemu-aarch64-static", state="disabled")
    with pytest.raises(Unavailable, match="is disabled: enable it"):
        ensure_emulator("arm64", str(d), conf_dirs=())


def test_a_registered_handler_with_f_is_used_as_is(tmp_path):
    d = _binfmt(tmp_path)
    _handler(d, "qemu-aarch64", "/usr/bin/qemu-aarch64-static", flags="F")
    assert ensure_emulator("arm64", str(d), conf_dirs=()).flags == "F"
    assert os.path.getsize(d / "register") == 0  # nothing registered
