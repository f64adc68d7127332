"""Retries with exponential backoff, as buildah does for registry traffic.

Retried: connection and protocol errors, 5xx, 429 and 408 (honouring
``Retry-After``). Never retried: any other 4xx — a wrong name or a refused
credential does not get better by asking again — nor 501 and 505, which say what the
server will never do (a web server that is no registry answers an upload with 501). Inside an
:func:`~kiln.registry.header_deadline.overall_deadline` (``RetryPolicy.deadline``, which
``HostConnection`` opens around each request), a wait that would end past the deadline
is not started: the last error is final.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable

from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.header_deadline import overall_seconds, time_left
from kiln.util.lazy_dataclass import dataclass

log = logging.getLogger("kiln.registry")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
PERMANENT_5XX = frozenset({501, 505})  # Not Implemented, HTTP Version Not Supported


@dataclass(frozen=True)
class RetryPolicy:
    tries: int = 3  # attempts in all, the first included
    delay: float = 2.0  # first wait; doubles each time ...
    backoff: bool = True  # ... unless False: then every wait is ``delay``
    max_delay: float = 60.0
    deadline: float | None = None  # seconds for one request: all attempts and waits
    sleep: Callable[[float], None] = time.sleep

    def wait_for(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        if not self.backoff:
            return min(self.delay, self.max_delay)
        return min(self.delay * 2.0 ** (attempt - 1), self.max_delay)


class RetryableStatus(Exception):
    """Raised inside a retried call to ask for another attempt after ``response``;
    ``body``: its error body as read (None: read from ``response`` when needed)."""

    def __init__(self, response: httpx.Response, body: bytes | None = None):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.body = body


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or (500 <= status < 600 and status not in PERMANENT_5XX)


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def call_with_retries(
    policy: RetryPolicy,
    what: str,
    attempt: Callable[[], httpx.Response],
    on_give_up: Callable[[BaseException], httpx.Response] | None = None,
) -> httpx.Response:
    """Run ``attempt`` until it returns, retrying on transport errors and RetryableStatus.

    After the last try the final error is handed to ``on_give_up`` (which returns a
    value or raises); without it a RetryableStatus's response is returned and a
    transport error re-raised.
    """
    tries = max(1, policy.tries)
    for n in range(1, tries + 1):
        try:
            return attempt()
        except (httpx.TransportError, RetryableStatus) as exc:
            retry_after = (
                retry_after_seconds(exc.response) if isinstance(exc, RetryableStatus) else None
            )
            wait = policy.wait_for(n, retry_after)
            left = time_left()
            err: BaseException = exc
            last = n >= tries
            if not last and left is not None and wait >= left:
                log.info("%s failed (%s): no time left for another attempt", what, _describe(exc))
                err, last = (exc if isinstance(exc, RetryableStatus) else _past_deadline(exc)), True
            if last:
                if on_give_up is not None:
                    return on_give_up(err)
                if isinstance(exc, RetryableStatus):
                    return exc.response  # the caller reads the last status itself
                raise err from None
            log.info(
                "%s failed (%s), retrying in %.1fs (%d/%d)", what, _describe(exc), wait, n, tries
            )
            policy.sleep(wait)
    raise AssertionError("unreachable")


def _past_deadline(exc: BaseException) -> BaseException:
    """``exc`` (a transport error) saying that the request's deadline ended the retries."""
    if "within the deadline" in str(exc):
        return exc  # header_deadline's overall message says it already
    return type(exc)(
        f"{exc}; no time left for another attempt within the deadline of "
        f"{overall_seconds():g} s for all attempts"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RetryableStatus):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__
