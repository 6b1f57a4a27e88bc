"""The server's certificate files, swapped in at one instant (kubelet's Secret-volume layout)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from kaptain_warden.certs.rotation import TLS_KEY

__all__ = ["KEEP_REPLACED_FOR", "write_files"]

_DATA_LINK: Final = "..data"
#: Seconds a replaced generation stays for readers that resolved it before the swap (renewals
#: come hours apart; only tests swap faster than this).
KEEP_REPLACED_FOR: Final = 60.0


def write_files(
    directory: Path, contents: Mapping[str, bytes], *, keep_for: float = KEEP_REPLACED_FOR
) -> bool:
    """Swap `contents` into `directory` at one instant; False when they are already there.

    The layout is kubelet's AtomicWriter's (what a Secret volume looks like): `<name>` is a
    symlink to `..data/<name>`, and `..data` is a symlink to a timestamped directory that is
    replaced by one `rename`, so no reader sees a half-written file. A reader that opens
    `tls.crt` and then `tls.key` may still fall between the two opens; that is harmless because
    renewals keep the key (`rotation._for_key`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if all(_read(directory / name) == data for name, data in contents.items()):
        return False
    staged = Path(
        tempfile.mkdtemp(prefix=".." + time.strftime("%Y_%m_%d_%H_%M_%S."), dir=directory)
    )
    for name, data in contents.items():
        path = staged / name
        path.write_bytes(data)
        os.chmod(path, 0o644 if name != TLS_KEY else 0o600)
    os.chmod(staged, 0o755)
    link = directory / _DATA_LINK
    previous = link.resolve() if link.is_symlink() else None
    temporary_link = directory / "..data_tmp"
    temporary_link.unlink(missing_ok=True)
    temporary_link.symlink_to(staged.name)
    os.replace(temporary_link, link)
    for name in contents:
        target = directory / name
        if not target.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(Path(_DATA_LINK) / name)
    # A reader that resolved `..data` before a swap may still be opening files in the
    # generation it found: the previous one always stays, and older ones until they were
    # replaced `keep_for` seconds ago (the next generation's age), however fast swaps follow
    # each other.
    keep = {staged.name} | ({previous.name} if previous is not None else set())
    _remove_replaced(directory, keep, keep_for)
    return True


def _remove_replaced(directory: Path, keep: set[str], keep_for: float) -> None:
    generations: list[tuple[float, Path]] = []
    for path in directory.glob("..[0-9]*"):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                generations.append((path.stat().st_mtime, path))
    generations.sort()
    now = time.time()
    # Each generation was replaced when the next one was made.
    for (_, older), (replaced_at, _) in itertools.pairwise(generations):
        if older.name not in keep and now - replaced_at >= keep_for:
            shutil.rmtree(older, ignore_errors=True)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
