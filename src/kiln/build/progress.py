"""Build progress as events, without depending on ``kiln.ops`` (which sits above ``build``).

The executor calls ``Progress`` methods; ``Progress`` hands ``(kind, message, data)`` to
the ``emit`` callable it was given (``kiln.ops.build`` turns them into ``ops.events.Event``).
Kinds are the ops vocabulary; ``data["type"]`` says what a build event is:

===========  ===========  ===================================================
kind         data.type    message
===========  ===========  ===================================================
step         ``step``     ``STEP 2/4: RUN make`` (``[1/2] `` prefix when multi-stage)
step         ``cache``    ``--> Using cache <64 hex>``
step         ``layer``    ``--> <12 hex>`` (an image was committed for the step)
step         ``commit``   ``COMMIT <name>`` before the last step's image
step         ``note``     informational (``# syntax=`` ignored, ONBUILD triggers)
output       ``run``      text a RUN wrote (stdout and stderr, as it comes)
warning      ``warning``  something the user should know
warning      ``check``    a build check's finding: ``data.rule``, ``data.line``
result       ``tagged``   ``Successfully tagged <name>``
result       ``image``    the full image ID (``data.image_id``)
===========  ===========  ===================================================

Events with an empty message carry facts for live views, JSON and build records; line
renderers print nothing for them:

- ``plan``: ``stages`` [{``stage``, ``name``, ``steps`` [texts], ``deps`` [stage numbers]}],
  before anything runs; ``step`` events carry ``time`` (wall clock) too;
- ``step-end``: ``stage``, ``step``, ``state`` (``done``, ``cached``, ``failed``,
  ``cancelled``), ``started``, ``ended``, ``duration`` (seconds), ``cache`` (None for a step
  the cache does not cover, else ``{"hit", "key", "reason"}``), ``image_id`` if committed;
- ``cache-miss``: ``stage``, ``step``, ``instruction``, ``reason`` (one line: why the step's
  key matched nothing; see :mod:`kiln.build.explain`);
- ``stage-end``: ``stage``, ``image_id``, ``started``, ``ended``, ``duration``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kiln.util.redact import redact

__all__ = ["Progress"]

Emit = Callable[[str, str, dict[str, Any]], None]


def _nothing(kind: str, message: str, data: dict[str, Any]) -> None:
    return None


class Progress:
    def __init__(self, emit: Emit | None = None, stage_count: int = 1) -> None:
        self._emit = emit or _nothing
        self.stage_count = stage_count
        self.steps = 0  # how many steps have begun, in every stage (a ``step`` event each)
        self._lock = threading.Lock()  # stages report from their own threads

    def emit(self, kind: str, message: str, **data: Any) -> None:
        self._emit(kind, message, data)

    def prefix(self, stage_pos: int) -> str:
        return f"[{stage_pos}/{self.stage_count}] " if self.stage_count > 1 else ""

    def step(self, stage_pos: int, n: int, total: int, text: str, line: int) -> None:
        with self._lock:
            self.steps += 1
        self.emit(
            "step",
            f"{self.prefix(stage_pos)}STEP {n}/{total}: {redact(text)}",
            type="step", stage=stage_pos, step=n, steps=total, line=line, time=time.time(),
        )  # fmt: skip

    def plan(self, stages: list[dict[str, Any]]) -> None:
        self.emit("step", "", type="plan", stages=stages)

    def step_end(
        self, stage_pos: int, n: int, state: str, started: float,
        cache: dict[str, Any] | None = None, image_id: str | None = None,
    ) -> None:  # fmt: skip
        ended = time.time()
        self.emit(
            "step", "", type="step-end", stage=stage_pos, step=n, state=state, started=started,
            ended=ended, duration=round(max(0.0, ended - started), 3), cache=cache,
            image_id=image_id,
        )  # fmt: skip

    def cache_miss(self, stage_pos: int, n: int, instruction: str, reason: str) -> None:
        self.emit("step", "", type="cache-miss", stage=stage_pos, step=n,
                  instruction=redact(instruction), reason=redact(reason))  # fmt: skip

    def stage_end(self, stage_pos: int, image_id: str, started: float) -> None:
        ended = time.time()
        self.emit("step", "", type="stage-end", stage=stage_pos, image_id=image_id,
                  started=started, ended=ended, duration=round(max(0.0, ended - started), 3))  # fmt: skip

    def cache_hit(self, image_id: str) -> None:
        self.emit("step", f"--> Using cache {_hex(image_id)}", type="cache", image_id=image_id)

    def layer(self, image_id: str) -> None:
        self.emit("step", f"--> {_hex(image_id)[:11]}", type="layer", image_id=image_id)

    def commit(self, stage_pos: int, names: list[str]) -> None:
        text = f"{self.prefix(stage_pos)}COMMIT {' '.join(names)}".rstrip()
        self.emit("step", text, type="commit", names=names)

    def note(self, text: str) -> None:
        self.emit("step", redact(text), type="note")

    def output(self, text: str, stage_pos: int) -> None:
        self.emit("output", text, type="run", stage=stage_pos)

    def warning(self, text: str) -> None:
        # a warning may quote what the user gave (a --cache-from value, a URL)
        self.emit("warning", redact(text), type="warning")

    def check(self, rule: str, message: str, line: int) -> None:
        """A build check's finding (``kiln.build.checks``), after the build."""
        self.emit("warning", f"{rule} - {message} (line {line})", type="check", rule=rule,
                  line=line)  # fmt: skip

    def tagged(self, name: str) -> None:
        self.emit("result", f"Successfully tagged {name}", type="tagged", name=name)

    def image(self, image_id: str) -> None:
        self.emit("result", _hex(image_id), type="image", image_id=image_id)


def _hex(image_id: str) -> str:
    return image_id.removeprefix("sha256:")
