"""``io.podman`` methods over the image store: list, get, inspect, history, names,
removal, prune, exists, tree, diff, search and the layer map.

Each method's parameters arrive in the order ``io.podman.varlink`` declares them
(the ``varlink`` package passes them by position; an absent one is None) and it
returns the reply's fields as a dict. IDs are bare hex, as podman's were.
"""

from __future__ import annotations

import json
from typing import Any

from kiln.errors import NotFound
from kiln.ops import images as image_ops
from kiln.ops import registry
from kiln.ops.containers import diff_container
from kiln.ops.context import Context
from kiln.ops.timefmt import format_time, parse_time

from .varlink_service import (
    PodmanError,
    bare_id,
    error_occurred,
    find_image,
    varlink_errors,
)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_rfc3339(created: str | None) -> str:
    """A creation time as podman's ``time.RFC3339`` wrote it: UTC, whole seconds
    (``2024-01-02T03:04:05Z``); Go's zero time when there is none."""
    ts = parse_time(created)
    return GO_ZERO_TIME if ts is None else format_time(ts)


def _image(summary: Any, record: Any) -> dict[str, Any]:
    """An ``Image`` struct from an ``ImageSummary`` and its store record."""
    digests = [summary.digest] if summary.digest else []
    for rd in summary.repo_digests:
        d = rd.partition("@")[2]
        if d and d not in digests:
            digests.append(d)
    return {
        "id": bare_id(summary.id),
        "digest": summary.digest or "",
        "digests": digests,
        "parentId": bare_id(summary.parent_id or ""),
        "repoTags": list(summary.names),
        "repoDigests": list(summary.repo_digests),
        "created": go_rfc3339(summary.created),
        "size": int(summary.size),
        "virtualSize": int(summary.size),
        "containers": int(summary.containers),
        "labels": dict(summary.labels or {}),
        "isParent": bool(summary.has_children),
        "topLayer": bare_id(record.layers[-1]) if record is not None and record.layers else "",
        "readOnly": False,
        "history": list(summary.names),  # podman's NamesHistory; kiln keeps the current names
    }


def _list(ctx: Context, filters: list[str]) -> list[dict[str, Any]]:
    records = {r.id: r for r in ctx.store.list_images()}
    summaries = image_ops.list_images(ctx, all=True, filters=filters)  # as podman's GetImages
    return [_image(s, records.get(s.id)) for s in summaries]


def _find_or_error(ctx: Context, name: str) -> Any:
    """``find_image`` for the methods podman answered ``ErrorOccurred`` for an unknown image
    (ImageTree, BuildImageHierarchyMap)."""
    try:
        return find_image(ctx, name)
    except PodmanError as exc:
        raise error_occurred(exc.parameters().get("reason") or f"{name}: image not known") from None


def _layer_map(ctx: Context) -> dict[str, dict[str, Any]]:
    """podman's layer map: every layer of the store by its (bare) ID, with its parent, its
    children, the names of the images it is the top layer of, and its size."""
    out: dict[str, dict[str, Any]] = {}
    for rec in ctx.store.list_images():
        parent = ""
        for chain in rec.layers:
            layer_id = bare_id(chain)
            entry = out.get(layer_id)
            if entry is None:
                layer = ctx.store.get_layer(chain)
                entry = out[layer_id] = {
                    "ID": layer_id,
                    "ParentID": parent,
                    "ChildID": [],
                    "RepoTags": [],
                    "Size": int(layer.uncompressed_size),
                }
                if parent and layer_id not in out[parent]["ChildID"]:
                    out[parent]["ChildID"].append(layer_id)
            parent = layer_id
        if rec.layers:
            top = out[bare_id(rec.layers[-1])]
            top["RepoTags"].extend(n for n in rec.names if n not in top["RepoTags"])
    return out


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error_occurred(f"{what} must be a list of strings")
    return value


class ImageMethods:
    """Mixed into the service class; ``self.call(fn)`` runs ``fn(ctx)`` on a fresh context."""

    call: Any
    config: Any

    @varlink_errors
    def ListImages(self) -> dict[str, Any]:
        return {"images": self.call(lambda ctx: _list(ctx, []))}

    @varlink_errors
    def ListImagesWithFilters(self, filters: list[str] | None) -> dict[str, Any]:
        wanted = _strings(filters, "filters")
        return {"images": self.call(lambda ctx: _list(ctx, wanted))}

    @varlink_errors
    def GetImage(self, id: str | None) -> dict[str, Any]:  # noqa: A002 - the IDL's name
        def get(ctx: Context) -> dict[str, Any]:
            rec = find_image(ctx, id or "")
            [summary] = [
                s for s in image_ops.summarize(ctx, ctx.store.list_images()) if s.id == rec.id
            ]
            return _image(summary, rec)

        return {"image": self.call(get)}

    @varlink_errors
    def InspectImage(self, name: str | None) -> dict[str, Any]:
        def inspect(ctx: Context) -> str:
            find_image(ctx, name or "")
            return json.dumps(image_ops.inspect_image(ctx, name or ""))

        return {"image": self.call(inspect)}

    @varlink_errors
    def HistoryImage(self, name: str | None) -> dict[str, Any]:
        def history(ctx: Context) -> list[dict[str, Any]]:
            find_image(ctx, name or "")
            return [
                {
                    "id": bare_id(h.id),
                    "created": go_rfc3339(h.created),
                    "createdBy": h.created_by,
                    "tags": list(h.tags),
                    "size": int(h.size),
                    "comment": h.comment,
                }
                for h in image_ops.history(ctx, name or "")
            ]

        return {"history": self.call(history)}

    @varlink_errors
    def ImageExists(self, name: str | None) -> dict[str, Any]:
        found = self.call(lambda ctx: image_ops.image_exists(ctx, name or ""))
        return {"exists": 0 if found else 1}

    @varlink_errors
    def ImageTree(self, name: str | None, whatRequires: bool | None) -> dict[str, Any]:  # noqa: N803
        def tree(ctx: Context) -> str:
            _find_or_error(ctx, name or "")
            return image_ops.tree(ctx, name or "", what_requires=bool(whatRequires))

        return {"tree": self.call(tree)}

    # -- names and removal -----------------------------------------------------------------

    @varlink_errors
    def TagImage(self, name: str | None, tagged: str | None) -> dict[str, Any]:
        def tag(ctx: Context) -> str:
            find_image(ctx, name or "")
            if not tagged:
                raise error_occurred("TagImage needs the new name in tagged")
            return image_ops.tag(ctx, name or "", tagged)

        return {"image": bare_id(self.call(tag))}

    @varlink_errors
    def UntagImage(self, name: str | None, tag: str | None) -> dict[str, Any]:
        def untag(ctx: Context) -> str:
            rec = find_image(ctx, name or "")
            if not tag:
                raise error_occurred("UntagImage needs the name to remove in tag")
            image_ops.untag(ctx, name or "", tag)
            return rec.id

        return {"image": bare_id(self.call(untag))}

    def _remove(self, name: str | None, force: bool | None) -> tuple[str, Any]:
        def remove(ctx: Context) -> tuple[str, Any]:
            rec = find_image(ctx, name or "")
            result = image_ops.remove_images(ctx, [name or ""], force=bool(force))
            image_ops.raise_first_error(result)
            return rec.id, result

        return self.call(remove)

    @varlink_errors
    def RemoveImage(self, name: str | None, force: bool | None) -> dict[str, Any]:
        image_id, _ = self._remove(name, force)
        return {"image": bare_id(image_id)}

    @varlink_errors
    def RemoveImageWithResponse(self, name: str | None, force: bool | None) -> dict[str, Any]:
        _, result = self._remove(name, force)
        deleted = bare_id(result.deleted[0]) if result.deleted else ""
        return {"response": {"untagged": list(result.untagged), "deleted": deleted}}

    @varlink_errors
    def DeleteUnusedImages(self) -> dict[str, Any]:
        result = self.call(lambda ctx: image_ops.prune(ctx, all=True))
        return {"images": [bare_id(i) for i in result.removed]}

    @varlink_errors
    def ImagesPrune(self, all: bool | None, filter: list[str] | None) -> dict[str, Any]:  # noqa: A002
        filters = _strings(filter, "filter")
        result = self.call(lambda ctx: image_ops.prune(ctx, all=bool(all), filters=filters))
        return {"pruned": [bare_id(i) for i in result.removed]}

    # -- changes and layers ----------------------------------------------------------------

    @varlink_errors
    def Diff(self, name: str | None) -> dict[str, Any]:
        """An image against its parent, else a working container against its image."""

        def diff(ctx: Context) -> list[tuple[str, str]]:
            if not name:
                raise error_occurred("Diff needs an image or working container name")
            try:
                ctx.store.resolve_image(name)
            except NotFound:
                pass
            else:
                return image_ops.diff(ctx, name)
            try:
                ctx.store.find_container(name)
            except NotFound:  # podman's GetDiff error: ErrorOccurred, not ImageNotFound
                raise error_occurred(
                    f"{name}: no image or working container of that name"
                ) from None

            return [(c.kind, c.path) for c in diff_container(ctx, name)]

        return {"diffs": [{"path": p, "changeType": k} for k, p in self.call(diff)]}

    @varlink_errors
    def GetLayersMapWithImageInfo(self) -> dict[str, Any]:
        return {"layerMap": json.dumps(self.call(_layer_map))}

    @varlink_errors
    def BuildImageHierarchyMap(self, name: str | None) -> dict[str, Any]:
        """The image's ID, names and layers (base first) from the layer map, as JSON."""

        def hierarchy(ctx: Context) -> str:
            rec = _find_or_error(ctx, name or "")
            layers = _layer_map(ctx)
            return json.dumps({
                "ID": bare_id(rec.id),
                "Tags": list(rec.names),
                "Layers": [layers[bare_id(chain)] for chain in rec.layers],
            })  # fmt: skip

        return {"imageInfo": self.call(hierarchy)}

    # -- registries ------------------------------------------------------------------------

    @varlink_errors
    def SearchImages(
        self, query: str | None, limit: int | None, filter: dict[str, Any] | None
    ) -> dict[str, Any]:  # noqa: A002

        filters = []
        f = filter or {}
        if f.get("is_official") is not None:
            filters.append(f"is-official={'true' if f['is_official'] else 'false'}")
        if f.get("is_automated") is not None:
            filters.append(f"is-automated={'true' if f['is_automated'] else 'false'}")
        if f.get("star_count"):
            filters.append(f"stars={int(f['star_count'])}")
        if limit is not None and limit < 0:
            raise error_occurred(f"invalid limit {limit}: it must not be negative")
        found = self.call(
            lambda ctx: registry.search(ctx, query or "", limit=limit or 25, filters=filters)
        )
        return {
            "results": [
                {
                    "description": r.description or "",
                    "is_official": bool(r.official),
                    "is_automated": bool(r.automated),
                    "registry": r.index or "",
                    "name": r.name,
                    "star_count": int(r.stars or 0),
                }
                for r in found
            ]
        }


__all__ = ["ImageMethods"]
