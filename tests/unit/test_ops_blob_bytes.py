"""BlobBytes: a blob's reads as a few progress events, however small the reads."""

from __future__ import annotations

from kiln.oci import Digest
from kiln.oci.descriptor import Descriptor
from kiln.ops.events import BYTES_STEP, BlobBytes, Emitter, ListSink

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _desc(size: int) -> Descriptor:
    return Descriptor(LAYER, Digest.parse("sha256:" + "ab" * 32), size)


def _read(progress: BlobBytes, desc: Descriptor, step: int, upto: int) -> None:
    for n in range(step, upto + 1, step):
        progress(desc, n)


def test_one_event_per_step_of_bytes_and_one_at_the_end():
    sink = ListSink()
    desc = _desc(3 * BYTES_STEP + 5)
    progress = BlobBytes(Emitter(sink))
    _read(progress, desc, 4096, desc.size - 5)
    progress(desc, desc.size)
    events = sink.of_kind("progress")
    assert [e.data["current"] for e in events] == [BYTES_STEP, 2 * BYTES_STEP, 3 * BYTES_STEP,
                                                   desc.size]  # fmt: skip
    assert {e.data["total"] for e in events} == {desc.size}
    assert {e.data["id"] for e in events} == {str(desc.digest)}
    assert events[0].message == "Copying blob abababababab"


def test_a_small_blob_makes_no_events_and_a_reread_starts_again():
    sink = ListSink()
    progress = BlobBytes(Emitter(sink))
    small = _desc(BYTES_STEP - 1)
    _read(progress, small, 1024, small.size - 1023)
    progress(small, small.size)
    assert sink.of_kind("progress") == []
    big = _desc(2 * BYTES_STEP)
    progress(big, BYTES_STEP + 10)
    progress(big, 10)  # retried from the start
    progress(big, BYTES_STEP + 20)
    assert [e.data["current"] for e in sink.of_kind("progress")] == [BYTES_STEP + 10,
                                                                      BYTES_STEP + 20]  # fmt: skip
