"""Files that are either the old version or the new one, never half of either.

State files (models, a target's forecast memory) are rewritten while the daemon runs; a crash,
a SIGKILL or a full disk in the middle of a write must leave the previous file whole. So the new
content goes to a temporary file in the same directory, is flushed to disk, and replaces the old
one by a rename, which POSIX makes atomic; the directory is then synced so the rename itself
survives a power loss.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

logger = logging.getLogger("tsf_adapter.files")

# Temporary files are ".<name>.<random>.tmp" beside the file they will replace.
TMP_SUFFIX: Final = ".tmp"


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes; on any failure the old file stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_interrupted_writes(path: Path) -> None:
    """Remove the temporary files a write of ``path`` left when it was killed half way (a SIGKILL
    or a power loss gives the write no chance to clean up); one log line each. Never raises."""
    try:
        leftovers = list(path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"))
    except OSError:
        return
    for tmp in leftovers:
        try:
            tmp.unlink()
        except OSError as exc:
            logger.warning("cannot remove %s, left by an interrupted write: %s", tmp, exc.strerror or exc)
        else:
            logger.info("removed %s, left by an interrupted write", tmp)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
