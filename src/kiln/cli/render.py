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
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

from kiln.ops.events import OUTPUT, PROGRESS, RESULT, STEP, WARNING, Event
from kiln.ops.timefmt import parse_time

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


def go_template(template: str, row: dict[str, Any]) -> str:
    """A minimal ``{{.Field}}`` / ``{{ .Field }}`` / ``\\t`` substitution (no logic)."""
    import re

    def sub(m: re.Match) -> str:
        key = m.group(1)
        for k, v in row.items():
            if k.lower() == key.lower():
                return "" if v is None else str(v)
        raise KeyError(key)

    text = template.replace("\\t", "\t").replace("\\n", "\n")
    if text.startswith("table "):
        text = text[len("table ") :]
    return re.sub(r"\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}", sub, text)


# --- events ---------------------------------------------------------------------


def resolve_mode(mode: str, stream: IO[str] | None = None) -> str:
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", lambda: False)()
    if isatty and os.environ.get("TERM", "") != "dumb" and not os.environ.get("CI"):
        return "tty"
    return "plain"


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
        self._last_plain: dict[str, float] = {}

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

    def _step(self, event: Event) -> None:
        if self.mode == "tty":
            console = self._console()
            console.print(event.message, markup=False, highlight=False)
        else:
            self.err.write(event.message + "\n")
            self.err.flush()

    def _progress_event(self, event: Event) -> None:
        d = event.data
        ident, current, total = str(d.get("id", "")), int(d.get("current", 0)), d.get("total")
        if self.mode == "tty":
            progress = self._rich_progress()
            task = self._tasks.get(ident)
            desc = event.message or ident
            if task is None:
                task = progress.add_task(desc, total=total)
                self._tasks[ident] = task
            progress.update(task, completed=current, total=total)
            return
        # plain: at most one line per id every 2 seconds, plus the last one
        now = time.monotonic()
        done = total is not None and current >= total
        if not done and now - self._last_plain.get(ident, 0.0) < 2.0:
            return
        self._last_plain[ident] = now
        what = event.message or ident
        amount = human_size(current) + (f" / {human_size(total)}" if total else "")
        self.err.write(f"{what}: {amount}{' done' if done else ''}\n")
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

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=False),
                TransferSpeedColumn(),
                console=Console(file=self.err),
                transient=False,
            )
            self._progress.start()
        return self._progress


__all__ = [
    "PROGRESS_MODES",
    "EventRenderer",
    "ago",
    "go_template",
    "human_duration",
    "human_size",
    "parse_time",
    "table",
    "to_json",
]
