"""binfmt_misc handlers as the kernel lists them, read into Emulator values."""

from __future__ import annotations

from kiln.runtime.binfmt import Emulator, binfmt_mounted, registered_emulators


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
