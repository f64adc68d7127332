"""Is this runc one of the releases public advisories name? A warning, never a refusal.

A runc older than the release that fixed a container breakout lets a hostile image's RUN
reach the host. kiln warns once per process (a build, a ``kiln run``) at the first RUN,
naming the version and the advisories, as one line on the ``kiln.runtime`` logger (stderr,
never a JSON output stream). ``KILN_RUNC_ADVISORY=ignore`` silences it.

Versions are compared the way their maker numbers them:

- a runc from a Debian (or Ubuntu) package is judged by the package's version, so a
  distribution's backported fix counts: ``1.1.5+ds1-1+deb12u1`` has CVE-2024-21626 fixed
  though upstream fixed it in 1.1.12. A package only counts when the binary is the very
  file the package installed (same device and inode), read from dpkg's own files;
- any other runc by its upstream version (``runc version 1.2.8``).

The lookup (``runc --version``, dpkg's files) is done once per binary (path, device, inode,
mtime) in a process.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import TYPE_CHECKING

from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    import logging  # here: a RUN that warns of nothing does not import logging (~18 M instructions)

    return logging.getLogger("kiln.runtime")


ENV = "KILN_RUNC_ADVISORY"


@dataclass(frozen=True)
class Advisory:
    """A runc security advisory: its CVEs and the releases that fix it."""

    cves: tuple[str, ...]
    # upstream: (major, minor) series -> first fixed release in it; a series below every key
    # is unfixed, one above the highest key is fixed by that key's release line
    upstream: dict[tuple[int, int], str]
    # distribution packages with the fix backported: the package versions that carry it
    # (a package of the same upstream release at or above one of these is fixed)
    backports: tuple[str, ...] = ()


ADVISORIES = (
    # fd leak (Leaky Vessels): fixed in 1.1.12; Debian bookworm backported it
    Advisory(("CVE-2024-21626",), {(1, 1): "1.1.12"}, ("1.1.5+ds1-1+deb12u1",)),
    # /dev/null, /dev/console and /proc write redirection: fixed in 1.2.8, 1.3.3 and
    # 1.4.0-rc.3; no Debian bookworm backport was published when this was written
    Advisory(
        ("CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"),
        {(1, 2): "1.2.8", (1, 3): "1.3.3", (1, 4): "1.4.0-rc.3"},
    ),
)


# ---- version arithmetic ----------------------------------------------------------------

_UPSTREAM = lazy_pattern(r"^v?(\d+)\.(\d+)\.(\d+)(?:-rc\.?(\d+))?")


def upstream_key(version: str) -> tuple[int, int, int, int, int] | None:
    """An ordering key for an upstream runc version (``1.4.0-rc.3`` < ``1.4.0``); None when
    it is not one."""
    m = _UPSTREAM().match(version.strip())
    if not m:
        return None
    major, minor, patch = int(m[1]), int(m[2]), int(m[3])
    rc = m[4]
    return (major, minor, patch, 0 if rc is not None else 1, int(rc or 0))


def upstream_fixed(version: str, advisory: Advisory) -> bool | None:
    """Whether upstream ``version`` has the fix; None when the version cannot be read."""
    key = upstream_key(version)
    if key is None:
        return None
    series = key[:2]
    lines = sorted(advisory.upstream)
    if series < lines[0]:
        return False
    line = max(s for s in lines if s <= series)
    fixed = upstream_key(advisory.upstream[line])
    assert fixed is not None
    return key >= fixed if series == line else True


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _span(s: str, digits: bool) -> int:
    i = 0
    while i < len(s) and s[i].isdigit() == digits:
        i += 1
    return i


def _compare_part(a: str, b: str) -> int:
    """dpkg's comparison of one upstream version or revision string: alternating non-digit
    runs (character by character, ``~`` before the end before letters before the rest)
    and digit runs (as numbers)."""
    while a or b:
        i, j = _span(a, False), _span(b, False)
        pa, pb = a[:i], b[:j]
        for k in range(max(len(pa), len(pb))):
            ca = _order(pa[k]) if k < len(pa) else 0
            cb = _order(pb[k]) if k < len(pb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[i:], b[j:]
        i, j = _span(a, True), _span(b, True)
        da, db = int(a[:i] or 0), int(b[:j] or 0)
        if da != db:
            return -1 if da < db else 1
        a, b = a[i:], b[j:]
    return 0


def _split_debian(version: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in version:
        head, version = version.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    upstream, _, revision = version.rpartition("-")
    if not upstream:
        return epoch, revision, ""
    return epoch, upstream, revision


def debian_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian orders package versions ``a`` and ``b`` (``dpkg --compare-versions``)."""
    ea, ua, ra = _split_debian(a)
    eb, ub, rb = _split_debian(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def _upstream_of_package(version: str) -> str:
    """``1.1.5`` of ``1.1.5+ds1-1+deb12u1`` (epoch, revision and repack suffixes dropped)."""
    _epoch, upstream, _rev = _split_debian(version)
    return re.split(r"[+~]", upstream, maxsplit=1)[0]


def package_fixed(version: str, advisory: Advisory) -> bool | None:
    """Whether distribution package ``version`` has the fix: by its upstream release, or a
    backport of the same upstream release at or below it."""
    base = _upstream_of_package(version)
    by_upstream = upstream_fixed(base, advisory)
    if by_upstream:
        return True
    for fixed in advisory.backports:
        if _upstream_of_package(fixed) == base and debian_compare(version, fixed) >= 0:
            return True
    return by_upstream


def unfixed(version: str, *, package: bool) -> list[str]:
    """The CVEs ``version`` (a package version when ``package``) is affected by."""
    out: list[str] = []
    for adv in ADVISORIES:
        fixed = package_fixed(version, adv) if package else upstream_fixed(version, adv)
        if fixed is False:
            out.extend(adv.cves)
    return out


# ---- what is installed -------------------------------------------------------------------

DPKG_ADMIN = "/var/lib/dpkg"


def _package_version(binary: str, admin: str = DPKG_ADMIN) -> str | None:
    """The version of the Debian package ``runc`` when ``binary`` is the file it installed."""
    try:
        st = os.stat(binary)
        with open(os.path.join(admin, "info", "runc.list"), encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.rstrip().endswith("/runc")]
    except OSError:
        return None
    owned = False
    for path in paths:
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            owned = True
            break
    if not owned:
        return None
    try:
        with open(os.path.join(admin, "status"), "rb") as f:
            # searched as bytes, only runc's stanzas decoded: the rest is ~1 MB of other
            # packages (a newline is never inside a UTF-8 character: the cuts are clean)
            data = f.read()
    except OSError:
        return None
    for stanza in _stanzas(data, b"Package: runc\n"):  # one per architecture at most
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if "installed" in fields.get("Status", "").split():  # the installed one counts
            return fields.get("Version")
    return None


def _stanzas(data: bytes, head: bytes) -> list[str]:
    """The stanzas of dpkg file ``data`` that begin with line ``head``, decoded."""
    starts = [0] if data.startswith(head) else []
    at = data.find(b"\n" + head)
    while at >= 0:
        starts.append(at + 1)
        at = data.find(b"\n" + head, at + 1)
    out = []
    for start in starts:
        end = data.find(b"\n\n", start)
        out.append(data[start : end if end >= 0 else len(data)].decode("utf-8", "replace"))
    return out


def _upstream_version(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1]
    if out.returncode != 0 or not first:
        return None
    m = re.match(r"^\S+ version (\S+)", first[0])
    return m[1] if m else None


_CACHE: dict[tuple[str, int, int, int], str | None] = {}
_WARNED: set[tuple[str, int, int, int]] = set()


def advisory_line(binary: str, *, admin: str = DPKG_ADMIN) -> str | None:
    """The warning for ``binary`` (None: no known advisory, or its version cannot be read)."""
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = (binary, st.st_dev, st.st_ino, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _line(binary, admin)
    return _CACHE[key]


def _line(binary: str, admin: str) -> str | None:
    version = _package_version(binary, admin)
    package = version is not None
    if version is None:
        version = _upstream_version(binary)
    if version is None:
        return None
    cves = unfixed(version, package=package)
    if not cves:
        return None
    what = f"{version} (package)" if package else version
    return (
        f"runc {what} at {binary} has known container breakouts ({', '.join(cves)}): "
        f"upgrade runc ({ENV}=ignore silences this)"
    )


def warn_once(binary: str) -> None:
    """Log the advisory for ``binary`` once in this process (unless ``KILN_RUNC_ADVISORY``
    is ``ignore``). Never raises: a check that fails says nothing."""
    if os.environ.get(ENV, "").strip().lower() == "ignore":
        return
    try:
        st = os.stat(binary)
        key = (binary, st.st_dev, st.st_ino, st.st_mtime_ns)
        if key in _WARNED:
            return
        _WARNED.add(key)
        line = advisory_line(binary)
    except Exception:  # an advisory must never stop a RUN
        _log().debug("runc advisory check failed", exc_info=True)
        return
    if line:
        _log().warning(line)
