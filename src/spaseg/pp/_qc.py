"""Per-section quality control: QC metrics and the reference's filters."""

from __future__ import annotations

import logging

import numpy as np
import scanpy as sc
from anndata import AnnData

from .._errors import InputError
from ..io._readers import count_problem

log = logging.getLogger("spaseg")


def _mito_mask(adata: AnnData) -> np.ndarray:
    names = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names
    return np.asarray(names.astype(str).str.match(r"(?i)^mt-"))


def _check_input(adata: AnnData, sample: str | None) -> None:
    """Raw counts in ``X``, at least one spot and one gene: what the readers guarantee, checked
    again for data that did not come through them."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = f"nothing to filter: {adata.n_obs} spots x {adata.n_vars} genes"
        raise InputError(msg, sample=sample, field="X")
    problem = count_problem(adata.X)
    if problem is not None:
        raise InputError(f"X must hold raw counts: {problem}", sample=sample, field="X")


def qc(
    adata: AnnData,
    *,
    min_spots_per_gene: int = 5,
    min_genes_per_spot: int = 0,
    min_counts_per_spot: int = 0,
    max_pct_mt: float | None = None,
    detected_quantile: float = 0.0,
    allow_empty: bool = False,
    sample: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Compute QC metrics and filter spots and genes.

    Follows SpaSEG's preprocessing: genes must be detected in ``min_spots_per_gene`` spots;
    spots can be filtered by detected genes, total counts, mitochondrial percentage, and (as the
    reference does for Stereo-seq and Slide-seq) by dropping the spots below the
    ``detected_quantile`` quantile of detected genes.

    Parameters
    ----------
    adata
        Raw counts in ``X``.
    min_spots_per_gene
        Keep genes detected in at least this many spots.
    min_genes_per_spot, min_counts_per_spot
        Keep spots with at least this many detected genes / total counts.
    max_pct_mt
        Drop spots with a larger percentage of mitochondrial counts (``None``: no filter).
        Mitochondrial genes are those whose symbol starts with ``MT-`` or ``mt-``.
    detected_quantile
        Drop spots below this quantile of detected genes (0 disables; reference: 0.05 for
        Stereo-seq).
    sample
        Sample id, used in error messages.
    copy
        Return a filtered copy instead of filtering ``adata`` in place.

    Returns
    -------
    ``None``, or with ``copy`` the filtered copy. Sets ``obs["n_genes_by_counts"]``,
    ``obs["total_counts"]``,
    ``obs["pct_counts_mt"]``, ``var["mt"]``, ``var["n_cells_by_counts"]`` and ``uns["qc"]``
    (thresholds and how many spots and genes each removed).

    Raises
    ------
    InputError
        If ``X`` is empty or does not hold raw counts, or (unless ``allow_empty``) the filters
        leave no spots or no genes.
    """
    _check_input(adata, sample)
    adata = adata.copy() if copy else adata
    adata.var["mt"] = _mito_mask(adata)
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    obs = adata.obs
    removed: dict[str, int] = {}

    keep = np.ones(adata.n_obs, dtype=bool)
    spot_filters = {
        "min_genes_per_spot": obs["n_genes_by_counts"].to_numpy() >= min_genes_per_spot,
        "min_counts_per_spot": obs["total_counts"].to_numpy() >= min_counts_per_spot,
    }
    if max_pct_mt is not None:
        spot_filters["max_pct_mt"] = obs["pct_counts_mt"].to_numpy() <= max_pct_mt
    if detected_quantile > 0:
        cut = np.quantile(obs["n_genes_by_counts"].to_numpy(), detected_quantile)
        spot_filters["detected_quantile"] = obs["n_genes_by_counts"].to_numpy() >= cut
    for name, ok in spot_filters.items():
        removed[name] = int((keep & ~ok).sum())
        keep &= ok
    if not keep.any() and not allow_empty:
        worst = max(removed, key=removed.get)
        raise InputError(
            f"QC removed all {adata.n_obs} spots (threshold {worst} removed {removed[worst]}); "
            "relax the qc settings in the config.",
            sample=sample,
            field=f"qc.{worst}",
        )
    adata._inplace_subset_obs(keep)  # as scanpy's filters do: no second copy of X

    genes_ok = np.asarray((adata.X > 0).sum(axis=0)).ravel() >= min_spots_per_gene
    removed["min_spots_per_gene"] = int((~genes_ok).sum())
    if not genes_ok.any() and not allow_empty:
        raise InputError(
            f"QC removed all {adata.n_vars} genes: none is detected in {min_spots_per_gene} spots.",
            sample=sample,
            field="qc.min_spots_per_gene",
        )
    adata._inplace_subset_var(genes_ok)

    adata.uns["qc"] = {
        "thresholds": {
            "min_spots_per_gene": min_spots_per_gene,
            "min_genes_per_spot": min_genes_per_spot,
            "min_counts_per_spot": min_counts_per_spot,
            "max_pct_mt": "none" if max_pct_mt is None else max_pct_mt,
            "detected_quantile": detected_quantile,
        },
        "removed": removed,
        "n_spots": adata.n_obs,
        "n_genes": adata.n_vars,
    }
    log.info("QC kept %d spots x %d genes (removed: %s)", adata.n_obs, adata.n_vars, removed)
    return adata if copy else None
