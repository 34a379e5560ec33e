"""Run folders written atomically: built under a temporary name beside the target, renamed when complete.

Every front door that writes a folder (``run``, ``heatmap``, ``replay``) goes through
:func:`atomic_run_folder`, so an error leaves no partial folder behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


def run_folder_name(*parts: str) -> str:
    """``<part>-<part>-...-<UTC time to the microsecond>``: unique and sortable by creation time."""
    return "-".join([*parts, datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")])


@contextmanager
def atomic_run_folder(out_dir: Path, name: str) -> Iterator[Path]:
    """Yield a temporary folder in ``out_dir``; on success rename it to ``out_dir / name``.

    The folder gets mode 0755 (``mkdtemp`` creates 0700; a run folder is an ordinary, shareable
    folder). On any exception the temporary folder is removed and the exception propagates.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        yield tmp
        tmp.chmod(0o755)
        os.replace(tmp, out_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
