"""Local state created private to the user who runs ChannelHub: folders 0700, files 0600.

Each is created with its mode (never written first and narrowed after), and only when it does
not exist yet: a folder the operator chose (say /srv) keeps the mode it has."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; an existing one is left alone."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it a moment ago
            pass
    return path


def create_private_file(path: Path) -> bool:
    """Create an empty 0600 file unless one exists; True when this call created it."""
    make_private_dir(Path(path).parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        return False
    return True


def write_private_text(path: Path, text: str) -> None:
    """Write `text` to a file that is 0600 from its first byte (an existing file is narrowed
    before it is written)."""
    make_private_dir(Path(path).parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
