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
    # buildah 1.28 takes any text; kiln too, but what it could not show or address
    for name in ("bad/name", "a b", "x:y", "a@b", "-dash", "UPPER", "é", "../up"):
        assert check_name(name) == name
    for name in ("", ".", "..", "a\nb", "tab\tx", "nul\0"):
        with pytest.raises(InvalidArgument, match="container name .* is invalid"):
            check_name(name)


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


def test_a_lone_dash_clears_the_whole_list_as_buildah_config_does():
    """buildah config --env -, --label -, --annotation -, --port -, --volume - and
    --os-feature - clear every entry; kiln set a variable, label or annotation named '-',
    refused the port and kept the volumes."""
    ed = _editor()
    full = ConfigSettings(env=["A=1"], labels=["l=v"], annotations=["a=1"], ports=["80"],
                          volumes=["/v"], os_features=["f"])  # fmt: skip
    apply_settings(ed, full)
    apply_settings(ed, ConfigSettings(env=["-"], labels=["-"], annotations=["-"], ports=["-"],
                                      volumes=["-"], os_features=["-"]))  # fmt: skip
    rc = ed.runtime
    assert (rc.env, rc.labels, rc.exposed_ports, rc.volumes) == ((), {}, (), ())
    assert (ed.annotations, ed.image.os_features) == ({}, ())


def test_env_without_a_value_takes_the_callers_or_is_refused(monkeypatch):
    """buildah config --env NAME takes NAME's value from its own environment and refuses
    one with none ('no value given'); kiln wrote NAME= into the image."""
    monkeypatch.setenv("KILN_TEST_GIVEN", "from-here")
    monkeypatch.delenv("KILN_TEST_UNSET", raising=False)
    ed = _editor()
    apply_settings(ed, ConfigSettings(env=["KILN_TEST_GIVEN"]))
    assert ed.runtime.env_dict()["KILN_TEST_GIVEN"] == "from-here"
    with pytest.raises(InvalidArgument, match="KILN_TEST_UNSET has no value here"):
        apply_settings(ed, ConfigSettings(env=["KILN_TEST_UNSET"]))
    assert "KILN_TEST_UNSET" not in ed.runtime.env_dict()


def test_add_history_records_buildah_s_lines_in_buildah_s_order():
    """buildah config --add-history: one '#(nop)' line per kind of setting, in buildah's
    order whatever the command line's, one per volume and ONBUILD trigger, the text as
    given (checked against buildah 1.28); none without --add-history."""
    settings = ConfigSettings(
        workingdir="/srv", labels=["a=b", "c=d"], onbuild=["RUN x", "RUN y"],
        healthcheck="CMD true", healthcheck_interval="5s", healthcheck_retries=2,
        volumes=["/a", "/b"], cmd="echo hi", entrypoint='["/bin/sh"]', env=["A=1", "B=$A"],
        ports=["80", "53/udp"], stop_signal="TERM", shell="/bin/bash -c", user="1",
        author="not recorded", add_history=True,
    )  # fmt: skip
    hist = apply_settings(_editor(), settings)
    assert [e.removeprefix("/bin/sh -c #(nop) ") for e in hist.entries] == [
        "USER 1", "SHELL /bin/bash -c", "STOPSIGNAL TERM", "EXPOSE 80 53/udp", "ENV A=1 B=$A",
        'ENTRYPOINT ["/bin/sh"]', "CMD echo hi", "VOLUME /a", "VOLUME /b",
        "HEALTHCHECK --interval=5s --retries=2 CMD true", "LABEL a=b c=d", "WORKDIR /srv",
        "ONBUILD RUN x", "ONBUILD RUN y",
    ]  # fmt: skip
    assert all(e.startswith("/bin/sh -c #(nop) ") for e in hist.entries)
    removed = apply_settings(_editor(), ConfigSettings(healthcheck="", add_history=True))
    assert removed.entries == ["/bin/sh -c #(nop) HEALTHCHECK NONE"]
    assert apply_settings(_editor(), ConfigSettings(user="1")).entries == []


def test_a_new_healthcheck_starts_from_buildah_s_timings():
    """buildah config --healthcheck on an image with none writes Interval and Timeout 30s
    and Retries 3 unless given (kiln wrote 0s); an existing one keeps its own timings."""
    ed = _editor()
    apply_settings(ed, ConfigSettings(healthcheck="CMD true", healthcheck_timeout="3s"))
    check = ed.runtime.healthcheck
    assert (check.test, check.interval, check.timeout, check.retries, check.start_period) == (
        ("CMD", "true"), 30 * 10**9, 3 * 10**9, 3, 0
    )  # fmt: skip
    apply_settings(ed, ConfigSettings(healthcheck_retries=5))
    apply_settings(ed, ConfigSettings(healthcheck="NONE"))
    check = ed.runtime.healthcheck
    assert (check.test, check.timeout, check.retries) == (("NONE",), 3 * 10**9, 5)
