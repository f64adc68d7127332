"""Layer efficiency (`kiln build report`): bytes hidden by later layers, biggest files."""

from __future__ import annotations

import gzip
import io
import tarfile
from types import SimpleNamespace

from kiln.image.efficiency import layer_efficiency


def _layer(entries: list[tuple[str, int | str]]) -> bytes:
    """A gzip layer: (path, size) regular files, (path, "dir") directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, what in entries:
            info = tarfile.TarInfo(path)
            if what == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = int(what)
                tar.addfile(info, io.BytesIO(b"x" * info.size))
    return gzip.compress(buf.getvalue())


class _Image:
    def __init__(self, layers: list[bytes]) -> None:
        self.blobs = layers
        descs = [SimpleNamespace(digest=f"sha256:{i:064x}") for i in range(len(layers))]
        self.manifest = SimpleNamespace(layers=descs)

    def open_layer(self, desc):
        return io.BytesIO(self.blobs[int(desc.digest[7:], 16)])


def test_overwritten_deleted_and_opaque_bytes_are_wasted():
    img = _Image([
        _layer([("./etc", "dir"), ("./etc/big", 1000), ("./.hidden", 5), ("app/a", 10),
                ("app/b", 20), ("tmp/junk", 300)]),
        _layer([("etc/big", 1200), ("tmp/.wh.junk", 0)]),
        _layer([("app/.wh..wh..opq", 0), ("app/c", 1)]),
    ])  # fmt: skip
    eff = layer_efficiency(img, top=2)
    layers = eff["layers"]
    assert [u["wasted"] for u in layers] == [1000 + 300 + 10 + 20, 0, 0]
    assert layers[0]["files"] == 5 and layers[0]["bytes"] == 1335
    assert layers[0]["biggest"] == [("etc/big", 1000), ("tmp/junk", 300)]
    assert layers[1]["removed"] == ["tmp/junk"] and layers[2]["removed"] == ["app/*"]
    assert eff["total_bytes"] == 1335 + 1200 + 1
    assert eff["wasted_bytes"] == 1330
    assert eff["efficiency"] == round(1 - 1330 / 2536, 4)
    assert [w["path"] for w in eff["wasted_files"]] == ["etc/big", "tmp/junk", "app/b", "app/a"]
    assert ".hidden" in dict(layer_efficiency(img, top=10)["layers"][0]["biggest"])


def test_a_whiteout_of_a_directory_hides_everything_below():
    img = _Image([_layer([("d/x", 7), ("d/y/z", 8), ("dd", 1)]), _layer([(".wh.d", 0)])])
    eff = layer_efficiency(img)
    assert eff["wasted_bytes"] == 15 and eff["layers"][0]["wasted"] == 15
