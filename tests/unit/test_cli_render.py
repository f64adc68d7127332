"""Podman-style sizes, ages, tables, templates and event rendering."""

from __future__ import annotations

import io
import json

import pytest

from kiln.cli import render
from kiln.errors import InvalidArgument
from kiln.ops.events import Event


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (5632, "5.63 kB"),
        (1986560, "1.99 MB"),
        (1998000, "2 MB"),
        (4_261_550, "4.26 MB"),
        (123_456_789, "123 MB"),
        (3 * 10**9, "3 GB"),
    ],
)
def test_human_size_is_si_with_three_digits(size, text):
    assert render.human_size(size) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (61, "About a minute"),
        (150, "2 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds, text):
    assert render.human_duration(seconds) == text


def test_ago_reads_rfc3339_with_nanoseconds():
    assert render.ago("2024-01-01T00:00:00.123456789Z", now=1704067200 + 125) == "2 minutes ago"
    assert render.ago("", now=0) == ""


def test_table_matches_podman_layout():
    text = render.table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        [["localhost/bb", "1", "43b9c4714f08", "Less than a second ago", "1.99 MB"]],
    )
    assert text == (
        "REPOSITORY    TAG         IMAGE ID      CREATED                 SIZE\n"
        "localhost/bb  1           43b9c4714f08  Less than a second ago  1.99 MB\n"
    )


def test_go_templates():
    row = {"ID": "abc", "Repository": "r", "Labels": {"a": "1"}, "Config": {"Cmd": ["sh", "-c"]}}
    assert render.go_template("{{.ID}} {{ .Repository }}", row) == "abc r"
    assert render.go_template("{{.Config.Cmd}}", row) == "[sh -c]"
    assert render.go_template("{{json .Config.Cmd}}", row) == '["sh","-c"]'  # Go's, compact
    assert render.go_template("{{.Labels}}", row) == "map[a:1]"
    assert render.go_template("{{.id}}", row) == "abc"
    assert render.templated("table {{.ID}}\\t{{.Repository}}", [row]) == (
        "ID          REPOSITORY\nabc         r\n"
    )
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        render.go_template("{{.Nope}}", row)
    with pytest.raises(InvalidArgument, match='function "nope" not defined'):
        render.go_template("{{nope .Names}}", row)


def test_event_renderer_plain_and_json():
    out, err = io.StringIO(), io.StringIO()
    r = render.EventRenderer("plain", out=out, err=err)
    r.emit(Event("step", "Copying blob sha256:1"))
    r.emit(Event("warning", "odd"))
    r.emit(Event("progress", "layer", {"id": "l", "current": 10, "total": 10}))
    r.emit(Event("result", "Loaded image: x"))
    assert out.getvalue() == "Loaded image: x\n"
    assert err.getvalue().splitlines() == [
        "Copying blob sha256:1",
        "WARNING: odd",
        "layer: 10 B / 10 B done",
    ]
    out = io.StringIO()
    r = render.EventRenderer("json", out=out, err=io.StringIO())
    r.emit(Event("step", "s", {"a": 1}))
    assert json.loads(out.getvalue()) == {"kind": "step", "message": "s", "data": {"a": 1}}


def test_quiet_keeps_results_and_warnings():
    out, err = io.StringIO(), io.StringIO()
    r = render.EventRenderer("plain", out=out, err=err, quiet=True)
    r.emit(Event("step", "noise"))
    r.emit(Event("warning", "w"))
    r.emit(Event("result", "Loaded image: x"))
    assert out.getvalue() == "Loaded image: x\n" and err.getvalue() == "WARNING: w\n"


def test_tty_mode_draws_with_rich_and_cleans_up():
    out, err = io.StringIO(), io.StringIO()
    r = render.EventRenderer("tty", out=out, err=err)
    r.emit(Event("step", "Copying blob sha256:abc"))
    for n in (0, 512, 1024):
        r.emit(Event("progress", "sha256:abc", {"id": "sha256:abc", "current": n, "total": 1024}))
    r.emit(Event("result", "Loaded image: x"))  # stops the bars before printing
    r.close()
    assert out.getvalue() == "Loaded image: x\n"
    assert "Copying blob sha256:abc" in err.getvalue()
    assert "sha256:abc" in err.getvalue().split("Copying blob sha256:abc", 1)[1]


def test_auto_mode_is_plain_without_a_terminal():
    assert render.resolve_mode("auto", io.StringIO()) == "plain"
    assert render.resolve_mode("json", io.StringIO()) == "json"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "tty"),
        ({"CI": "true"}, "plain"),
        ({"CI": "1"}, "plain"),
        ({"CI": "false"}, "tty"),  # a runner that says it is not one
        ({"CI": "0"}, "tty"),
        ({"CI": ""}, "tty"),
        ({"TERM": "dumb"}, "plain"),
    ],
)
def test_auto_mode_on_a_terminal_follows_ci_and_term(monkeypatch, env, mode):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert render.resolve_mode("auto", _Terminal()) == mode
    assert render.resolve_mode("plain", _Terminal()) == "plain"


def test_a_warning_on_a_terminal_goes_above_the_bars_not_into_them():
    """Written past the live bars, a warning ran on from the last bar's line and the next
    redraw cleared the wrong lines (a stale bar left above): it is printed through the
    live display, which clears its lines first and draws them again below."""
    err = _Terminal()
    r = render.EventRenderer("tty", out=io.StringIO(), err=err)
    r.emit(Event("progress", "Copying blob abc", {"id": "sha256:abc", "current": 1, "total": 9}))
    r.emit(Event("warning", "odd"))
    r.close()
    before, sep, after = err.getvalue().partition("WARNING: odd")
    assert sep and before.endswith(("\n", "\x1b[2K")), repr(before[-40:])
    assert "Copying blob abc" in after  # the bar drawn again under it
