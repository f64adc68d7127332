"""``python -m kiln``: the ``kiln`` command, for an environment without its console script."""

from kiln.cli.main import main

if __name__ == "__main__":  # not when a tool imports every submodule of kiln
    main()
