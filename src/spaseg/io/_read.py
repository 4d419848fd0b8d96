"""One entry point for every input platform, chosen by the sample sheet's ``platform`` column."""

from __future__ import annotations

import os
from collections.abc import Callable

from anndata import AnnData

from .._errors import InputError
from ._h5ad import read_h5ad
from ._stereoseq import read_stereoseq
from ._table import read_table
from ._visium import read_visium

#: Platform name -> reader ``f(path, *, sample=None, **kwargs) -> AnnData``.
READERS: dict[str, Callable[..., AnnData]] = {
    "h5ad": read_h5ad,
    "visium": read_visium,
    "table": read_table,
    "stereo-seq": read_stereoseq,
}


def register_reader(platform: str, reader: Callable[..., AnnData]) -> None:
    """Make :func:`read` dispatch ``platform`` to ``reader``.

    ``reader`` must accept ``(path, *, sample=None, **kwargs)`` and return an AnnData that
    passes :func:`~spaseg.io.check_spatial`.
    """
    READERS[platform] = reader


def read(path: str | os.PathLike, platform: str, *, sample: str | None = None, **kwargs) -> AnnData:
    """Read one sample with the reader registered for ``platform``.

    Parameters
    ----------
    path
        File or folder, as in the sample sheet's ``path`` column.
    platform
        One of the keys of :data:`READERS`: ``"h5ad"``, ``"visium"``, ``"table"`` and any
        registered later.
    sample
        Sample id, used in error messages.
    **kwargs
        Passed on to the reader.

    Returns
    -------
    AnnData with raw counts in ``X`` and coordinates in ``obsm["spatial"]``.

    Raises
    ------
    spaseg.InputError
        If ``platform`` is unknown, or the reader rejects the input.
    """
    reader = READERS.get(platform)
    if reader is None:
        supported = ", ".join(repr(name) for name in sorted(READERS))
        msg = f"unknown platform {platform!r}; supported: {supported}"
        raise InputError(msg, sample=sample, file=path, field="platform")
    return reader(path, sample=sample, **kwargs)
