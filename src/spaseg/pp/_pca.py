"""Normalisation and PCA, as in SpaSEG: total-count normalisation, log1p, PCA."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike

import numpy as np
import scanpy as sc
from anndata import AnnData
from scipy import sparse
from sklearn.utils.sparsefuncs import mean_variance_axis

from .._errors import InputError
from ..io._panel import read_gene_panel
from ._programs import gene_names, leading_genes, remove_narrow_programs

log = logging.getLogger("spaseg")


def normalize_pca(
    adata: AnnData,
    *,
    n_comps: int = 15,
    target_sum: float | None = None,
    scale: bool = False,
    genes: Sequence[str] | str | PathLike | None = None,
    exclude_genes: Sequence[str] | str | PathLike | None = None,
    min_program_genes: float | None = None,
    seed: int = 0,
    sample: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Normalise counts, log-transform and compute principal components.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (after :func:`spaseg.pp.qc`).
    n_comps
        Number of principal components. Clipped to ``min(n_spots, n_genes) - 1``.
    target_sum
        Counts per spot after normalisation; ``None`` uses the median total count.
    scale
        Scale genes to unit variance (clipped at 10 SD) before PCA, not done by the reference;
        the matrix stays sparse (:func:`scaled_genes`), so whole chips fit.
    genes
        A gene panel, or the path of a panel file (:func:`spaseg.io.read_gene_panel`): the PCs
        are computed on these genes only (``var_names`` or ``var["gene_symbols"]``, symbols in
        any case; genes the data lack are left out, with a warning). All genes are still
        normalised. ``None``: every gene. Genes variable in other sections of a tissue can make
        better domains than a section's own variable genes (DLPFC, ``benchmarks/RESULTS.md``).
    exclude_genes
        Genes left out of the PCA (a list or a file, as ``genes``; genes the data lack are
        ignored), e.g. the genes of another tissue that contaminates the sections: on DLPFC
        a breast-epithelium programme takes two of the first three PCs and splits the deep
        layers (``benchmarks/RESULTS.md``).
    min_program_genes
        Remove gene programmes carried by fewer genes than this (at most 1 % of the PCA's
        genes) before the PCs are kept: twice ``n_comps`` PCs are unmixed by independent
        component analysis and components whose gene loadings have a participation ratio
        below it (haemoglobin, immunoglobulins, a contaminating tissue) are left out
        (``benchmarks/RESULTS.md``, "Narrow programmes"; sections of more than 5 000 spots
        are searched on a random 5 000, whose PCs then serve all spots if a programme was
        found). ``None`` or 0 (the default): the plain PCA. Off by default because a real
        domain marked by a few strongly expressed genes is as narrow as a contaminant: on a
        simulated Stereo-seq chip whose domains' components have ~10 effective genes it
        removed them (ARI 0.07 against 0.998); on the DLPFC files 15 takes out their breast
        programme (ARI +0.04 on both labelled sections).
    seed
        Random state of the PCA solver and of the ICA.
    sample
        Sample id, used in error messages.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or with ``copy`` the modified copy. Sets raw counts in ``layers["counts"]``,
    log-normalised ``X``, ``obsm["X_pca"]`` and ``uns["pca"]`` (and, with ``genes`` or
    ``exclude_genes``, ``var["pca_panel"]``: the genes the PCs were computed on).

    Raises
    ------
    InputError
        If there are fewer than 3 spots or 2 genes (of the panel, with ``genes``), half the
        spots or more have no counts (with ``target_sum=None``), every spot has the same
        normalised expression, or ``exclude_genes`` leaves fewer than 2 genes.
    """
    if adata.n_obs < 3 or adata.n_vars < 2:
        raise InputError(
            f"too few spots or genes for PCA ({adata.n_obs} x {adata.n_vars}).",
            sample=sample,
            field="pca.n_comps",
        )
    adata = adata.copy() if copy else adata
    mask = None
    if genes is not None:
        if isinstance(genes, str | PathLike):
            genes = read_gene_panel(genes)
        mask = panel_mask(adata, genes, sample=sample)
    n_excluded = 0
    if exclude_genes is not None:
        mask, n_excluded = _exclude(adata, mask, exclude_genes, sample)
    if mask is not None:
        adata.var["pca_panel"] = mask
    limit = min(adata.n_obs, adata.n_vars if mask is None else int(mask.sum())) - 1
    if n_comps > limit:
        log.warning("n_comps=%d is more than the data allow; using %d", n_comps, limit)
        n_comps = limit
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=_target_sum(adata.X, target_sum, sample))
    sc.pp.log1p(adata)
    _check_variation(adata.X, sample)
    panel = slice(None) if mask is None else mask
    if scale:
        data = scaled_genes(adata[:, panel])
        sc.pp.pca(data, n_comps=n_comps, random_state=seed)
        adata.obsm["X_pca"] = data.obsm["X_pca"]
        adata.uns["pca"] = data.uns["pca"]
        pcs = np.zeros((adata.n_vars, n_comps), dtype=data.varm["PCs"].dtype)
        pcs[panel] = data.varm["PCs"]
        adata.varm["PCs"] = pcs
    else:  # the panel by name: scanpy records it in uns
        data = adata if mask is None else adata[:, panel]
        mask_var = None if mask is None else "pca_panel"
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed, mask_var=mask_var)
    # Narrow programmes are sought among twice the PCs kept: room to unmix them.
    if min_program_genes and 2 * n_comps <= limit:
        remove_narrow_programs(
            adata,
            data,
            panel,
            n_comps,
            min_genes=min_program_genes,
            seed=seed,
            prefix=_prefix(sample),
        )
    adata.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
    adata.uns["pca"]["params"] = dict(
        adata.uns["pca"].get("params", {}),
        n_comps=n_comps,
        target_sum="median" if target_sum is None else target_sum,
        scale=scale,
        genes="all" if mask is None else int(mask.sum()),
        exclude_genes=n_excluded,
        min_program_genes=min_program_genes or 0,
    )
    _log_leading_genes(adata, sample)
    return adata if copy else None


def scaled_genes(adata: AnnData, max_value: float = 10.0) -> AnnData:
    """A copy of ``adata`` whose PCs are those of ``sc.pp.scale(adata, max_value=max_value)``
    (each gene centred, scaled to unit variance, clipped at ``max_value``), kept sparse.

    Centring a sparse matrix makes it dense: a whole chip's bins x genes in float64, several
    times over in the PCA. The centring is left to the PCA instead (scikit-learn centres
    sparse input implicitly): each gene is clipped to ``mean +- max_value * SD``, shifted by
    a constant so that a zero stays zero, and divided by its SD. A constant shift of a gene
    does not change its centred values, so the PCA sees the same matrix as after
    ``sc.pp.scale``. Dense input has nothing to save: ``sc.pp.scale`` itself.
    """
    if not sparse.issparse(adata.X):
        return sc.pp.scale(adata, max_value=max_value, copy=True)
    # A copy, always: the values are rewritten in place below, and adata may be a view.
    x = sparse.csr_matrix(adata.X, dtype=np.float64, copy=True)
    mean, var = mean_variance_axis(x, axis=0)
    n = x.shape[0]
    sd = np.sqrt(var * n / max(n - 1, 1))  # scanpy's ddof 1
    sd[sd == 0] = 1.0
    low, high = mean - max_value * sd, mean + max_value * sd
    zero = np.maximum(low, 0.0)  # what a zero becomes when clipped (log counts are >= 0)
    genes = x.indices
    x.data = (np.clip(x.data, low[genes], high[genes]) - zero[genes]) / sd[genes]
    x.eliminate_zeros()
    return AnnData(x.astype(np.float32), obs=adata.obs[[]], var=adata.var[[]])


def _prefix(sample: str | None) -> str:
    """``"<sample>: "`` for log messages, or nothing."""
    return f"{sample}: " if sample else ""


def _log_leading_genes(adata: AnnData, sample: str | None) -> None:
    """Log the genes with the largest loadings of each PC: where a PC follows genes of a
    tissue that is not in the section (contamination), this is where it shows first."""
    if not log.isEnabledFor(logging.INFO):
        return
    names = gene_names(adata)
    for k, loading in enumerate(adata.varm["PCs"].T):
        log.info("%sPC%d leading genes: %s", _prefix(sample), k + 1, leading_genes(loading, names))


def _named(adata: AnnData, genes: Sequence[str]) -> np.ndarray:
    """Which of ``adata``'s genes ``genes`` names: by ``var_names``, or by
    ``var["gene_symbols"]`` in any case."""
    wanted = {str(g) for g in genes}
    mask = adata.var_names.isin(wanted)
    if "gene_symbols" in adata.var:
        upper = {g.upper() for g in wanted}
        mask |= adata.var["gene_symbols"].astype(str).str.upper().isin(upper).to_numpy()
    return np.asarray(mask)


def _exclude(
    adata: AnnData,
    mask: np.ndarray | None,
    exclude_genes: Sequence[str] | str | PathLike,
    sample: str | None,
) -> tuple[np.ndarray, int]:
    """The PCA's genes (``mask``, ``None``: all) without those ``exclude_genes`` names."""
    if isinstance(exclude_genes, str | PathLike):
        exclude_genes = read_gene_panel(exclude_genes, field="pca.exclude_genes")
    named = _named(adata, exclude_genes)
    kept = (np.ones(adata.n_vars, dtype=bool) if mask is None else mask) & ~named
    n_excluded = int((named if mask is None else named & mask).sum())
    log.info("%sPCA without %d genes of pca.exclude_genes", _prefix(sample), n_excluded)
    if kept.sum() < 2:
        raise InputError(
            f"pca.exclude_genes leaves {int(kept.sum())} genes for the PCA.",
            sample=sample,
            field="pca.exclude_genes",
        )
    return kept, n_excluded


def panel_mask(adata: AnnData, genes: Sequence[str], *, sample: str | None = None) -> np.ndarray:
    """Which of ``adata``'s genes are in the panel ``genes``: by ``var_names``, or by
    ``var["gene_symbols"]`` in any case. Raises :class:`InputError` when fewer than 2 are."""
    wanted = {str(g) for g in genes}
    mask = _named(adata, wanted)
    found = int(mask.sum())
    if found < 2:
        raise InputError(
            f"{found} of the {len(wanted)} panel genes are in the data (e.g. "
            f"{', '.join(sorted(wanted)[:3])}; the data's genes are e.g. "
            f"{', '.join(map(str, adata.var_names[:3]))}): give var_names or gene symbols.",
            sample=sample,
            field="pca.genes",
        )
    if found < len(wanted):
        log.warning(
            "%sPCA on %d of the %d panel genes (the others are not in the data)",
            _prefix(sample),
            found,
            len(wanted),
        )
    return mask


def _target_sum(X, target_sum: float | None, sample: str | None) -> float:
    """``target_sum``, or the median total count per spot (dense and sparse alike: scanpy
    leaves out empty spots for dense input only)."""
    if target_sum is not None:
        return target_sum
    median = float(np.median(np.asarray(X.sum(axis=1)).ravel()))
    if median <= 0:
        raise InputError(
            "half the spots or more have no counts (median total count 0): remove empty "
            "spots with qc.min_counts_per_spot >= 1, or set pca.target_sum.",
            sample=sample,
            field="qc.min_counts_per_spot",
        )
    return median


def _check_variation(X, sample: str | None) -> None:
    """PCA needs spots that differ; identical spots give no components (ARPACK fails).

    Compared on the log scale with a tolerance: spots whose counts are proportional differ
    only by float rounding once normalised.
    """
    spread = X.max(axis=0) - X.min(axis=0)
    spread = spread.toarray() if sparse.issparse(spread) else np.asarray(spread)
    if spread.size == 0 or spread.max() <= 1e-5:
        raise InputError(
            "every spot has the same normalised expression: nothing for PCA to separate.",
            sample=sample,
            field="X",
        )
