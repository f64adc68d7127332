"""Tar and compression: deterministic tar writer, safe layer applier (whiteouts, no escapes),
change scans, gzip/zstd streams.

Owns: ``compression`` (detect/decompress/compress, bomb guard), ``hashing``
(hashing streams), ``safe_root`` (fd-confined writes over ``kiln.util.inroot``),
``applier`` (apply a layer tar), ``layer_xattrs`` (which of a layer's xattrs
an unpack sets), ``tar_writer`` (deterministic layer writing and tree
scans), ``changes`` (A/C/D change lists). Imports only the standard library, isal,
zstandard, ``kiln.util`` and ``kiln.errors``; nothing else from kiln.
"""
