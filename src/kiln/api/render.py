"""kiln.ops events -> the JSON message objects Docker and podman clients print."""

from __future__ import annotations

from typing import Any

from kiln.ops.events import OUTPUT, PROGRESS, RESULT, STEP, WARNING, Event


def _short(value: Any) -> str:
    text = str(value or "")
    return text.removeprefix("sha256:")[:12] if text.startswith("sha256:") else text


def progress_message(event: Event) -> list[dict[str, Any]]:
    """Docker's pull/push progress shape: ``{"status", "progressDetail", "id"}``."""
    d = event.data
    if event.kind == PROGRESS:
        detail = {"current": int(d.get("current") or 0)}
        if d.get("total"):
            detail["total"] = int(d["total"])
        return [
            {
                "status": event.message or "Downloading",
                "progressDetail": detail,
                "id": _short(d.get("id")),
            }
        ]
    if event.kind == STEP:
        obj: dict[str, Any] = {"status": event.message}
        ident = d.get("id") or d.get("digest")
        if ident and str(ident).startswith("sha256:") and "digest" not in d:
            obj["id"] = _short(ident)
        return [obj]
    if event.kind == WARNING:
        return [{"status": f"Warning: {event.message}"}]
    if event.kind == OUTPUT:
        return [{"stream": event.message}]
    return []


def stream_message(event: Event, quiet: bool = False) -> list[dict[str, Any]]:
    """Build/load output as ``{"stream": "...\\n"}`` lines."""
    if event.kind == PROGRESS:
        return []
    if event.kind == RESULT:
        return []
    text = event.message
    if event.kind == WARNING and not text.startswith("[Warning]"):  # dockerd's own wording
        text = f"WARNING: {text}"
    if quiet and event.kind != WARNING:
        return []
    if not text:
        return []
    return [{"stream": text if text.endswith("\n") else text + "\n"}]


__all__ = ["progress_message", "stream_message"]
