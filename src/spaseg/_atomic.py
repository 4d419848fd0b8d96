"""Atomic file writes: write to a temporary name in the same folder, then rename.

A killed job therefore never leaves a half-written output that Snakemake (or a user)
could mistake for a finished one.
"""

from __future__ import annotations

import errno
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except OSError as err:
        raise _unwritable(path, err) from err
    os.close(fd)
    # mkstemp creates the file 0600; give outputs the permissions of a normal file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:
        if _out_of_space(err):  # h5py and others word it in their own way: say it plainly
            raise _unwritable(path, err) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _out_of_space(err: BaseException) -> bool:
    text = str(err)
    return (
        getattr(err, "errno", None) in _NO_SPACE
        or "No space left on device" in text
        or "Disk quota exceeded" in text
    )


def _unwritable(path: Path, err: BaseException) -> OSError:
    """One clear error for an output that cannot be written, naming the file and the cause."""
    code = getattr(err, "errno", None)
    if _out_of_space(err):
        code = code if code in _NO_SPACE else errno.ENOSPC
        why = "no space left on the device (or quota exceeded)"
    else:
        why = getattr(err, "strerror", None) or str(err)
    return OSError(
        code, f"cannot write {path}: {why}; free space or choose another results directory"
    )


def write_h5ad(adata, path: str | os.PathLike, **kwargs) -> None:
    """Write ``adata`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **kwargs)


def savefig(figure, path: str | os.PathLike, *, dpi: int = 150) -> None:
    """Save a matplotlib figure to ``path`` atomically (tight bounding box), then close it so
    that a job drawing many figures does not keep them all in memory."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
