"""Opening data files: plain, gzip or single-member zip, with one-line errors."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

from delever.errors import DeleverInputError


def open_bytes(path: Path, what: str) -> bytes:
    """Decompressed content of a plain, ``.gz`` or single-member ``.zip`` file.

    Raises:
        DeleverInputError: missing file, a directory, or a corrupt/multi-member archive.
    """
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            try:
                with zipfile.ZipFile(path) as zf:
                    members = [m for m in zf.infolist() if not m.is_dir()]
                    if len(members) != 1:
                        listed = ", ".join(m.filename for m in members) or "nothing"
                        raise DeleverInputError(f"{path}: expected a zip holding one file, found {listed}")
                    return zf.read(members[0])
            except zipfile.BadZipFile:
                raise DeleverInputError(f"{path}: not a valid zip archive") from None
        if name.endswith(".gz"):
            try:
                with gzip.open(path, "rb") as fh:
                    return fh.read()
            except (OSError, EOFError) as exc:
                raise DeleverInputError(f"{path}: not a valid gzip file ({exc})") from None
        return path.read_bytes()
    except FileNotFoundError:
        raise DeleverInputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DeleverInputError(f"{path}: expected a {what}, got a directory") from None
