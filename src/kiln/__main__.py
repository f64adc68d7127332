"""``python -m kiln``: the ``kiln`` command, for an environment without its console script."""

from kiln.cli.main import main

main()
