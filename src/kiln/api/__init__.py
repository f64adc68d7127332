"""REST server: Docker Engine API and libpod-style routes over kiln.ops."""
