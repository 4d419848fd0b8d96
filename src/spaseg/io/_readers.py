"""What every reader shares: count checks, validation of the result, and the final tidy-up.

Each reader builds an AnnData in its own way and then calls :func:`finish`, so all of them hand
the rest of the pipeline the same thing: raw counts as a float32 CSR matrix in ``X``, float64
``obsm["spatial"]`` with columns (x, y), string ``obs_names``/``var_names`` and
``uns["spaseg_input"]``.
"""

from __future__ import annotations

import logging
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
#: Fractional values that all lie in [0, LOG_MAX] look like log1p of normalised counts:
#: log1p(1e8) is 18.4, far above any normalised value, while raw counts reach thousands.
LOG_MAX = 20.0

log = logging.getLogger("spaseg")


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


def count_problem(X) -> str | None:
    """Why ``X`` (dense or sparse) does not hold raw counts, in words; ``None`` if it does.

    Raw counts are finite, non-negative whole numbers. Fractional values that all lie between
    0 and :data:`LOG_MAX` are named as what they most likely are: log-normalised data.
    """
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.size == 0:
        return None
    if values.dtype.kind not in "iuf":
        return f"values are not numbers (dtype {values.dtype})"
    finite = np.isfinite(values)
    if not finite.all():
        return f"{int((~finite).sum())} of {values.size} values are NaN or infinite"
    if values.min() < 0:
        n_negative = int((values < 0).sum())
        return f"{n_negative} of {values.size} values are negative (smallest {values.min():g})"
    fractional = values != np.round(values)
    if not fractional.any():
        return None
    if values.max() <= LOG_MAX:
        return (
            f"values have fractions and all lie between 0 and {values.max():.3g}: they look "
            "log-normalised, not raw counts (SpaSEG normalises the raw counts itself)"
        )
    example = values[fractional].flat[0]
    return (
        f"{int(fractional.sum())} of {values.size} values are not whole numbers, e.g. {example:g}"
    )


def is_count_matrix(X) -> bool:
    """Whether every entry of ``X`` (dense or sparse) is a finite, non-negative whole number."""
    return count_problem(X) is None


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


def check_counts(
    adata: AnnData,
    *,
    sample: str | None = None,
    file: str | os.PathLike | None = None,
    field: str = "X",
) -> None:
    """Refuse a matrix without a single count; raise :class:`~spaseg.InputError` if so.

    QC would otherwise remove every gene (or, for binned data, find no spots) and could only
    name its own threshold; the reader knows the cause.
    """
    if adata.n_vars == 0:
        return  # check_spatial names this
    n_counts = adata.X.nnz if sparse.issparse(adata.X) else np.count_nonzero(adata.X)
    if adata.n_obs == 0 or n_counts == 0:
        msg = (
            f"every count is zero ({adata.n_obs} spots x {adata.n_vars} genes): nothing to analyse"
        )
        raise InputError(msg, sample=sample, file=file, field=field)


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
        _make_genes_unique(adata, sample=sample, path=path)
    check_spatial(adata, sample=sample, file=path)
    check_counts(adata, sample=sample, file=path)
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    adata.uns["spaseg_input"] = {"path": str(path), "platform": platform}
    return adata


def _make_genes_unique(adata: AnnData, *, sample, path) -> None:
    """Append ``-1``, ``-2``, ... to repeated gene names (in place), and log which repeat."""
    repeated = adata.var_names[adata.var_names.duplicated()].unique()
    adata.var_names_make_unique()
    log.warning(
        "sample %r, file %r, field 'var_names': %d gene names occur more than once, e.g. %s; "
        "kept every gene, repeats renamed <name>-1, <name>-2, ...",
        sample,
        str(path),
        len(repeated),
        list(repeated[:3]),
    )
