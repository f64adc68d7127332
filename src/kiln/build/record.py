"""The record a build leaves in the store (``kiln build history``, ``kiln build report``).

``BuildRecorder`` listens to the build's progress events (it wraps the emit function a
``Progress`` is given), so the executor needs no bookkeeping of its own: the ``plan``,
each step's ``step``/``step-end``/``cache-miss``, ``stage-end``, warnings and the result.
``finish`` adds what the store knows once the build is over (each step's new layer:
digest, diff_id, sizes; the image's manifest) and writes one ``build_records`` row.

Recorded: the Dockerfile (up to ``MAX_DOCKERFILE``), the options that shape the result,
build args with credentials in URLs redacted, secret *ids* only (never a value or a
source path), steps with times, state, cache hit or miss and its reason, layers,
warnings, the result or the error, and the last output of a failed step (only of that
one). Writing a record never fails a build.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from kiln.build.options import BuildOptions
from kiln.errors import Cancelled
from kiln.image import open_store_image
from kiln.store.build_records import BuildRecordRow
from kiln.util.redact import redact

__all__ = ["RECORD_VERSION", "BuildRecorder", "build_options_record"]

RECORD_VERSION = 1
MAX_DOCKERFILE = 256 * 1024
MAX_OUTPUT_LINES = 200  # per step: the last lines of what it printed

Emit = Callable[[str, str, dict[str, Any]], None]


def build_options_record(opts: BuildOptions) -> dict[str, Any]:
    """The options worth keeping, with nothing secret in them."""
    return {
        "context": redact(opts.context), "dockerfiles": list(opts.dockerfiles),
        "tags": list(opts.tags), "target": opts.target, "platform": opts.platform,
        "build_args": {k: redact(v) for k, v in sorted(opts.build_args.items())},
        "labels": dict(opts.labels), "annotations": dict(opts.annotations),
        "format": opts.image_format, "compression": opts.compression, "pull": opts.pull,
        "no_cache": opts.no_cache, "layers": opts.layers, "squash": opts.squash,
        "squash_all": opts.squash_all, "timestamp": opts.timestamp, "network": opts.run.network,
        "isolation": opts.run.isolation, "allow": list(opts.allow), "jobs": opts.jobs,
        "secrets": [_secret_id(s) for s in opts.secrets],
        "outputs": [redact(o) for o in opts.outputs],
    }  # fmt: skip


def _secret_id(spec: str) -> str:
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "id":
            return value.strip()
    return "?"


class BuildRecorder:
    """Collects one build's record from its events; ``wrap(emit)`` for the ``Progress``."""

    def __init__(self, opts: BuildOptions, dockerfile: str, dockerfile_name: str) -> None:
        self.id = os.urandom(12).hex()
        self.created = time.time()
        self.opts = opts
        self.doc: dict[str, Any] = {
            "version": RECORD_VERSION, "id": self.id, "created": self.created,
            "dockerfile_name": dockerfile_name, "dockerfile": dockerfile[:MAX_DOCKERFILE],
            "options": build_options_record(opts), "stages": [], "steps": [],
            "warnings": [], "notes": [], "result": {}, "status": "running", "error": "",
        }  # fmt: skip
        self._steps: dict[tuple[int, int], dict[str, Any]] = {}
        self._outputs: dict[int, list[str]] = {}

    def wrap(self, emit: Emit) -> Emit:
        def both(kind: str, message: str, data: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):  # a record never fails a build
                self.note(kind, message, data)
            emit(kind, message, data)

        return both

    def note(self, kind: str, message: str, data: dict[str, Any]) -> None:
        typ = data.get("type")
        doc = self.doc
        if typ == "plan":
            doc["stages"] = [dict(s) for s in data.get("stages", [])]
        elif typ == "step":
            step = {"stage": data.get("stage", 1), "step": data.get("step", 0),
                    "text": _step_text(message), "line": data.get("line", 0),
                    "started": data.get("time", time.time()), "ended": None, "state": "running",
                    "cache": None, "image_id": None, "layer": None, "output": []}  # fmt: skip
            self._steps[(step["stage"], step["step"])] = step
            doc["steps"].append(step)
        elif typ == "step-end":
            ended = self._steps.get((data.get("stage", 0), data.get("step", 0)))
            if ended is not None:
                ended.update(state=data.get("state"), started=data.get("started"),
                            ended=data.get("ended"), cache=data.get("cache"),
                            image_id=data.get("image_id"))  # fmt: skip
        elif typ == "stage-end":
            for stage in doc["stages"]:
                if stage.get("stage") == data.get("stage"):
                    stage.update(image_id=data.get("image_id"), started=data.get("started"),
                                 ended=data.get("ended"))  # fmt: skip
        elif typ == "run":
            self._output(data.get("stage", 0), message)
        elif kind == "warning":
            doc["warnings"].append(message)
        elif typ == "note":
            doc["notes"].append(message)
        elif typ == "tagged":
            doc["result"].setdefault("names", []).append(data.get("name"))
        elif typ == "image":
            doc["result"]["image_id"] = data.get("image_id")

    def _output(self, stage: int, text: str) -> None:
        running = [s for s in self.doc["steps"] if s["stage"] == stage and s["ended"] is None]
        if not running:
            return
        lines = running[-1]["output"]
        if lines and not lines[-1].endswith("\n"):
            text = lines.pop() + text
        lines.extend(text.splitlines(keepends=True))
        del lines[:-MAX_OUTPUT_LINES]

    # -- the end ------------------------------------------------------------------------

    def finish(self, store: Any, *, error: BaseException | None = None,
               manifest_digest: str = "") -> str:  # fmt: skip
        """Complete the record and write it; returns its ID ("" if it could not be written)."""
        doc = self.doc
        doc["ended"] = time.time()
        if error is None:
            doc["status"] = "completed"
        else:
            stopped = isinstance(error, Cancelled | KeyboardInterrupt)  # Ctrl-C, as cancel
            doc["status"] = "cancelled" if stopped else "failed"
            doc["error"] = redact(str(error)) or ("interrupted" if stopped else "")
        for step in doc["steps"]:
            if step["state"] == "running":
                step["state"] = "done" if error is None else doc["status"]
            # what a RUN printed is kept only when it failed (the report shows why): a
            # passing step's output may hold anything, and nothing needs it later
            output = "".join(step["output"])[-16384:] if step["state"] == "failed" else ""
            step["output"] = redact(output)
        doc["result"]["manifest_digest"] = manifest_digest
        with contextlib.suppress(Exception):
            self._layers(store)
        result = doc["result"]
        row = BuildRecordRow(id=self.id, created=self.created, ended=doc["ended"],
                             status=doc["status"], image_id=result.get("image_id") or "",
                             names=list(result.get("names") or []), record=doc)  # fmt: skip
        try:
            store.put_build_record(row)
        except Exception:
            return ""
        return self.id

    def _layers(self, store: Any) -> None:
        """Each step's new layer (the top layer of its image when its stage grew one).

        A step's image is looked up by its row (its layers' chain ids, one query), and its
        new layer read from its stage's last image, whose layers begin with every earlier
        step's of the stage: one image opened per stage (manifest and config read and
        parsed), not one per step."""
        layers_of: dict[str, list[dict[str, Any]]] = {}
        chains_of: dict[str, list[str]] = {}

        def layers(image_id: str) -> list[dict[str, Any]]:
            if image_id not in layers_of:
                layers_of[image_id] = image_layers(store, image_id)
            return layers_of[image_id]

        def chains(image_id: str) -> list[str]:
            if image_id not in chains_of:
                chains_of[image_id] = list(store.get_image(image_id).layers)
            return chains_of[image_id]

        steps = [step for step in self.doc["steps"] if step.get("image_id")]
        last = {step["stage"]: step["image_id"] for step in steps}
        prev: dict[int, list[str]] = {}
        for step in steps:
            image_id = step["image_id"]
            now = chains(image_id)
            before = prev.get(step["stage"])
            if before is not None and len(now) > len(before):
                stage_last = last[step["stage"]]
                full = layers(stage_last)
                if chains(stage_last)[: len(now)] == now and len(full) >= len(now):
                    step["layer"] = full[len(now) - 1]
                else:  # the stage went on from another image (not seen in a build)
                    step["layer"] = layers(image_id)[-1]
            prev[step["stage"]] = now
        image_id = self.doc["result"].get("image_id")
        if image_id:
            self.doc["result"]["layers"] = layers(image_id)


def image_layers(store: Any, image_id: str) -> list[dict[str, Any]]:
    """An image's layers, bottom first: digest, diff_id, media type, sizes, created_by."""
    img = open_store_image(store, image_id)
    history = [h for h in img.config.history if not h.empty_layer]
    try:
        sizes = store.uncompressed_sizes(img.record.layers)  # one query, however many layers
    except Exception:
        sizes = {}
    out = []
    for i, (desc, chain) in enumerate(zip(img.manifest.layers, img.record.layers, strict=False)):
        uncompressed = sizes.get(chain, 0)
        created_by = history[i].created_by if i < len(history) else ""
        out.append({"digest": str(desc.digest), "diff_id": str(img.diff_ids[i]),
                    "media_type": desc.media_type, "size": desc.size,
                    "uncompressed_size": uncompressed, "created_by": created_by or ""})  # fmt: skip
    return out


def _step_text(message: str) -> str:
    """``[1/2] STEP 2/3: RUN make`` -> ``RUN make``."""
    _, sep, rest = message.partition(": ")
    return rest if sep else message
