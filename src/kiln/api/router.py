"""Starlette's router, finding a request's route without trying every pattern in turn.

A route's pattern matches only paths that start with its literal prefix (the text before
its first ``{``; the whole path when it has no parameter). The routes are indexed by that
prefix, and a request tries, in table order, only the routes whose prefix it starts with:
a handful of dictionary lookups (one per ``/`` in the path) instead of a regular
expression for each of the ~50 routes. Routes the others cannot match are never tried,
so the route chosen is the one Starlette's walk of the whole table chooses; a request
no route fully matches (a 404, a 405) takes Starlette's own walk.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send


def literal_prefix(route: BaseRoute) -> str | None:
    """The text every path the route matches starts with, if it ends at a ``/`` (or is the
    whole path); None: the route is tried for every request."""
    if not isinstance(route, Route):
        return None
    prefix, brace, _ = route.path.partition("{")
    if brace and not prefix.endswith("/"):
        return None
    return prefix


class IndexedRouter(Router):
    """:class:`starlette.routing.Router` with its routes indexed by literal prefix."""

    def __init__(self, routes: Sequence[BaseRoute]):
        super().__init__(list(routes))
        self._by_prefix: dict[str, list[tuple[int, BaseRoute]]] = {}
        self._always: list[tuple[int, BaseRoute]] = []
        for position, route in enumerate(self.routes):
            prefix = literal_prefix(route)
            if prefix is None:
                self._always.append((position, route))
            else:
                self._by_prefix.setdefault(prefix, []).append((position, route))

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that may match ``path``, in table order."""
        found = list(self._always)
        by_prefix = self._by_prefix
        hits = by_prefix.get(path)
        if hits is not None:
            found += hits
        slash = path.find("/")
        while slash >= 0:
            hits = by_prefix.get(path[: slash + 1])
            if hits is not None and slash + 1 != len(path):
                found += hits
            slash = path.find("/", slash + 1)
        if len(found) > 1:
            found.sort(key=_position)
        return [route for _, route in found]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("router", self)
            for route in self.candidates(get_route_path(scope)):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)


def _position(item: tuple[int, BaseRoute]) -> int:
    return item[0]


__all__ = ["IndexedRouter", "literal_prefix"]
