"""Atomic file writes: a crash or a kill never leaves a half-written result behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


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
