"""Atomic file writes: write to a temporary name in the same folder, then rename.

A killed job therefore never leaves a half-written output that Snakemake (or a user)
could mistake for a finished one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    The temporary name keeps the suffix of ``path`` so that writers which choose a format by
    extension (matplotlib, pandas) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    # mkstemp creates the file 0600; give outputs the permissions of a normal file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5ad(adata, path: str | os.PathLike, **kwargs) -> None:
    """Write ``adata`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **kwargs)
