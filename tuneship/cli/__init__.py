"""The ``tuneship`` command line."""

from tuneship.cli.main import app, main

__all__ = ["app", "main"]
