"""``python -m bench`` is the ``bench`` command."""

from bench.cli import main

LAYER = 12  # import layer (docs/development.md#layers): imports only lower layers' units

main()
