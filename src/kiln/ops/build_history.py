"""Build records as use cases: ``kiln build history ls|inspect|rm|prune`` and the data of
``kiln build report``.

Records are written by every build (``kiln.build.record``) and kept bounded by the store
(``kiln.store.build_records``); they are metadata only. ``report_data`` joins a record
with what the store still holds of its image: the layers' file lists give the
layer-efficiency view (``kiln.image.efficiency``). An image removed since is reported as
gone, never an error.
"""

from __future__ import annotations

from typing import Any

from kiln.errors import InvalidArgument, NotFound
from kiln.image import open_store_image
from kiln.image.efficiency import layer_efficiency
from kiln.ops.context import Context
from kiln.ops.timefmt import parse_duration
from kiln.util.lazy_dataclass import dataclass

__all__ = ["HistoryRow", "inspect", "list_records", "prune", "remove", "report_data"]


@dataclass
class HistoryRow:
    id: str
    created: float
    duration: float
    status: str
    image_id: str
    names: list[str]
    steps: int = 0
    cached: int = 0


def list_records(ctx: Context) -> list[HistoryRow]:
    """Every record, newest first (the step counts need each body: read lazily)."""
    out = []
    for row in ctx.store.list_build_records():
        full = ctx.store.get_build_record(row.id).record
        steps = full.get("steps", [])
        cached = sum(1 for s in steps if (s.get("cache") or {}).get("hit"))
        out.append(HistoryRow(row.id, row.created, max(0.0, row.ended - row.created), row.status,
                              row.image_id, row.names, len(steps), cached))  # fmt: skip
    return out


def inspect(ctx: Context, ref: str = "") -> dict[str, Any]:
    """The whole record (``""``/``latest``: the newest)."""
    return ctx.store.get_build_record(ref).record


def remove(ctx: Context, refs: list[str]) -> list[str]:
    """Delete records by ID or prefix; returns the IDs deleted."""
    gone = []
    for ref in refs:
        row = ctx.store.get_build_record(ref)
        ctx.store.delete_build_record(row.id)
        gone.append(row.id)
    return gone


def prune(ctx: Context, *, keep_duration: str = "", keep: int = 0, all: bool = False) -> int:  # noqa: A002
    """Delete records older than ``keep_duration`` (e.g. ``48h``), keeping the newest ``keep``;
    ``all``: every record. Returns how many went."""
    if all:
        return ctx.store.prune_build_records(0.0, 0)
    older = 0.0
    if keep_duration:
        seconds = parse_duration(keep_duration)
        if seconds is None:
            raise InvalidArgument(f"--keep-duration {keep_duration!r}: give a duration like 48h")
        older = seconds
    if keep < 0:
        raise InvalidArgument("--keep must be 0 or more")
    return ctx.store.prune_build_records(older, keep)


def report_data(ctx: Context, ref: str = "") -> dict[str, Any]:
    """The record plus the image's layers and their efficiency, for the report page."""

    record = dict(ctx.store.get_build_record(ref).record)
    image_id = (record.get("result") or {}).get("image_id") or ""
    record["efficiency"] = None
    record["image_present"] = False
    if image_id:
        try:
            img = open_store_image(ctx.store, image_id)
        except NotFound:
            return record
        record["image_present"] = True
        record["efficiency"] = layer_efficiency(img)
    return record
