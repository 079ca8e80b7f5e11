"""Deterministic zip archives: the same files give the same bytes.

Pure Python; no Django. Entries are sorted by name, every timestamp is 1980-01-01 00:00:00, permissions
are fixed (0644, Unix), and already-compressed files (.gz) are stored while the rest is deflated at
zlib's default level.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def files_under(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `root`, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def write_zip(destination: Path, root: Path, names: Iterable[str], prefix: str = "") -> None:
    """Zip `root/name` for each name (sorted here) as `prefix + name`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", allowZip64=True) as archive:
        for name in sorted(names):
            info = zipfile.ZipInfo(prefix + name, date_time=FIXED_DATE_TIME)
            info.create_system = 3
            info.external_attr = (0o100644 & 0xFFFF) << 16
            stored = name.endswith(".gz") or name.endswith(".zip")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            large = (root / name).stat().st_size > 2**31
            with (root / name).open("rb") as source, archive.open(info, "w", force_zip64=large) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
