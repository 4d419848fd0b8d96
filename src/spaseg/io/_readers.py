"""What every reader shares: count checks, validation of the result, and the final tidy-up.

Each reader builds an AnnData in its own way and then calls :func:`finish`, so all of them hand
the rest of the pipeline the same thing: raw counts as a float32 CSR matrix in ``X``, float64
``obsm["spatial"]`` with columns (x, y), string ``obs_names``/``var_names`` and
``uns["spaseg_input"]``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._errors import InputError

#: float32 holds every whole number up to 2**24 exactly, far above any per-gene count.
COUNTS_DTYPE = np.float32
SPATIAL_FIELD = 'obsm["spatial"]'


def require_path(
    path: str | os.PathLike, *, sample: str | None = None, field: str = "path", folder: bool = False
) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`; raise :class:`InputError` if it is missing."""
    path = Path(path)
    found = path.is_dir() if folder else path.is_file()
    if not found:
        what = "folder" if folder else "file"
        raise InputError(f"{what} not found", sample=sample, file=path, field=field)
    return path


def is_count_matrix(X) -> bool:
    """Whether every entry of ``X`` (dense or sparse) is a finite, non-negative whole number."""
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.size == 0:
        return True
    if values.dtype.kind in "iu":  # integer dtype: only the sign can be wrong
        return bool(values.min() >= 0)
    if values.dtype.kind != "f":
        return False
    return bool(
        np.isfinite(values).all() and (values >= 0).all() and (values == np.round(values)).all()
    )


def to_counts(X) -> sparse.csr_matrix:
    """Copy ``X`` into a float32 CSR matrix with sorted indices and no stored zeros."""
    counts = sparse.csr_matrix(X, dtype=COUNTS_DTYPE, copy=True)
    counts.sum_duplicates()
    counts.eliminate_zeros()
    return counts


def check_spatial(
    adata: AnnData, *, sample: str | None = None, file: str | os.PathLike | None = None
) -> None:
    """Check that ``adata`` can enter the pipeline; raise :class:`~spaseg.InputError` if not.

    Checks that ``obsm["spatial"]`` exists, is numeric with shape ``(n_obs, 2)`` and finite,
    that there is at least one spot and one gene, and that ``obs_names`` are unique.

    Parameters
    ----------
    adata
        Annotated data matrix, as returned by a reader.
    sample
        Sample id, named in the error message.
    file
        File the data came from, named in the error message.
    """
    error = partial(InputError, sample=sample, file=file)
    if "spatial" not in adata.obsm:
        raise error("no spatial coordinates (x, y per spot)", field=SPATIAL_FIELD)
    if adata.n_obs == 0:
        raise error("no spots or cells", field="obs")
    if adata.n_vars == 0:
        raise error("no genes", field="var")
    try:
        coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise error(f"coordinates are not numeric ({err})", field=SPATIAL_FIELD) from err
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise error(f"expected shape (n_obs, 2) (x, y), got {coords.shape}", field=SPATIAL_FIELD)
    n_bad = int((~np.isfinite(coords).all(axis=1)).sum())
    if n_bad:
        msg = f"{n_bad} of {adata.n_obs} spots have NaN or infinite coordinates"
        raise error(msg, field=SPATIAL_FIELD)
    duplicated = adata.obs_names[adata.obs_names.duplicated()].unique()
    if len(duplicated):
        msg = f"{len(duplicated)} spot/cell names occur more than once, e.g. {list(duplicated[:3])}"
        raise error(msg, field="obs_names")


def finish(
    adata: AnnData, *, path: str | os.PathLike, platform: str, sample: str | None = None
) -> AnnData:
    """Bring a freshly read ``adata`` into the shared reader contract and validate it.

    ``X`` must already hold integer-valued counts and ``obsm["spatial"]`` the (x, y) coordinates.
    """
    adata.X = to_counts(adata.X)
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    # Gene names repeat in some references (e.g. symbols); scanpy's usual fix keeps every gene.
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    check_spatial(adata, sample=sample, file=path)
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    adata.uns["spaseg_input"] = {"path": str(path), "platform": platform}
    return adata
