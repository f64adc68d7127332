"""A push given up (Ctrl-C: ``push_layers`` sets its cancel scope's flag) ends a layer's
upload at its next read of the blob, whatever the socket is doing."""

from __future__ import annotations

import io

import pytest

from kiln.errors import Cancelled
from kiln.image.registry_sink import RegistrySink
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.reference import Reference
from kiln.util.cancel import CancelFlag, cancel_scope

CHUNK = 1 << 10
BLOB = bytes(range(256)) * 64  # 16 KiB: many reads of CHUNK


class _GivenUpMidBlob:
    """A registry client that has no blobs; its upload reads one chunk, then the push is
    given up, then it reads on."""

    def __init__(self, flag: CancelFlag) -> None:
        self.flag = flag
        self.read = 0

    def has_blob(self, ref, digest) -> bool:
        return False

    def push_blob(self, ref, desc, open_stream, *, mount_from=None, check_exists=True) -> str:
        with open_stream() as stream:
            self.read += len(stream.read(CHUNK))
            self.flag.set_for("interrupted")
            while data := stream.read(CHUNK):
                self.read += len(data)
        return "uploaded"


def test_an_upload_ends_at_its_next_read_once_the_push_is_given_up():
    layer = Descriptor(mt.OCI_LAYER, Digest.of_bytes(BLOB), len(BLOB))
    with cancel_scope() as flag:
        client = _GivenUpMidBlob(flag)
        sink = RegistrySink(client, Reference.parse("registry.test/repo:1"))  # type: ignore[arg-type]
        with pytest.raises(Cancelled, match="interrupted"):
            sink.put_blob(layer, io.BytesIO(BLOB))
    assert client.read == CHUNK
    assert layer.digest not in sink.present
