"""``python -m tuneship.cli``: the same as the ``tuneship`` command."""

from tuneship.cli.main import main

main()
