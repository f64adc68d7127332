"""The RUN flags kiln build and kiln run share (kiln.cli.commands._run_flags) and the
RunSettings they make: one declaration, one parse, the same settings from either verb."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from kiln.cli.commands._run_flags import run_flags, run_settings
from kiln.cli.main import cli
from kiln.errors import InvalidArgument
from kiln.runtime import RunOptions, RunSettings

ARGS = ["--network", "none", "--add-host", "db:10.0.0.2", "--dns", "1.1.1.1,8.8.8.8",
        "--dns-search", "example.org", "--dns-option", "ndots:2", "--cap-add", "NET_ADMIN,SYS_TIME",
        "--cap-drop", "MKNOD", "--ulimit", "nofile=100:200", "-m", "512m", "--memory-swap", "-1",
        "-c", "512", "--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-cpus", "0",
        "--cpuset-mems", "0", "--shm-size", "1g", "--isolation", "chroot",
        "--runtime", "runc"]  # fmt: skip
EXPECTED = RunSettings(
    network="none", isolation="chroot", runtime="runc", add_hosts=("db:10.0.0.2",),
    dns=("1.1.1.1", "8.8.8.8"), dns_search=("example.org",), dns_options=("ndots:2",),
    cap_add=("NET_ADMIN", "SYS_TIME"), cap_drop=("MKNOD",), ulimits=("nofile=100:200",),
    memory=512 << 20, memory_swap=-1, cpu_shares=512, cpu_period=100000, cpu_quota=50000,
    cpuset_cpus="0", cpuset_mems="0", shm_size=1 << 30,
)  # fmt: skip


def settings_of(verb: str, args: list[str]) -> RunSettings:
    got: list[RunSettings] = []

    @click.command()
    @run_flags(verb)
    def command(**kw):
        got.append(run_settings(kw))
        assert kw == {}, "run_settings takes every RUN flag out"

    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return got[0]


@pytest.mark.parametrize("verb", ["build", "run"])
def test_every_run_flag_lands_in_the_settings_the_same_way_for_both_verbs(verb):
    assert settings_of(verb, ARGS) == EXPECTED


def test_no_flag_gives_the_defaults(monkeypatch):
    monkeypatch.delenv("BUILDAH_ISOLATION", raising=False)
    assert settings_of("build", []) == RunSettings()
    monkeypatch.setenv("BUILDAH_ISOLATION", "chroot")
    assert settings_of("run", []).isolation == "chroot"


def test_a_bad_buildah_isolation_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("BUILDAH_ISOLATION", "vm")
    with pytest.raises(InvalidArgument, match=r"\$BUILDAH_ISOLATION 'vm' is invalid"):
        settings_of("build", [])


def test_kiln_build_refuses_an_unknown_network_before_building(tmp_path):
    # it used to be accepted, and ignored by a Containerfile without RUN
    (tmp_path / "Containerfile").write_text("FROM scratch\nLABEL a=b\n")
    args = ["--root", str(tmp_path / "root"), "build", "-q", "--network", "bogus", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 125, result.output
    assert "--network 'bogus' is invalid: use one of host, none, private" in result.output
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("*.json"))


def test_settings_are_frozen_and_hold_tuples():
    s = RunSettings(dns=["1.1.1.1"], network="bridge")
    assert s.dns == ("1.1.1.1",) and s.network == "private"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.network = "host"  # type: ignore[misc]
    with pytest.raises(InvalidArgument, match="--network 'macvlan'"):
        RunSettings(network="macvlan")


def test_run_options_are_the_settings_plus_one_process():
    opts = RunOptions.of(EXPECTED, args=["true"], env=["A=b"])
    assert opts.settings() == EXPECTED and opts.args == ["true"] and opts.env == ["A=b"]
    assert RunOptions.of(EXPECTED, args=["true"], network="host").network == "host"


def test_settings_kept_as_json_come_back_and_given_values_win_over_kept_ones():
    kept = RunSettings(network="none", dns=["10.9.8.7"], ulimits=["nofile=100:100"])
    assert kept.to_json() == {"network": "none", "dns": ["10.9.8.7"], "ulimits": ["nofile=100:100"]}
    assert RunSettings.from_json({**kept.to_json(), "from_a_newer_kiln": 1}) == kept
    now = RunSettings(dns=["10.0.0.1"], memory=1 << 20)
    assert now.over(kept) == RunSettings(network="none", dns=("10.0.0.1",), memory=1 << 20,
                                         ulimits=("nofile=100:100",))  # fmt: skip
    assert RunSettings().over(kept) == kept and RunSettings().to_json() == {}


@pytest.mark.parametrize("bad", [{"ulimits": ["bogus=1"]}, {"add_hosts": ["db"]}])
def test_settings_refuse_what_no_run_could_use(bad):
    with pytest.raises(InvalidArgument):
        RunSettings(**bad)
