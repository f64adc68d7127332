"""Find an image the ways users name one (as docker and podman accept them).

Accepted, tried in this order:

- ``sha256:<64 hex>`` or a bare 64-hex image ID;
- ``name@sha256:<digest>``: an image with that repo digest, else one whose
  manifest digest it is (preferring one named in the same repository);
- a name; short names are normalised as Docker does (``busybox`` ->
  ``docker.io/library/busybox:latest``) and then tried as ``localhost/<name>``,
  where podman and buildah put locally built images;
- a manifest list's name: the list's image for the platform asked for (default: this
  machine's), as podman resolves one (``kiln run LIST``, ``FROM LIST``, ``kiln save LIST``);
- a unique image-ID prefix of at least 3 hex digits (``sha256:`` optional).

Unknown: ``NotFound("<input>: image not known")``; an ambiguous prefix:
``InvalidArgument`` saying how many images it matches.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import Platform, Reference
from kiln.oci.reference import is_short_name
from kiln.store.db import Database
from kiln.store.records import ImageRecord, IndexRecord

_FULL_ID = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")
_PREFIX = re.compile(r"^(?:sha256:)?([a-f0-9]{3,63})$")
MIN_PREFIX = 3


class ResolveMixin:
    db: Database

    if TYPE_CHECKING:  # provided by sibling roles the Store facade composes

        def _index_by_reference(self, value: str) -> str | None: ...

        def get_index(self, index_id: str) -> IndexRecord: ...

        def index_bytes(self, rec: IndexRecord) -> bytes: ...

        def get_image(self, image_id: str) -> ImageRecord: ...

    def resolve_image(self, name_or_id: str, platform: Platform | str | None = None) -> ImageRecord:
        value = name_or_id.strip()
        m = _FULL_ID.match(value)
        if m:
            return self.get_image("sha256:" + m.group(1))
        image_id = self._by_reference(value)
        if image_id is None:
            image_id = self._by_list(value, platform)
        if image_id is None:
            image_id = self._by_prefix(value)
        if image_id is None:
            raise NotFound(f"{name_or_id}: image not known")
        return self.get_image(image_id)

    def _by_reference(self, value: str) -> str | None:
        try:
            ref = Reference.parse(value)
        except InvalidArgument:
            if _PREFIX.match(value):
                return None
            raise
        if ref.digest:
            return self._by_digest(ref, is_short_name(value))
        candidates = [str(ref)]
        if is_short_name(value):
            candidates.append(str(Reference.parse("localhost/" + value)))
        for name in candidates:
            row = self.db.one("SELECT image_id FROM names WHERE name=?", (name,))
            if row is not None:
                return row[0]
        return None

    def _by_list(self, value: str, platform: Platform | str | None) -> str | None:
        """A manifest list's name stands for its image for ``platform`` (default: this
        machine's), as podman resolves one; NotFound if the list has none stored."""
        from kiln.oci import Index

        index_id = self._index_by_reference(value)
        if index_id is None:
            return None
        rec = self.get_index(index_id)
        want = Platform.parse(platform) if isinstance(platform, str) else platform
        want = want or Platform.host()
        index = Index.parse(self.index_bytes(rec), rec.media_type)
        try:
            chosen = index.select(want)
        except NotFound as exc:
            raise NotFound(f"{value}: {exc}") from None
        row = self.db.one(
            "SELECT id FROM images WHERE manifest_digest=? ORDER BY added", (str(chosen.digest),)
        )
        if row is None:
            raise NotFound(
                f"{value}: the manifest list's image for {want} ({chosen.digest}) is not in "
                "local storage; pull it, or push the list and pull it again"
            )
        return row[0]

    def _by_digest(self, ref: Reference, short: bool) -> str | None:
        names = [ref.name]
        if short:
            names.append(Reference.parse("localhost/" + ref.path.removeprefix("library/")).name)
        for name in names:
            row = self.db.one(
                "SELECT image_id FROM repo_digests WHERE repo_digest=?", (f"{name}@{ref.digest}",)
            )
            if row is not None:
                return row[0]
        rows = self.db.query(
            "SELECT id FROM images WHERE manifest_digest=? ORDER BY added", (ref.digest,)
        )
        if not rows:
            return None
        for r in rows:
            named = self.db.query(
                "SELECT name FROM names WHERE image_id=? AND (name=? OR name LIKE ?)",
                (r[0], ref.name, ref.name + ":%"),
            )
            if named:
                return r[0]
        return rows[0][0]

    def _by_prefix(self, value: str) -> str | None:
        m = _PREFIX.match(value)
        if not m:
            return None
        prefix = m.group(1)
        rows = self.db.query(
            "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 1000",
            (f"sha256:{prefix}", f"sha256:{prefix}g"),
        )
        if len(rows) > 1:
            raise InvalidArgument(
                f"{value}: ambiguous image ID prefix: it matches {len(rows)} images; "
                "give more characters of the ID"
            )
        return rows[0][0] if rows else None
