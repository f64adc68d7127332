"""The live view of ``kiln build`` on a terminal (rich), and the summary it leaves.

Built from the build's events (``kiln.build.progress``): the ``plan`` lists every stage
and step up front (so steps can show ``waiting``), ``step``/``step-end`` give each step's
state and times, ``cache-miss`` the reason, ``output`` the running step's last lines,
``progress`` the bytes and rate of transfers (a base image being pulled). Stages that run
at once are drawn side by side; finished ones shrink to one line. Every line is cut to the
terminal's width (never wrapped), and text from the build (RUN output, file names) is
stripped of control characters before it reaches the terminal.

When the build ends the view is replaced by a compact summary on stderr (steps, cache
hits, time per stage, the image), then the warnings; the full image ID goes to stdout,
as in plain mode, so ``id=$(kiln build .)`` works on a terminal too.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from dataclasses import field
from typing import IO, Any

from kiln.cli.render import LogsAbove, human_size
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuildView"]

TAIL_LINES = 5  # output lines of a running stage shown under it
FAILED_TAIL = 20  # output lines of a failed stage left in the summary
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ICON = {"waiting": "·", "running": "▸", "cached": "✔", "done": "✔", "failed": "✖",
         "cancelled": "✖"}  # fmt: skip
_STYLE = {"waiting": "dim", "running": "bold cyan", "cached": "green", "done": "green",
          "failed": "bold red", "cancelled": "yellow"}  # fmt: skip


def clean(text: str) -> str:
    """Text from the build as one printable line (no escapes, no control characters)."""
    return _CONTROL.sub("", text.replace("\t", "    "))


@dataclass
class _Step:
    text: str
    state: str = "waiting"
    started: float = 0.0
    ended: float = 0.0
    reason: str = ""
    built: bool = False  # missed the cache and ran

    def elapsed(self, now: float) -> float:
        if not self.started:
            return 0.0
        return (self.ended or now) - self.started


@dataclass
class _Stage:
    pos: int
    name: str
    steps: list[_Step]
    deps: list[int]
    started: float = 0.0
    ended: float = 0.0
    image_id: str = ""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=FAILED_TAIL))
    partial: str = ""

    @property
    def label(self) -> str:
        return self.name or f"stage {self.pos}"

    def state(self) -> str:
        states = {s.state for s in self.steps}
        if states & {"failed", "cancelled"}:
            return "failed" if "failed" in states else "cancelled"
        if self.ended:
            return "done"
        return "running" if self.started else "waiting"


@dataclass
class _Transfer:
    what: str
    current: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)


class BuildView:
    """An event sink drawing a live view of a build on ``err`` (a terminal)."""

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, explain: bool = False,
        width: int | None = None,
    ) -> None:  # fmt: skip
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.explain = explain
        self._width = width
        self._lock = threading.RLock()
        self._stages: dict[int, _Stage] = {}
        self._transfers: dict[str, _Transfer] = {}
        self._warnings: list[str] = []
        self._notes: list[str] = []
        self._names: list[str] = []
        self._image_id = ""
        self._started = time.time()
        self._live: Any = None
        self._console: Any = None
        self._logs: LogsAbove | None = None  # while the view is drawn
        self._closed = False

    # -- events --------------------------------------------------------------------------

    def emit(self, event: Any) -> None:
        with self._lock:
            self._apply(event)
            if self._live is None and not self._closed:
                self._start()

    def _apply(self, event: Any) -> None:
        d = event.data
        kind, typ = event.kind, d.get("type")
        if typ == "plan":
            for st in d.get("stages", []):
                steps = [_Step(clean(t)) for t in st.get("steps", [])]
                self._stages[st["stage"]] = _Stage(st["stage"], clean(st.get("name") or ""),
                                                   steps, list(st.get("deps", [])))  # fmt: skip
        elif typ == "step":
            step = self._step(d)
            if step is not None:
                step.state, step.started = "running", d.get("time") or time.time()
                stage = self._stages[d["stage"]]
                stage.started = stage.started or step.started
        elif typ == "step-end":
            step = self._step(d)
            if step is not None:
                step.state = d.get("state", "done")
                step.started, step.ended = d.get("started", 0.0), d.get("ended", time.time())
                step.built = bool(d.get("cache")) and not d["cache"].get("hit")
        elif typ == "cache-miss":
            step = self._step(d)
            if step is not None:
                step.reason = clean(d.get("reason", ""))
        elif typ == "stage-end":
            ended = self._stages.get(d.get("stage", 0))
            if ended is not None:
                ended.ended, ended.image_id = d.get("ended", time.time()), d.get("image_id", "")
        elif typ == "run":
            running = self._stages.get(d.get("stage", 0))
            if running is not None:
                self._add_output(running, event.message)
        elif typ == "tagged":
            self._names.append(d.get("name", ""))
        elif typ == "image":
            self._image_id = d.get("image_id", "")
        elif typ == "note":
            self._notes.append(clean(event.message))
        elif kind == "warning":
            prefix = "WARNING: " if typ == "check" else ""
            self._warnings.append(prefix + clean(event.message))
        elif kind == "progress":
            self._transfer(event)

    def _step(self, d: dict[str, Any]) -> _Step | None:
        stage = self._stages.get(d.get("stage", 0))
        n = d.get("step", 0)
        if stage is None or not 1 <= n <= len(stage.steps):
            return None
        return stage.steps[n - 1]

    def _add_output(self, stage: _Stage, text: str) -> None:
        text = stage.partial + text
        lines = text.split("\n")
        stage.partial = lines.pop()
        for line in lines:
            line = clean(line.rsplit("\r", 1)[-1])
            if line.strip():
                stage.tail.append(line)

    def _transfer(self, event: Any) -> None:
        d = event.data
        ident = str(d.get("id", ""))
        t = self._transfers.get(ident)
        if t is None:
            t = self._transfers[ident] = _Transfer(clean(event.message or ident))
        t.current, t.total = int(d.get("current", 0)), d.get("total")
        if t.total is not None and t.current >= t.total:
            self._transfers.pop(ident, None)

    # -- drawing -------------------------------------------------------------------------

    def _start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=self.err, width=self._width, highlight=False)
        self._live = Live(
            get_renderable=self._render_locked, console=self._console, refresh_per_second=4,
            transient=True, redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip
        self._live.start()
        self._logs = LogsAbove(self._console, self.err)

    def _render_locked(self) -> Any:
        with self._lock:
            return self.render(time.time())

    def render(self, now: float) -> Any:
        """The live view as one rich renderable (also used by tests)."""
        from rich.console import Group
        from rich.table import Table

        parts: list[Any] = [self._headline(now)]
        running = [s for s in self._stages.values() if s.state() == "running"]
        for stage in self._stages.values():
            if stage.state() != "running":
                parts.append(self._stage_line(stage, now))
        width = self._console.width if self._console is not None else 80
        per_row = max(1, min(len(running), width // 38))
        for i in range(0, len(running), per_row):
            row = running[i : i + per_row]
            grid = Table.grid(expand=True, padding=(0, 1))
            for _ in row:
                grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
            grid.add_row(*[self._stage_panel(s, now) for s in row])
            parts.append(grid)
        for t in list(self._transfers.values())[:4]:
            parts.append(self._transfer_line(t))
        return Group(*parts)

    def _headline(self, now: float) -> Any:
        from rich.text import Text

        steps = [s for st in self._stages.values() for s in st.steps]
        finished = sum(s.state in ("done", "cached") for s in steps)
        cached = sum(s.state == "cached" for s in steps)
        text = f"Building {_secs(now - self._started)}  ({finished}/{len(steps)} steps"
        text += f", {cached} cached)" if cached else ")"
        return _line(Text(text, style="bold"))

    def _stage_line(self, stage: _Stage, now: float) -> Any:
        from rich.text import Text

        state = stage.state()
        line = Text(f"{_ICON.get(state, ' ')} [{stage.pos}] {stage.label}", style=_STYLE[state])
        if state == "waiting":
            waits = [self._stages[d].label for d in stage.deps if d in self._stages]
            line.append(f"  waiting for {', '.join(waits)}" if waits else "  waiting",
                        style="dim")  # fmt: skip
        else:
            cached = sum(s.state == "cached" for s in stage.steps)
            line.append(f"  {len(stage.steps)} steps, {cached} cached  "
                        f"{_secs((stage.ended or now) - stage.started)}")  # fmt: skip
        return _line(line)

    def _stage_panel(self, stage: _Stage, now: float) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        head = Text(f"▸ [{stage.pos}] {stage.label}  ", style="bold cyan")
        head.append(_secs(now - stage.started), style="cyan")
        rows: list[Any] = [_line(head)]
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(no_wrap=True, justify="right")
        for n, step in self._window(stage):
            label = Text(f"{_ICON[step.state]} {n:>2} {step.text}", style=_STYLE[step.state])
            if n == 0:
                label = Text(step.text, style="dim")
            status = step.state
            if step.state in ("running", "done", "failed", "cancelled") and step.started:
                status += f" {_secs(step.elapsed(now))}"
            grid.add_row(label, Text(status if n else "", style=_STYLE[step.state]))
        rows.append(grid)
        for line in list(stage.tail)[-TAIL_LINES:]:
            rows.append(_line(Text("  │ " + line, style="dim")))
        return Group(*rows)

    def _window(self, stage: _Stage) -> list[tuple[int, _Step]]:
        """The steps to show: the running one, two done before it, two waiting after it;
        the rest folded into a count line (n = 0)."""
        steps = list(enumerate(stage.steps, start=1))
        current = next((n for n, s in steps if s.state == "running"), 0)
        if not current:
            current = max((n for n, s in steps if s.state != "waiting"), default=1)
        lo, hi = max(1, current - 2), min(len(steps), current + 2)
        shown = [(n, s) for n, s in steps if lo <= n <= hi]
        if lo > 1:
            done = steps[: lo - 1]
            cached = sum(s.state == "cached" for _, s in done)
            shown.insert(0, (0, _Step(f"  {len(done)} steps done ({cached} cached)", "done")))
        if hi < len(steps):
            shown.append((0, _Step(f"  {len(steps) - hi} more waiting", "waiting")))
        return shown

    def _transfer_line(self, t: _Transfer) -> Any:
        from rich.text import Text

        rate = t.current / max(0.001, time.monotonic() - t.started)
        amount = human_size(t.current) + (f" / {human_size(t.total)}" if t.total else "")
        return _line(Text(f"↓ {t.what}  {amount}  {human_size(rate)}/s", style="magenta"))

    # -- the end -------------------------------------------------------------------------

    def error(self, message: str, exit_code: int) -> None:
        """The CLI prints the ``Error:`` line itself, after the summary."""
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live, self._live = self._live, None
        if live is not None:
            live.stop()
        if self._logs is not None:
            self._logs.restore()
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.err, width=self._width, highlight=False)
        from rich.console import Group

        with self._lock:  # as one group: print() would join the lines' Texts, wrapping them
            self._console.print(Group(*self.summary(time.time())))
        if self._image_id:
            self.out.write(self._image_id.removeprefix("sha256:") + "\n")
            self.out.flush()

    def summary(self, now: float) -> list[Any]:
        """What stays on the terminal: one line for the build, one per stage, the image,
        the miss reasons with --explain, a failed step's last output, the warnings."""
        from rich.text import Text

        if not self._stages and not self._image_id:  # ended before planning (a parse error)
            return [Text(w, style="yellow", overflow="fold") for w in self._warnings]
        steps = [s for st in self._stages.values() for s in st.steps]
        cached = sum(s.state == "cached" for s in steps)
        ran = sum(s.built for s in steps)
        failed = [(st, n, s) for st in self._stages.values()
                  for n, s in enumerate(st.steps, 1) if s.state in ("failed", "cancelled")]  # fmt: skip
        took = _secs(now - self._started)
        out: list[Any] = []
        if failed and any(s.state == "failed" for _, _, s in failed):
            st, n, s = next(f for f in failed if f[2].state == "failed")
            out.append(_line(Text(f"✖ Failed after {took} at [{st.pos}] step {n}: {s.text}",
                                  style="bold red")))  # fmt: skip
        elif failed:
            out.append(_line(Text(f"✖ Cancelled after {took}", style="bold yellow")))
        else:
            out.append(_line(Text(f"✔ Built in {took}: {len(steps)} steps, {cached} cached, "
                                  f"{ran} built", style="bold green")))  # fmt: skip
        width = max((len(s.label) for s in self._stages.values()), default=0)
        for stage in self._stages.values():
            if not stage.started:
                continue
            hits = sum(s.state == "cached" for s in stage.steps)
            took_stage = _secs((stage.ended or now) - stage.started)
            out.append(_line(Text(f"  [{stage.pos}] {stage.label:<{width}}  {len(stage.steps):>3}"
                                  f" steps {hits:>3} cached {took_stage:>7}")))  # fmt: skip
        if self._image_id:
            names = "  " + ", ".join(self._names) if self._names else ""
            out.append(_line(Text(f"  image {self._image_id.removeprefix('sha256:')[:12]}{names}",
                                  style="bold")))  # fmt: skip
        if self.explain:
            for stage in self._stages.values():
                for n, step in enumerate(stage.steps, 1):
                    if step.reason:
                        what = step.text if len(step.text) <= 36 else step.text[:35] + "…"
                        out.append(Text(f"  miss [{stage.pos}] {n} {what}: {step.reason}",
                                        overflow="fold"))  # fmt: skip
        for st, _n, s in failed:
            if s.state == "failed":
                for line in st.tail:
                    out.append(_line(Text("  │ " + line, style="dim")))
        for note in self._notes:
            out.append(_line(Text(note, style="dim")))
        for warning in self._warnings:
            out.append(Text(warning, style="yellow", overflow="fold"))
        return out


def _line(text: Any) -> Any:
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _secs(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"
