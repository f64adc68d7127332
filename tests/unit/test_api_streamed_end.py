"""kiln.api.streaming.StreamedOp in process: every stream ends with the result or the error."""

from __future__ import annotations

import gc
import json
import threading
import weakref

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from kiln.api.streaming import Handoff, StreamedOp
from kiln.errors import NotFound
from kiln.ops.events import STEP, Event

pytestmark = pytest.mark.timeout(20)  # a stream that never ends fails here


def serve(work, **kw) -> TestClient:
    async def endpoint(request):
        return StreamedOp(work, lambda e: [{"status": e.message}], lambda r: [{"done": r}], **kw)

    return TestClient(Starlette(routes=[Route("/op", endpoint, methods=["POST"])]))


def lines(r) -> list[dict]:
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_work_that_sets_its_own_cancel_flag_still_reports_its_error():
    """A build's failing stage once set the flag the server reads as "client gone"."""

    def work(h: Handoff):
        h.emit(Event(STEP, "step 1"))
        h.cancel.set()
        raise NotFound("stage 2 failed")

    r = serve(work).post("/op")
    assert r.status_code == 200
    assert lines(r) == [
        {"status": "step 1"},
        {"error": "stage 2 failed", "errorDetail": {"message": "stage 2 failed"}},
    ]


def test_failure_before_any_output_is_an_error_status():
    def work(h: Handoff):
        h.emit(Event(STEP, ""))  # renders nothing: the response has not started
        raise NotFound("manifest unknown")

    async def endpoint(request):
        return StreamedOp(work, lambda e: [{"status": e.message}] if e.message else [])

    c = TestClient(Starlette(routes=[Route("/op", endpoint, methods=["POST"])]))
    r = c.post("/op")
    assert r.status_code == 404 and r.json() == {"message": "manifest unknown"}


def test_result_after_events_and_from_other_threads():
    def work(h: Handoff):
        t = threading.Thread(target=h.emit, args=(Event(STEP, "from a thread"),))
        t.start()
        t.join()
        return "ok"

    r = serve(work).post("/op")
    assert lines(r) == [{"status": "from a thread"}, {"done": "ok"}]


def test_preamble_opens_the_stream_so_early_failures_are_in_it():
    def work(h: Handoff):
        raise NotFound("unauthorized")

    r = serve(work, preamble=[{"status": "The push refers to repository [x]"}]).post("/op")
    assert r.status_code == 200
    assert lines(r)[-1]["errorDetail"] == {"message": "unauthorized"}


def test_libpod_push_digest_only_for_clients_that_read_it():
    """podman before 4.6 refuses a push stream object without "stream" or "error"."""
    from kiln.api.routes_libpod import DIGEST_IN_PUSH_STREAM
    from kiln.api.versions import version_at_least

    assert not version_at_least("4.3.1", DIGEST_IN_PUSH_STREAM)
    assert version_at_least("5.0.0", DIGEST_IN_PUSH_STREAM)


def test_events_are_handed_over_without_waiting_for_the_loop_up_to_the_bound():
    """A build's lines are queued for the loop without a round trip each; the worker waits
    only when ``QUEUE_ITEMS`` are queued, and a cancel ends that wait."""
    import asyncio

    from kiln.api.streaming import QUEUE_ITEMS
    from kiln.errors import Cancelled

    loop = asyncio.new_event_loop()  # never running while the worker puts
    try:
        queue: asyncio.Queue = asyncio.Queue()
        h = Handoff(loop, queue, threading.Event())
        for i in range(QUEUE_ITEMS):
            h.put("event", i)
        outcome: list[BaseException] = []

        def one_more():
            try:
                h.put("event", "over the bound")
            except Cancelled as exc:
                outcome.append(exc)

        t = threading.Thread(target=one_more)
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the put over the bound waits for a free slot"
        h.cancel.set()
        t.join(10)
        assert not t.is_alive() and len(outcome) == 1
        loop.run_until_complete(asyncio.sleep(0))  # the loop runs the hand-overs, in order
        assert [queue.get_nowait()[1] for _ in range(queue.qsize())] == list(range(QUEUE_ITEMS))
    finally:
        loop.close()


def test_many_events_arrive_all_and_in_order_before_the_result():
    def work(h: Handoff):
        for i in range(1000):
            h.emit(Event(STEP, f"line {i}"))
        return "ok"

    r = serve(work).post("/op")
    assert lines(r) == [*({"status": f"line {i}"} for i in range(1000)), {"done": "ok"}]


def test_a_failed_work_frees_its_frames_without_the_cycle_collector():
    """A failed (or cancelled) work's frames, and the buffers they hold, are freed when
    its response ends: the error's traceback led back to the worker thread's frame, which
    held the error, so each cancelled ``save`` kept 3 MB until a full collection."""

    class Buffer:
        pass

    held: list[weakref.ref] = []

    def work(h: Handoff):
        buffer = Buffer()
        held.append(weakref.ref(buffer))
        raise NotFound("the client went away")

    gc.disable()
    try:
        r = serve(work).post("/op")
        for t in threading.enumerate():
            if t.name == "kiln-api-op":
                t.join(timeout=10)
        assert r.status_code == 404 and r.json() == {"message": "the client went away"}
        assert held and held[0]() is None
    finally:
        gc.enable()
