"""Output for the kiln command: podman-style tables, sizes and ages, JSON, and events.

Events from ``kiln.ops`` are rendered by :class:`EventRenderer`: rich on a TTY,
plain lines when stderr is not a terminal (CI logs), JSON lines on request.
Steps, progress and warnings go to stderr; ``output`` and ``result`` lines go to
stdout so that ``kiln load -i x.tar | grep Loaded`` works. rich is imported only
when a terminal is there to draw on.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

from kiln.ops.events import OUTPUT, PROGRESS, RESULT, STEP, WARNING, Event
from kiln.ops.timefmt import parse_time
from kiln.util.lazy_pattern import lazy_pattern

PROGRESS_MODES = ("auto", "tty", "plain", "json", "quiet")

# --- sizes and ages, as podman prints them (docker/go-units) ---------------------

_SI = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def _fmt_g(value: float, precision: int) -> str:
    out = f"{value:.{precision}g}"
    if "e" in out:  # %g switches to exponent form for 1000 > value >= 10**precision
        out = str(round(value))
    return out


def human_size(size: float, precision: int = 3) -> str:
    """``4.26 MB`` — decimal (SI) units with ``precision`` significant digits."""
    value, i = float(size), 0
    while value >= 1000.0 and i < len(_SI) - 1:
        value /= 1000.0
        i += 1
    return f"{_fmt_g(value, precision)} {_SI[i]}"


def human_duration(seconds: float) -> str:
    """``About a minute``, ``3 hours``, ``2 weeks`` (go-units HumanDuration)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_time(value: str | float | None) -> str:
    """``2024-01-02 03:04:05.5 +0000 UTC``: a time as Go's time.Time prints in a template."""
    ts = parse_time(value)
    if ts is None:
        return ""
    whole = int(ts // 1)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
    if isinstance(value, str) and "." in value:  # nanoseconds as written, trailing zeros cut
        frac = "".join(c for c in value.rpartition(".")[2] if c.isdigit()).rstrip("0")
        text += f".{frac}" if frac else ""
    return text + " +0000 UTC"


def ago(value: str | float | None, now: float | None = None) -> str:
    ts = parse_time(value)
    if ts is None:
        return ""
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - ts)) + " ago"


# --- tables ---------------------------------------------------------------------


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    minwidth: int = 12,
    padding: int = 2,
) -> str:
    """Columns as Go's tabwriter(minwidth=12, padding=2) lays them out for podman.

    Every column but the last is padded to ``max(minwidth, widest + padding)``.
    """
    all_rows = [[str(c) for c in r] for r in rows]
    if headers:
        all_rows.insert(0, [str(h) for h in headers])
    if not all_rows:
        return ""
    ncols = max(len(r) for r in all_rows)
    widths = [0] * ncols
    for r in all_rows:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(c))
    widths = [max(minwidth, w + padding) for w in widths]
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])]
        lines.append(("".join(cells) + (r[-1] if r else "")).rstrip())
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    """Indented JSON as podman prints it (4 spaces, no HTML escaping)."""
    return json.dumps(value, indent=4, ensure_ascii=False)


def file_changes(changes: Sequence[tuple[str, str]], fmt: str | None) -> str | None:
    """``(kind, path)`` pairs (A, C, D) as ``kind path`` lines, or with ``fmt`` "json" as
    ``{"added": [...], "changed": [...], "deleted": [...]}`` (empty groups left out);
    None when there is nothing to print. Any other ``fmt`` is refused, as podman refuses it."""
    if fmt and fmt != "json":
        from kiln.errors import InvalidArgument

        raise InvalidArgument(
            f"--format {fmt!r}: the only supported value for '--format' is 'json'"
        )
    if fmt == "json":
        groups: dict[str, list[str]] = {"added": [], "changed": [], "deleted": []}
        key = {"A": "added", "C": "changed", "D": "deleted"}
        for kind, path in changes:
            groups[key[kind]].append(path)
        return to_json({k: v for k, v in groups.items() if v})
    if changes:
        return "\n".join(f"{kind} {path}" for kind, path in changes)
    return None


def go_template(template: str, obj: Any) -> str:
    """``obj`` through a Go template (kiln.cli.go_template); ``\\t``/``\\n`` are tab and newline
    and a ``table`` prefix is dropped, as podman reads ``--format``."""
    from kiln.cli.go_template import render

    return render(_template_text(template), obj)


def _template_text(template: str) -> str:
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    return text[len("table ") :] if text.startswith("table ") else text


_ACTION = lazy_pattern(r"\{\{(.*?)\}\}", re.S)
_FIELD_NAME = lazy_pattern(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_QUOTED = lazy_pattern(r'"(?:[^"\\]|\\.)*"|`[^`]*`')


def header_name(field: str) -> str:
    """``CreatedSince`` -> ``CREATED SINCE``: a column heading from a field's name, as podman's."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field).upper()


def go_template_header(template: str, overrides: dict[str, str] | None = None) -> str:
    """The heading line for ``table {{.A}}\\t{{.B}}``: each action's last field as a heading
    (``IMAGE ID`` for ``.ID`` when ``overrides`` say so); control actions head nothing."""
    overrides = overrides or {}

    def head(m: re.Match) -> str:
        inner = m.group(1).strip(" -")
        if inner.split(None, 1)[:1] in (["range"], ["if"], ["with"], ["end"], ["else"]):
            return ""
        names = _FIELD_NAME().findall(_QUOTED().sub("", inner))
        if not names:
            return ""
        return overrides.get(names[-1], header_name(names[-1]))

    return _ACTION().sub(head, _template_text(template))


def templated(
    template: str,
    objs: Iterable[Any],
    noheading: bool = False,
    headers: dict[str, str] | None = None,
) -> str:
    """Every object through ``template``; ``table ...`` templates are aligned with a heading.

    The template is parsed once, before any object is rendered: a bad one fails with nothing
    printed. ``headers`` overrides the heading of a field (``{"ID": "IMAGE ID"}``)."""
    from kiln.cli.go_template import compile_template

    run = compile_template(_template_text(template))
    lines = [run(o) for o in objs]
    if not template.startswith("table "):
        return "".join(line + "\n" for line in lines)
    header = None if noheading else go_template_header(template, headers).split("\t")
    return table(header, [line.split("\t") for line in lines])


# --- events ---------------------------------------------------------------------

_LONG_DIGEST = lazy_pattern(r"\b(sha256:[0-9a-f]{12})[0-9a-f]{52}\b")


def short_digests(text: str) -> str:
    """``sha256:<64 hex>`` -> ``sha256:<12 hex>`` (progress lines on a terminal)."""
    return _LONG_DIGEST().sub(r"\1", text)


def resolve_mode(mode: str, stream: IO[str] | None = None) -> str:
    """``auto``: the live view when ``stream`` (stderr) is a terminal that can draw one
    (``TERM`` is not ``dumb``) outside CI (``CI`` unset, empty, ``0``, ``false`` or ``no``);
    else plain lines. Colours follow ``NO_COLOR`` (rich reads it)."""
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", lambda: False)()
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    if isatty and os.environ.get("TERM", "") != "dumb" and not in_ci:
        return "tty"
    return "plain"


class LogsAbove:
    """While a live view draws on ``err``, what logging writes there (``WARNING[kiln.runtime]
    ...``) goes through the view's ``console``, printed above the view, not into it (where
    it ran on from the view's last line and the next redraw cleared the wrong lines).
    :meth:`restore` when the view stops."""

    def __init__(self, console: Any, err: IO[str]) -> None:
        import logging  # here: kiln images and inspect, which draw no view, never import it

        from rich.file_proxy import FileProxy

        self._swapped: list[tuple[logging.StreamHandler, Any]] = []
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is err:
                old = handler.setStream(FileProxy(console, err))
                self._swapped.append((handler, old))

    def restore(self) -> None:
        for handler, old in self._swapped:
            handler.setStream(old)
        self._swapped = []


class PlainProgress:
    """Transfer progress as plain lines (CI logs): ``what: 1.1 MB / 210 MB``, at most one
    line per id every ``INTERVAL`` seconds, and the last one (``... done``), however many
    events the transfer sends."""

    INTERVAL = 2.0

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def line(self, event: Event) -> str | None:
        """The line to print for ``event`` (a ``progress`` event), or None for none now."""
        d = event.data
        ident, current, total = str(d.get("id", "")), int(d.get("current", 0)), d.get("total")
        now = time.monotonic()
        done = total is not None and current >= total
        last = self._last.get(ident)
        if not done and last is not None and now - last < self.INTERVAL:
            return None
        self._last[ident] = now
        what = event.message or ident
        amount = human_size(current) + (f" / {human_size(total)}" if total else "")
        return f"{what}: {amount}{' done' if done else ''}\n"


class EventRenderer:
    """Turns ops events into terminal output; use as ``ctx.events``."""

    def __init__(
        self,
        mode: str = "auto",
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        quiet: bool = False,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.mode = resolve_mode(mode, self.err)
        self.quiet = quiet or self.mode == "quiet"
        self._progress = None  # rich Progress, on a TTY only
        self._tasks: dict[str, Any] = {}
        self._plain = PlainProgress()
        self._logs: LogsAbove | None = None  # while the bars are drawn

    # EventSink
    def emit(self, event: Event) -> None:
        if self.mode == "json":
            self.out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if event.kind in (RESULT, OUTPUT):
            self.close()
            self.out.write(event.message + ("" if event.message.endswith("\n") else "\n"))
            self.out.flush()
            return
        if event.kind == WARNING:
            if self.mode == "tty":  # above the bars, which are drawn again under it
                self._console().print(f"WARNING: {event.message}", markup=False,
                                      highlight=False, overflow="fold")  # fmt: skip
                return
            self.err.write(f"WARNING: {event.message}\n")
            self.err.flush()
            return
        if self.quiet:
            return
        if event.kind == STEP:
            self._step(event)
        elif event.kind == PROGRESS:
            self._progress_event(event)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._logs is not None:
            self._logs.restore()
            self._logs = None

    def _step(self, event: Event) -> None:
        if self.mode == "tty":
            console = self._console()
            # one terminal line each (80 columns never wrap); digests shortened to fit
            console.print(short_digests(event.message), markup=False, highlight=False,
                          no_wrap=True, overflow="ellipsis", crop=True)  # fmt: skip
        else:
            self.err.write(event.message + "\n")
            self.err.flush()

    def _progress_event(self, event: Event) -> None:
        d = event.data
        ident, current, total = str(d.get("id", "")), int(d.get("current", 0)), d.get("total")
        if self.mode == "tty":
            progress = self._rich_progress()
            task = self._tasks.get(ident)
            desc = short_digests(event.message or ident)
            if task is None:
                task = progress.add_task(desc, total=total)
                self._tasks[ident] = task
            progress.update(task, completed=current, total=total)
            return
        line = self._plain.line(event)
        if line is not None:
            self.err.write(line)
            self.err.flush()

    def _console(self):
        if self._progress is not None:
            return self._progress.console
        from rich.console import Console

        return Console(file=self.err, highlight=False)

    def _rich_progress(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )
            from rich.table import Column

            # description, bar, bytes, rate: one line of at most the terminal's width
            self._progress = Progress(
                TextColumn(
                    "{task.description}",
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=12),
                ),
                BarColumn(bar_width=16),
                DownloadColumn(binary_units=False),
                TransferSpeedColumn(),
                console=Console(file=self.err),
                transient=False,
            )
            self._progress.start()
            self._logs = LogsAbove(self._progress.console, self.err)
        return self._progress


__all__ = [
    "PROGRESS_MODES",
    "EventRenderer",
    "LogsAbove",
    "PlainProgress",
    "ago",
    "go_template",
    "go_time",
    "human_duration",
    "human_size",
    "parse_time",
    "table",
    "to_json",
]
