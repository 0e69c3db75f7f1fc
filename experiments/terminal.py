"""What the command line prints with: the package's version and a console that does not cut tables."""

from __future__ import annotations

import os
from importlib import metadata

from rich.console import Console

#: Columns of output written to a file, a pipe or a CI log (rich would assume 80 and cut headers).
FILE_WIDTH = 240


def package_version() -> str:
    """The installed shopgym's version (``0+unknown`` for a source tree that was never installed)."""
    try:
        return metadata.version("shopgym")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def make_console(stderr: bool = False) -> Console:
    """A rich console: a terminal's own width, or ``FILE_WIDTH`` columns when output is not a terminal.

    ``COLUMNS`` in the environment still wins, as rich honours it.
    """
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=FILE_WIDTH)
    return console
