"""The API's indexed router picks, for every request, the route Starlette's walk of the
whole table picks (a route found by prefix, never a different one)."""

from __future__ import annotations

import itertools

from starlette.routing import Match, Route

from kiln.api.app import create_app
from kiln.api.router import IndexedRouter, literal_prefix
from kiln.ops.config import Config

SAMPLES = ["a", "json", "x/y", "localhost/b:1", "sha256:" + "ab" * 32, "images/json", "exists"]
METHODS = ["GET", "HEAD", "POST", "DELETE", "PUT"]


def _router(tmp_path) -> IndexedRouter:
    app = create_app(Config(root=str(tmp_path)))
    router = app.app.router  # type: ignore[attr-defined]
    assert isinstance(router, IndexedRouter)
    return router


def _walk(routes, scope) -> tuple[object, object]:
    """Starlette's choice: the first full match, else the first partial one."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route, Match.FULL
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial, Match.PARTIAL if partial else Match.NONE


def _indexed(router: IndexedRouter, scope) -> tuple[object, object]:
    for route in router.candidates(scope["path"]):
        if route.matches(scope)[0] is Match.FULL:
            return route, Match.FULL
    return _walk(router.routes, scope)  # what the router falls back to


def _paths(router: IndexedRouter):
    for route in router.routes:
        assert isinstance(route, Route)
        names = list(route.param_convertors)
        for values in itertools.product(SAMPLES, repeat=len(names)):
            path = route.path
            for name, value in zip(names, values, strict=True):
                path = path.replace("{" + name + ":path}", value).replace("{" + name + "}", value)
            yield path
    yield from ["/", "/nope", "/images", "/images/", "/libpod/", "/libpod/images/", "/_ping/"]


def test_every_request_gets_the_route_the_full_walk_gives(tmp_path):
    router = _router(tmp_path)
    paths = sorted(set(_paths(router)))
    assert len(paths) > 200
    checked = 0
    for path, method in itertools.product(paths, METHODS):
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        assert _indexed(router, scope) == _walk(router.routes, scope), (method, path)
        checked += 1
    assert checked == len(paths) * len(METHODS)


def test_hot_routes_are_found_after_a_few_patterns(tmp_path):
    router = _router(tmp_path)
    for path in ("/_ping", "/version", "/images/localhost/a:1/json",
                 "/libpod/images/localhost/a:1/json", "/libpod/images/a/exists"):  # fmt: skip
        scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
        tried = 0
        for route in router.candidates(path):
            tried += 1
            if route.matches(scope)[0] is Match.FULL:
                break
        else:
            raise AssertionError(f"no route for {path}")
        assert tried <= 4, (path, tried)
    assert len(router.routes) > 40  # what a walk of the whole table would try


def test_literal_prefix():
    async def endpoint(request):  # pragma: no cover - never called
        return None

    assert literal_prefix(Route("/images/{name:path}/json", endpoint)) == "/images/"
    assert literal_prefix(Route("/_ping", endpoint)) == "/_ping"
    assert literal_prefix(Route("/v{version}/x", endpoint)) is None  # tried for every path
