"""The build's live view and summary, drawn from events at 80 columns; plain lines unchanged."""

from __future__ import annotations

import io

from kiln.build.progress import Progress
from kiln.cli.build_view import BuildView, clean
from kiln.cli.commands.build import BuildRenderer
from kiln.ops.events import Event

LONG = "RUN " + "x" * 200


def _feed(sink) -> None:
    progress = Progress(lambda kind, msg, data: sink.emit(Event(kind, msg, data)), 2)
    progress.plan([
        {"stage": 1, "name": "builder", "steps": ["FROM busybox AS builder", LONG], "deps": []},
        {"stage": 2, "name": "", "steps": ["FROM busybox", "COPY --from=builder /a /a"],
         "deps": [1]},
    ])  # fmt: skip
    progress.step(1, 1, 2, "FROM busybox AS builder", 1)
    progress.step_end(1, 1, "done", started=1.0)
    progress.step(1, 2, 2, LONG, 2)
    progress.cache_miss(1, 2, LONG, "build arg V changed (1 -> 2)")
    progress.output("first line\nsecond \x1b[31mred\x1b[0m line\nthird " + "y" * 150 + "\n", 1)
    sink.emit(Event("progress", "sha256:abc", {"id": "sha256:abc", "current": 5_000_000,
                                               "total": 10_000_000}))  # fmt: skip


def _lines(view: BuildView, renderable) -> list[str]:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(renderable)
    return buf.getvalue().splitlines()


def test_live_view_fits_80_columns_and_shows_state():
    view = BuildView(out=io.StringIO(), err=io.StringIO(), width=80)
    _feed(view)
    view._live.stop()
    lines = _lines(view, view.render(now=10**10))
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert "[1] builder" in text and "running" in text
    assert "waiting for builder" in text
    assert "│ second red line" in text  # escape sequences never reach the terminal
    assert "↓ sha256:abc  5 MB / 10 MB" in text and "B/s" in text
    assert "\x1b" not in clean("a\x1b[2Jb\x07")


def test_summary_counts_and_explain():
    out, err = io.StringIO(), io.StringIO()
    view = BuildView(out=out, err=err, width=80, explain=True)
    _feed(view)
    progress = Progress(lambda kind, msg, data: view.emit(Event(kind, msg, data)), 2)
    progress.step_end(1, 2, "done", started=1.0, cache={"hit": False, "key": "k", "reason": "r"})
    progress.stage_end(1, "sha256:" + "1" * 64, started=1.0)
    progress.step(2, 1, 2, "FROM busybox", 3)
    progress.step_end(2, 1, "done", started=1.0)
    progress.step(2, 2, 2, "COPY --from=builder /a /a", 4)
    progress.step_end(2, 2, "cached", started=1.0, cache={"hit": True, "key": "k", "reason": ""})
    progress.stage_end(2, "sha256:" + "2" * 64, started=1.0)
    progress.tagged("localhost/x:latest")
    progress.image("sha256:" + "2" * 64)
    view.close()
    lines = err.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert "4 steps, 1 cached, 1 built" in text
    assert "image 222222222222  localhost/x:latest" in text
    assert "miss [1] 2 RUN xxx" in text and "build arg V changed (1 -> 2)" in text
    assert out.getvalue() == "2" * 64 + "\n"


def test_plain_lines_are_unchanged_by_the_new_events():
    out, err = io.StringIO(), io.StringIO()
    renderer = BuildRenderer("plain", False, out=out, err=err)
    _feed(renderer)
    assert out.getvalue().splitlines() == [
        "[1/2] STEP 1/2: FROM busybox AS builder",
        f"[1/2] STEP 2/2: {LONG}",
        "first line",
        "second \x1b[31mred\x1b[0m line",
        "third " + "y" * 150,
    ]
    assert err.getvalue() == "sha256:abc: 5 MB / 10 MB\n"  # progress: stderr, as buildah's
    out = io.StringIO()
    _feed(BuildRenderer("plain", False, out=out, err=io.StringIO(), explain=True))
    assert f"--> Cache miss: {LONG}: build arg V changed (1 -> 2)" in out.getvalue().splitlines()


def test_transfers_on_a_terminal_show_bytes_and_rate_in_80_columns():
    """pull, push, load and save draw their transfers with rich: never wider than 80."""
    import re
    import time

    from kiln.cli.render import EventRenderer

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    renderer = EventRenderer("tty", out=io.StringIO(), err=err)
    digest = "sha256:" + "ab" * 32
    renderer.emit(Event("step", f"Copying blob {digest} " + "and a long tail " * 8))
    renderer.emit(Event("progress", f"Copying blob {digest}",
                        {"id": digest, "current": 1_000_000, "total": 10_000_000}))  # fmt: skip
    time.sleep(0.2)
    renderer.emit(Event("progress", f"Copying blob {digest}",
                        {"id": digest, "current": 5_000_000, "total": 10_000_000}))  # fmt: skip
    renderer.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", err.getvalue()).replace("\r", "\n")
    lines = [line for line in screen.split("\n") if line]
    assert all(len(line) <= 80 for line in lines), lines
    assert any("Copying blob sha256:abababababab" in line and "/10.0 MB" in line
               and "/s" in line for line in lines), lines  # fmt: skip


def test_nothing_but_the_error_when_the_build_ends_before_its_plan():
    err = io.StringIO()
    view = BuildView(out=io.StringIO(), err=err, width=80)
    view.error("Containerfile:1: unknown instruction", 125)
    assert err.getvalue() == ""


def test_plain_transfer_progress_is_a_few_lines_on_stderr_not_one_per_chunk():
    """A base pulled by a build sends an event per MiB: a 1 GiB base is not 1,024 lines in
    the build's log (each just ``Copying blob <id>``), but what ``kiln pull`` prints."""
    out, err = io.StringIO(), io.StringIO()
    renderer = BuildRenderer("plain", False, out=out, err=err)
    total = 1024 << 20
    for current in range(1 << 20, total + 1, 1 << 20):
        renderer.emit(Event("progress", "Copying blob 19cd51b04655",
                            {"id": "sha256:19cd", "current": current, "total": total}))  # fmt: skip
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines[0] == "Copying blob 19cd51b04655: 1.05 MB / 1.07 GB"
    assert lines[-1] == "Copying blob 19cd51b04655: 1.07 GB / 1.07 GB done"
    assert len(lines) <= 5  # one every 2 s at most, and the last: the loop takes far less
    quiet_err = io.StringIO()
    quiet = BuildRenderer("plain", True, out=io.StringIO(), err=quiet_err)
    quiet.emit(Event("progress", "Copying blob 19cd51b04655",
                     {"id": "sha256:19cd", "current": total, "total": total}))  # fmt: skip
    assert quiet_err.getvalue() == ""


def test_the_summary_left_on_the_terminal_is_cut_to_its_width_not_wrapped():
    """A failed step's long text ends in an ellipsis on the summary's one line; the next
    line is the next stage's, as in the live view."""
    err = io.StringIO()
    view = BuildView(out=io.StringIO(), err=err, width=80)
    _feed(view)
    progress = Progress(lambda kind, msg, data: view.emit(Event(kind, msg, data)), 2)
    progress.step_end(1, 2, "failed", started=1.0)
    view.error("building at STEP ...", 3)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("✖ Failed after ") and lines[0].endswith("…")
    assert lines[1].lstrip().startswith("[1] builder")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_record_during_the_live_view_goes_above_it_not_into_it():
    """kiln's log lines (the runc advisory, written when the first RUN starts) ran on from
    the view's last line, and the next redraw cleared the wrong lines."""
    import logging

    err = _Terminal()
    handler = logging.StreamHandler(err)
    logging.getLogger().addHandler(handler)
    try:
        view = BuildView(out=io.StringIO(), err=err, width=80)
        _feed(view)
        view._live.refresh()  # a frame on the screen
        logging.getLogger("kiln.test").warning("runc is old")
        view.close()
        assert handler.stream is err  # given back when the view ends
    finally:
        logging.getLogger().removeHandler(handler)
    before, sep, _ = err.getvalue().partition("runc is old")
    assert sep and before.endswith(("\n", "\x1b[2K")), repr(before[-40:])
