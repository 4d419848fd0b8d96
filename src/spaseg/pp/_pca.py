"""Normalisation and PCA, as in SpaSEG: total-count normalisation, log1p, PCA."""

from __future__ import annotations

import logging

import numpy as np
import scanpy as sc
from anndata import AnnData

from .._errors import InputError

log = logging.getLogger("spaseg")


def normalize_pca(
    adata: AnnData,
    *,
    n_comps: int = 15,
    target_sum: float | None = None,
    scale: bool = False,
    seed: int = 0,
    sample: str | None = None,
) -> AnnData:
    """Normalise counts, log-transform and compute principal components, in place.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (after :func:`spaseg.pp.qc`).
    n_comps
        Number of principal components. Clipped to ``min(n_spots, n_genes) - 1``.
    target_sum
        Counts per spot after normalisation; ``None`` uses the median total count.
    scale
        Scale genes to unit variance before PCA (not done by the reference).
    seed
        Random state of the PCA solver.
    sample
        Sample id, used in error messages.

    Returns
    -------
    ``adata`` with raw counts in ``layers["counts"]``, log-normalised ``X``,
    ``obsm["X_pca"]`` and ``uns["pca"]``.
    """
    if adata.n_obs < 3 or adata.n_vars < 2:
        raise InputError(
            f"too few spots or genes for PCA ({adata.n_obs} x {adata.n_vars}).",
            sample=sample,
            field="pca.n_comps",
        )
    limit = min(adata.n_obs, adata.n_vars) - 1
    if n_comps > limit:
        log.warning("n_comps=%d is more than the data allow; using %d", n_comps, limit)
        n_comps = limit
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    if scale:
        # Scaling densifies; do it on a copy so X stays sparse log-normalised data.
        scaled = sc.pp.scale(adata, max_value=10, copy=True)
        sc.pp.pca(scaled, n_comps=n_comps, random_state=seed)
        adata.obsm["X_pca"] = scaled.obsm["X_pca"]
        adata.uns["pca"] = scaled.uns["pca"]
        adata.varm["PCs"] = scaled.varm["PCs"]
    else:
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
    adata.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
    adata.uns["pca"]["params"] = dict(
        adata.uns["pca"].get("params", {}),
        n_comps=n_comps,
        target_sum="median" if target_sum is None else target_sum,
        scale=scale,
    )
    return adata
