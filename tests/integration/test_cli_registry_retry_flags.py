"""``kiln pull``/``kiln push``/``kiln build``/``kiln manifest push`` take podman's ``--retry`` and ``--retry-delay``, and
``KILN_RETRY``/``KILN_RETRY_DELAY`` set them where a command gives none (a flag wins).
Against a closed port on 127.0.0.1: every attempt is refused at once, so only the waits
between attempts (which kiln logs) tell the settings apart; no timing is measured."""

from __future__ import annotations

import logging
import socket

import pytest

from kiln.cli.main import run
from registry_env import isolate_registry_env

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    for name in ("KILN_ROOT", "KILN_RETRY", "KILN_RETRY_DELAY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dead_host() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


def _waits(caplog, root: str, *args: str) -> list[str]:
    caplog.clear()
    caplog.set_level(logging.INFO, logger="kiln.registry")
    assert run(["--root", root, *args]) == 125
    return [r.getMessage().split("retrying in ", 1)[1] for r in caplog.records
            if "retrying in " in r.getMessage()]  # fmt: skip


def test_pull_retry_flags(tmp_path, caplog, dead_host):
    root, ref = str(tmp_path / "root"), f"{dead_host}/a/b:1"
    waits = _waits(caplog, root, "pull", "--tls-verify=false", "--retry", "2",
                   "--retry-delay", "100ms", ref)  # fmt: skip
    assert [w.split()[0] for w in waits] == ["0.1s", "0.1s"]  # 2 retries, no backoff
    assert _waits(caplog, root, "pull", "--tls-verify=false", "--retry", "0", ref) == []


def test_settings_apply_where_no_flag_is_given(tmp_path, caplog, dead_host, monkeypatch):
    root, ref = str(tmp_path / "root"), f"{dead_host}/a/b:1"
    monkeypatch.setenv("KILN_RETRY", "3")
    monkeypatch.setenv("KILN_RETRY_DELAY", "100ms")
    waits = _waits(caplog, root, "pull", "--tls-verify=false", ref)
    assert [w.split()[0] for w in waits] == ["0.1s"] * 3
    assert _waits(caplog, root, "pull", "--tls-verify=false", "--retry", "1", ref) == ["0.1s (1/2)"]


def test_push_retry_flags(busybox_image, caplog, dead_host):
    root = busybox_image.store.root
    waits = _waits(caplog, root, "push", "--tls-verify=false", "--retry", "1",
                   "--retry-delay", "100ms", "busybox:latest", f"{dead_host}/x/y:1")  # fmt: skip
    assert [w.split()[0] for w in waits] == ["0.1s"]


def test_manifest_push_retry_flags(two_platforms, caplog, dead_host):
    from fixtures_images import make_list

    root = two_platforms[0].store.root
    make_list(root)
    waits = _waits(caplog, root, "manifest", "push", "--tls-verify=false", "--retry", "1",
                   "--retry-delay", "100ms", "ml:1", f"{dead_host}/a/b:1")  # fmt: skip
    assert waits == ["0.1s (1/2)"]


def test_build_retry_flags(tmp_path, caplog, dead_host):
    # podman build's --retry/--retry-delay: for the pulls of its FROM images
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM {dead_host}/a/b:1\n")
    waits = _waits(caplog, str(tmp_path / "root"), "build", "--tls-verify=false", "--retry", "1",
                   "--retry-delay", "100ms", "-t", "x:1", str(ctx))  # fmt: skip
    assert [w.split()[0] for w in waits] == ["0.1s"]


@pytest.mark.parametrize(
    "args, env, words",
    [
        (["--retry-delay", "soon"], {}, 'invalid --retry-delay "soon"'),
        (["--retry", "-1"], {}, "--retry"),
        ([], {"KILN_RETRY": "many"}, 'invalid KILN_RETRY "many"'),
        ([], {"KILN_RETRY_DELAY": "-1s"}, 'invalid KILN_RETRY_DELAY "-1s"'),
    ],
)
def test_bad_values_are_one_clear_line(tmp_path, capsys, monkeypatch, dead_host, args, env, words):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = run(["--root", str(tmp_path / "root"), "pull", "--tls-verify=false", *args,
                f"{dead_host}/a/b:1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code in (2, 125) and words in err and "Traceback" not in err, err
