"""The server's certificate files, swapped in at one instant (kubelet's Secret-volume layout)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from kaptain_warden.certs.rotation import TLS_KEY

__all__ = ["write_files"]

_DATA_LINK: Final = "..data"


def write_files(directory: Path, contents: Mapping[str, bytes]) -> bool:
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
    # The previous generation stays: a reader that resolved `..data` just before the swap may
    # still be opening files in it. Older ones go.
    keep = {staged.name} | ({previous.name} if previous is not None else set())
    for old in directory.glob("..[0-9]*"):
        if old.name not in keep and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
