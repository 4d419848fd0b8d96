"""Stereo-seq entry point: tell a GEM from a GEF by content and read it into square bins.

The format readers live in ``_gem.py`` and ``_gef.py``, the binning in ``_binning.py``;
this module re-exports them so callers need one import.
"""

from __future__ import annotations

import os

import anndata as ad

from .._errors import InputError
from ._binning import bin_counts
from ._gef import is_hdf5, read_gef
from ._gem import read_gem
from ._readers import check_counts, check_spatial

__all__ = ["bin_counts", "read_gef", "read_gem", "read_stereoseq"]


def read_stereoseq(
    path: str | os.PathLike,
    *,
    bin_size: int = 50,
    sample: str | None = None,
    gene_key: str = "geneID",
    chunksize: int | None = None,
) -> ad.AnnData:
    """Read a Stereo-seq GEM or GEF into square bins (or cells for a cell-bin GEF).

    The format is decided by content, not by suffix: the HDF5 signature means GEF, anything
    else (plain text or gzip) is read as GEM.

    Parameters
    ----------
    path
        ``.gem``, ``.gem.gz``, ``.txt(.gz)`` or ``.gef``.
    bin_size
        Bin edge in DNB units; bin index = ``floor(coordinate / bin_size)``.
    sample
        Sample id, used in error messages.
    gene_key
        ``"geneID"`` (default) or ``"geneName"``.
    chunksize
        Rows per block/slice; ``None`` keeps each reader's default.

    Returns
    -------
    AnnData; see :func:`read_gem` and :func:`read_gef` for the keys.

    Raises
    ------
    InputError
        As :func:`read_gem` and :func:`read_gef`; also when the file is missing or every
        count in it is zero.
    """
    if not os.path.isfile(path):
        raise InputError(
            "file does not exist or is not a regular file", sample=sample, file=path, field="path"
        )
    kwargs = {"bin_size": bin_size, "sample": sample, "gene_key": gene_key}
    if chunksize is not None:
        kwargs["chunksize"] = chunksize
    gef = is_hdf5(path)
    adata = read_gef(path, **kwargs) if gef else read_gem(path, **kwargs)
    check_counts(adata, sample=sample, file=path, field="count" if gef else "MIDCount")
    check_spatial(adata, sample=sample, file=path)
    return adata
