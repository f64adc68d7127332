"""The kiln command: lazy command table, thin verb modules, rendering (rich on a TTY, plain lines otherwise, JSON on request)."""
