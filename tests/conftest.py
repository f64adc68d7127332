"""Every test is marked by the directory it lives in (``-m unit``, ``-m "not integration"``),
and ``tests/unit`` stays what its name promises: no root, no runtime, no servers.

A test in ``tests/unit`` marked ``root`` or ``runc``, or a unit test module that uses the
real-server helpers (a registry, the API server, a private dockerd, a rootless user),
stops the run at collection with the list of offenders: move it to ``tests/integration``.

``KILN_RUNC_ADVISORY=ignore``: this machine's runc may be one public advisories name, and
kiln then warns on stderr at the first RUN; tests that read stderr exactly must not see
that line. ``tests/security/test_runc_advisory.py`` checks the warning itself with the
variable removed. Subprocesses inherit it from here.

A run killed mid-test can leave a file system mounted in its ``--basetemp`` (a working
container's overlay): pytest could then not empty that directory, and the next run with the
same ``--basetemp`` would fail every test; ``pytest_configure`` unmounts what is left there.

``registry_plain``, ``registry_tls``, ``registry_basic``, ``registry_token`` and
``registry_schema1`` (``tests/registry_servers.py``) are fixtures of the whole run: one
registry of each kind, started when a test first asks for it and shared by every module
(each test pushes to repositories named after its module). A module that imports one of
them by name gets a registry of its own instead; a test that stops, kills or damages its
registry starts a private one with ``registry_servers.start_registry``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kiln.snapshot.mount import unmount_all_under

pytest_plugins = ["registry_servers"]  # the shared registries (see above)

os.environ["KILN_RUNC_ADVISORY"] = "ignore"

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "golden", "conformance", "integration", "security", "differential")
# helpers that start real servers or users; a unit test must not reach for them
SERVER_HELPERS = {
    "registry_servers",
    "api_server",
    "private_dockerd",
    "rootless_user",
    "git_server",
}
# the shared registries reach a test as fixtures, without an import to see
SERVER_FIXTURES = {"registry_plain", "registry_tls", "registry_basic", "registry_token",
                   "registry_schema1"}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    basetemp = config.option.basetemp
    if basetemp and os.path.isdir(basetemp) and os.geteuid() == 0:
        with contextlib.suppress(Exception):  # pytest then says what it cannot remove
            unmount_all_under(os.path.abspath(basetemp))


def _free_disk() -> str:
    free = shutil.disk_usage(tempfile.gettempdir()).free
    return f"{free / 2**30:.1f} GiB free in the temporary directory"


def pytest_report_header(config: pytest.Config) -> str:
    # a full run writes gigabytes of stores: when it dies of ENOSPC, the header says why
    return f"disk: {_free_disk()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"disk at the end: {_free_disk()}")


def _kind(item: pytest.Item) -> str | None:
    try:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in KINDS else None


def _uses_server_helpers(module: object) -> bool:
    for value in vars(module).values():
        name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "")
        if name in SERVER_HELPERS:
            return True
    return False


def unit_offences(item: pytest.Item) -> list[str]:
    """Why ``item`` (a test in tests/unit) does not belong there; empty when it does."""
    why = [f"marked {m}" for m in ("root", "runc") if item.get_closest_marker(m)]
    module = getattr(item, "module", None)
    if module is not None and _uses_server_helpers(module):
        why.append("uses a real-server helper")
    if used := sorted(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
        why.append(f"uses the registry fixture {', '.join(used)}")
    return why


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    offenders = []
    for item in items:
        kind = _kind(item)
        if kind is None:
            continue
        item.add_marker(getattr(pytest.mark, kind))
        if kind == "unit" and (why := unit_offences(item)):
            offenders.append(f"  {item.nodeid}: {', '.join(why)}")
    if offenders:
        raise pytest.UsageError(
            "tests/unit needs no root, runtime or server; move these to tests/integration:\n"
            + "\n".join(offenders)
        )
