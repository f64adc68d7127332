"""Tar and compression: deterministic tar writer, safe layer applier (whiteouts, no escapes), change scans, gzip/zstd streams. Imports nothing from kiln but kiln.errors and kiln.oci."""
