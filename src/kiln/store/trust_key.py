"""The store's signing key for Docker schema 1 manifests (``kiln push --format v2s1``).

Registries take a schema 1 manifest only when it carries a JSON Web Signature; Docker
signed them with a key it generated once and kept (libtrust's ``key.json``). kiln does the
same, per store: an ECDSA P-256 key made on first use, kept as ``trust/schema1-key.pem``
(PKCS#8, mode 0600, in a 0700 directory) and reused, so every schema 1 manifest a store
pushes is signed by the same key ID. Two processes making it at once agree: the file
appears whole by a hard link that only one of them wins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from kiln.errors import Unavailable

TRUST_DIR = "trust"
KEY_FILE = "schema1-key.pem"


def schema1_key_path(root: str) -> str:
    return os.path.join(root, TRUST_DIR, KEY_FILE)


def schema1_signing_key(root: str):
    """The store's schema 1 signing key (a ``cryptography`` EC private key), made on
    first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = schema1_key_path(root)
    for _ in range(2):
        try:
            with open(path, "rb") as f:
                data = f.read(64 << 10)
        except FileNotFoundError:
            _create(path)
            continue
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise Unavailable(
                f"the schema 1 signing key {path} is not a PEM private key; remove it and "
                "kiln makes a new one"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise Unavailable(f"the schema 1 signing key {path} is not an ECDSA key; remove it")
        return key
    raise Unavailable(f"could not create the schema 1 signing key {path}")


def _create(path: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(prefix=".key-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


__all__ = ["schema1_key_path", "schema1_signing_key"]
