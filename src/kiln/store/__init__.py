"""The embedded store: content-addressed blobs, SQLite metadata, leases, GC.

Only store and snapshot write under the state root. Must not import image,
container, build, ops, cli, api.
"""

from kiln.store.records import ContainerRecord, GCResult, ImageRecord, IndexRecord, LayerRecord
from kiln.store.store import Store

__all__ = ["ContainerRecord", "GCResult", "ImageRecord", "IndexRecord", "LayerRecord", "Store"]
