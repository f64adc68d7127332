"""Config editing as buildah config does it, container names, and flag parsers."""

from __future__ import annotations

import pytest

from kiln.container.config_edit import (
    ConfigEditor,
    normalize_port,
    normalize_signal,
    parse_duration,
    parse_exec_or_shell,
    parse_healthcheck,
    parse_json_or_words,
    split_key_value,
)
from kiln.container.config_flags import ConfigSettings, apply_settings
from kiln.container.naming import check_name, default_name, image_name_prefix
from kiln.errors import InvalidArgument
from kiln.oci import ImageConfig, RuntimeConfig


def _editor() -> ConfigEditor:
    return ConfigEditor(
        ImageConfig(architecture="amd64", config=RuntimeConfig(env=("PATH=/bin",), cmd=("sh",)))
    )


def test_names_like_buildah():
    assert image_name_prefix("busybox") == "busybox"
    assert image_name_prefix("docker.io/library/busybox:latest") == "busybox"
    assert image_name_prefix("localhost:5000/a/b@sha256:" + "1" * 64) == "b"
    assert image_name_prefix("sha256:" + "ab" * 32) == "ab" * 6
    taken = {"busybox-working-container", "busybox-working-container-1"}
    assert default_name("busybox", taken.__contains__) == "busybox-working-container-2"
    assert default_name(None, taken.__contains__) == "working-container"
    with pytest.raises(InvalidArgument):
        check_name("-bad")
    with pytest.raises(InvalidArgument):
        check_name("a/b")


def test_parsers():
    assert parse_json_or_words('["a", "b c"]', "--cmd") == ["a", "b c"]
    assert parse_json_or_words("echo 'a b'", "--cmd") == ["echo", "a b"]
    assert parse_exec_or_shell("echo hi", ("/bin/sh", "-c")) == ["/bin/sh", "-c", "echo hi"]
    assert parse_exec_or_shell('["x"]', ("/bin/sh", "-c")) == ["x"]
    assert parse_exec_or_shell("  ", ("/bin/sh", "-c")) is None
    assert split_key_value("K=V=W", "--env") == ("K", "V=W")
    assert split_key_value("K-", "--env") == ("K", None)
    assert normalize_port("80") == "80/tcp"
    assert normalize_port("53/UDP") == "53/UDP"  # kept as written, as buildah keeps it
    for bad in ("x", "70000", "80/foo"):
        with pytest.raises(InvalidArgument):
            normalize_port(bad)
    assert normalize_signal("term") == "term"  # kept as written, as buildah config does
    assert normalize_signal("9") == "9"
    with pytest.raises(InvalidArgument):
        normalize_signal("NOPE")
    assert parse_duration("1m30s", "--x") == 90 * 10**9
    assert parse_duration("500ms", "--x") == 5 * 10**8
    with pytest.raises(InvalidArgument):
        parse_duration("10", "--x")
    assert parse_healthcheck("NONE").test == ("NONE",)
    assert parse_healthcheck("CMD-SHELL curl x").test == ("CMD-SHELL", "curl x")
    assert parse_healthcheck('CMD ["a","b"]').test == ("CMD", "a", "b")
    assert parse_healthcheck("true").test == ("CMD-SHELL", "true")
    assert parse_healthcheck("") is None


def test_apply_settings_like_buildah_config():
    ed = _editor()
    hist = apply_settings(
        ed,
        ConfigSettings(
            cmd="echo hi",
            entrypoint="run me",
            env=["A=1", "PATH=$PATH:/x", "B=2", "B-"],
            labels=["l=v", "gone=1", "gone-"],
            annotations=["an=1"],
            ports=["80", "443/tcp", "80-"],
            volumes=["/data"],
            workingdir="/w",
            user="nobody",
            stop_signal="TERM",
            healthcheck="CMD-SHELL true",
            healthcheck_interval="30s",
            healthcheck_retries=3,
            shell='["/bin/bash", "-c"]',
            onbuild=["RUN x"],
            author="me",
            created_by="made",
            comment="c",
            history_comment="hc",
            arch="arm64",
            variant="v8",
        ),
    )
    rc = ed.runtime
    assert rc.cmd == ("echo", "hi")
    assert rc.entrypoint == ("/bin/bash", "-c", "run me")  # shell form uses --shell
    assert rc.env == ("A=1", "PATH=/bin:/x")  # a re-set variable moves last, as buildah
    assert rc.labels == {"l": "v"}
    assert ed.annotations == {"an": "1"}
    assert rc.exposed_ports == ("443/tcp",)
    assert rc.volumes == ("/data",)
    assert (rc.working_dir, rc.user, rc.stop_signal) == ("/w", "nobody", "TERM")
    assert rc.healthcheck.test == ("CMD-SHELL", "true")
    assert rc.healthcheck.interval == 30 * 10**9 and rc.healthcheck.retries == 3
    assert rc.on_build == ("RUN x",)
    assert ed.image.author == "me" and ed.image.extra["comment"] == "c"
    assert (ed.image.architecture, ed.image.variant) == ("arm64", "v8")
    assert (hist.created_by, hist.history_comment) == ("made", "hc")
    apply_settings(ed, ConfigSettings(cmd="", entrypoint=""))
    assert ed.runtime.cmd is None and ed.runtime.entrypoint is None


def test_healthcheck_timing_without_command_refused():
    with pytest.raises(InvalidArgument, match="--healthcheck"):
        apply_settings(_editor(), ConfigSettings(healthcheck_interval="5s"))
