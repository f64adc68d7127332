"""``--chmod`` octal and symbolic, as BuildKit's Dockerfile 1.14 applies it (BSD setmode,
umask 0): a table of BSD answers, and a cross-check against the system's chmod(1) where GNU
and BSD agree (no set-ID or sticky bits, no ``X`` after ``=``)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from kiln.container.chmod import parse_chmod
from kiln.errors import InvalidArgument


@pytest.mark.parametrize(
    ("spec", "mode", "is_dir", "want"),
    [
        ("755", 0o600, False, 0o755),
        ("0644", 0o777, True, 0o644),
        ("4755", 0o600, False, 0o4755),
        ("+x", 0o600, False, 0o711),  # no who: all classes (umask 0)
        ("u=rwx,g=rx,o=", 0o644, False, 0o750),
        ("go-w", 0o777, False, 0o755),
        ("a=r,u+w", 0o600, False, 0o644),
        ("u=rwX,go=rX", 0o644, False, 0o644),  # X: not executable, not a directory
        ("u=rwX,go=rX", 0o744, False, 0o755),  # X: some execute bit already
        ("u=rwX,go=rX", 0o700, True, 0o755),  # X: a directory
        ("=rw,+X", 0o755, False, 0o777),  # X looks at the entry's own mode (BSD; GNU: 666)
        ("-X", 0o755, False, 0o644),
        ("g=u", 0o640, False, 0o660),
        ("o=u", 0o640, False, 0o646),
        ("ug=rw,o=g-w", 0o640, False, 0o664),
        ("g=u,u=,o-r", 0o640, False, 0o060),
        ("go-rwx,u+s", 0o755, False, 0o4700),
        ("g+s", 0o755, True, 0o2755),
        ("o+s", 0o755, False, 0o755),  # set-ID needs u or g
        ("+t", 0o755, True, 0o1755),
        ("u+t", 0o755, True, 0o1755),  # BSD: t goes with u/g (GNU ignores it)
        ("o+t", 0o755, True, 0o755),  # ... and not with o alone (GNU sets it)
        ("=", 0o4755, False, 0o000),
        ("a=", 0o1777, True, 0o1000),  # = never clears the sticky bit (BSD)
        ("u=,g=,o=", 0o2750, True, 0o000),  # directories too lose set-ID (BSD; GNU keeps)
        ("+rwxst", 0o000, False, 0o7777),
        ("u+r-w", 0o200, False, 0o400),
    ],
)
def test_modes(spec, mode, is_dir, want):
    assert parse_chmod(spec).apply(mode, is_dir) == want


@pytest.mark.parametrize(
    "spec", ["999", "8", "07777x", "17777", "x", "u", "u+z", "+x,", ",+x", "ug", "a=rw u", "a=b"]
)
def test_refused(spec):
    with pytest.raises(InvalidArgument, match="invalid chmod parameter"):
        parse_chmod(spec)


SPECS = ["+x", "a-x", "go-w", "u=rwx,g=rx,o=", "a=r,u+w", "o=u", "g=o", "ug=rw,o=g-w",
         "u=rwX,go=rX", "+X", "-X", "go=u-w", "u=r,g=u,o=g", "=x", "a=", "u-w,g+w-r"]  # fmt: skip
MODES = [0o000, 0o600, 0o640, 0o644, 0o700, 0o711, 0o755, 0o777]


@pytest.mark.skipif(shutil.which("chmod") is None, reason="needs chmod(1)")
def test_agrees_with_chmod_1_on_plain_permissions(tmp_path):
    old = os.umask(0)
    try:
        for is_dir in (False, True):
            path = tmp_path / ("d" if is_dir else "f")
            path.mkdir() if is_dir else path.touch()
            for spec in SPECS:
                for mode in MODES:
                    os.chmod(path, mode)
                    subprocess.run(["chmod", "--", spec, str(path)], check=True, timeout=10)
                    want = stat.S_IMODE(os.stat(path).st_mode)
                    assert parse_chmod(spec).apply(mode, is_dir) == want, (spec, oct(mode))
    finally:
        os.umask(old)
