"""``write_layer(on_content=...)``: each regular file's content sha256, taken in the read
that writes it into the layer (a COPY's cache key is made from these when its layer is
written first), and the layer's bytes unchanged by it."""

from __future__ import annotations

import hashlib
import io
import os

from kiln.archive.tar_writer import TarEntry, write_layer


def _entries(root: str) -> list[TarEntry]:
    data = {"empty": b"", "small": b"s" * 100, "big": os.urandom(300_000)}
    out = [TarEntry(path="d", type="dir", mode=0o755)]
    for name, body in data.items():
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(body)
        st = os.stat(path)
        out.append(TarEntry(path=f"d/{name}", type="file", source=path, mode=0o644,
                            size=st.st_size, mtime=st.st_mtime_ns))  # fmt: skip
    os.link(os.path.join(root, "big"), os.path.join(root, "big2"))
    out.append(TarEntry(path="d/big2", type="file", source=os.path.join(root, "big2"),
                        mode=0o644, size=300_000))  # fmt: skip
    return out


def test_content_digests_come_with_the_same_layer(tmp_path):
    entries = _entries(str(tmp_path))
    seen: dict[str, str] = {}

    def on_content(entry, st, hexdigest):
        assert st.st_size == entry.size
        seen[entry.path] = hexdigest

    with_hash, plain = io.BytesIO(), io.BytesIO()
    one = write_layer(entries, with_hash, on_content=on_content)
    two = write_layer(entries, plain)
    assert with_hash.getvalue() == plain.getvalue()
    assert (one.digest, one.diff_id) == (two.digest, two.diff_id)
    want = {}
    for e in entries[1:-1]:
        with open(e.source, "rb") as f:
            want[e.path] = hashlib.sha256(f.read()).hexdigest()
    # the second name of a hard link is written as a link: its bytes are not read again
    assert seen == want
