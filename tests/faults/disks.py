"""Real faults for a SQLite store: a small disk that fills up, a read-only file system, a file
that is not a database.

Tests run as root, and file modes do not stop root: a chmod'ed file is still writable. A
mounted file system is what refuses writes to everyone - a tmpfs of a few hundred KB fills
for real, and a read-only bind mount refuses writes with EROFS. Mounting needs the right to
mount: without it these tests skip with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount ({' '.join(args)}): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _unmount(where: Path) -> None:
    # lazy: a connection a failed test left open must not hide that failure behind "busy"
    subprocess.run(["umount", "--lazy", str(where)], check=True)


@contextmanager
def small_disk(where: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` KB mounted at `where` (made if missing)."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where))
    try:
        yield where
    finally:
        _unmount(where)


def grow(disk: Path, size_kb: int) -> None:
    """Give a mounted tmpfs more room, keeping its files: space freed by an operator."""
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(disk)], check=True)


@contextmanager
def read_only_view(folder: Path, where: Path) -> Iterator[Path]:
    """`folder` seen read-only at `where` (a read-only bind mount)."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(folder), str(where))
    try:
        _mount("-o", "remount,ro,bind", str(where))
        yield where
    finally:
        _unmount(where)


def not_a_database(path: Path) -> Path:
    """A file of random bytes where a database should be."""
    path.write_bytes(os.urandom(8192))
    return path
