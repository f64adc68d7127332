"""What the API parity suites (kiln serve against dockerd, against podman) share: the query
strings they send and the comparison of every server's answer to the same request.

    servers = {"docker": dockerd_sock, "kiln": kiln_sock}
    found = differences(servers, [("GET", q("/images/json", all="1"))], answer)
    assert not found, "\\n".join(found)

``answer(sock, method, path, *more)`` sends one request to one server and returns what of
its answer is compared (each suite's ``normalised``).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Answer = Callable[..., Any]


def q(path: str, **params: Any) -> str:
    """``path`` with ``params`` as its query; dicts become JSON filters, lists repeat."""
    items = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    return path + ("?" + urllib.parse.urlencode(items, doseq=True) if items else "")


def answers(servers: dict[str, str], answer: Answer, method: str, path: str, *more: Any) -> dict:
    """Every server's ``answer`` to one request, by the server's name."""
    return {name: answer(sock, method, path, *more) for name, sock in servers.items()}


def differences(
    servers: dict[str, str], requests: Iterable[Sequence[Any]], answer: Answer
) -> list[str]:
    """The requests (``(method, path, *more)``) whose answers differ between the servers,
    each with every server's answer."""
    found = []
    for method, path, *more in requests:
        by_server = answers(servers, answer, method, path, *more)
        first, *others = by_server.values()
        if any(other != first for other in others):
            width = max(map(len, by_server)) + 2
            found.append(
                f"{method} {path}"
                + "".join(f"\n  {name + ':':<{width}}{a}" for name, a in by_server.items())
            )
    return found
