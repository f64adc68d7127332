"""Content digests (``algorithm:hex``) and streaming digesters."""

from __future__ import annotations

import hashlib
import re

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

_HEX_LEN = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-fA-F0-9]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest; ``str(d)`` is ``sha256:<hex>``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        m = _DIGEST_RE.match(value or "")
        if not m:
            raise InvalidArgument(f'invalid digest "{value}": expected algorithm:hex')
        algorithm, hexpart = m.group(1), m.group(2)
        if algorithm not in _HEX_LEN:
            raise InvalidArgument(f'unsupported digest algorithm "{algorithm}" in "{value}"')
        if len(hexpart) != _HEX_LEN[algorithm] or hexpart != hexpart.lower():
            raise InvalidArgument(
                f'invalid digest "{value}": {algorithm} needs {_HEX_LEN[algorithm]} lowercase hex digits'
            )
        return cls(algorithm, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        if algorithm == "sha256":  # hashlib.new looks the name up at every call
            return cls(algorithm, hashlib.sha256(data).hexdigest())
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @property
    def short(self) -> str:
        """The 12-character form shown in image lists."""
        return self.hex[:12]

    def hasher(self) -> Digester:
        return Digester(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Digester:
    """Hash bytes as they stream past; ``digest()`` gives the :class:`Digest`."""

    def __init__(self, algorithm: str = "sha256"):
        if algorithm not in _HEX_LEN:
            raise InvalidArgument(f'unsupported digest algorithm "{algorithm}"')
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())


def is_digest(value: str) -> bool:
    try:
        Digest.parse(value)
    except InvalidArgument:
        return False
    return True
