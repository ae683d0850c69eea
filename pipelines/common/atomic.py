"""Atomic writes: write to a temporary name in the same folder, then rename.

The temporary name is hidden (".NAME.XXXXXXXX.SUFFIX"), so folder readers skip it
(`pipelines.reading.images.image_files`); one left by a killed process (SIGKILL skips every
clean-up) is removed by the next write of the same target.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _remove_stale_temporaries(path: Path, suffix: str) -> None:
    """Temporary files of earlier writes of `path` that were killed before their clean-up (one
    target is written by one process at a time, so none of these is in use)."""
    name = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    for p in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*")):
        if name.fullmatch(os.path.basename(p)):
            with contextlib.suppress(OSError):
                os.unlink(p)


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    `suffix` keeps the extension that libraries such as numpy or PIL look at (default: the target's).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else path.suffix
    _remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
