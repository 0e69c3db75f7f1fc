"""Atomic file writes and run-directory checks: no half-written result, no write through a planted link."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

#: Most entries :func:`first_link` looks at in a directory tree before giving up on it.
MAX_TREE_ENTRIES = 200_000


def first_link(root: Path) -> Path | None:
    """The first symbolic link inside ``root`` (not ``root`` itself), or None; a link could point outside.

    Raises ``ValueError`` on a tree of more than ``MAX_TREE_ENTRIES`` entries.
    """
    if not root.is_dir():
        return None
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > MAX_TREE_ENTRIES:
                raise ValueError(f"{root} holds more than {MAX_TREE_ENTRIES:,} entries")
            entry = Path(folder) / name
            if entry.is_symlink():
                return entry
    return None


def refuse_links(root: Path, what: str, error: type[ValueError]) -> None:
    """Raise ``error`` if ``root`` holds a symbolic link: shopgym writes none, and one could point outside."""
    try:
        link = first_link(root)
    except ValueError as problem:
        raise error(f"{what}: {problem}") from None
    if link is not None:
        raise error(
            f"{what} {root} holds a symbolic link ({link}); shopgym reads and writes nothing "
            "through one: remove it"
        )


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    _atomic(path, write)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    _atomic(path, write)


def atomic_write_json(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", path)


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame to parquet at ``path`` atomically."""
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=True))
