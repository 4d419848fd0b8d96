"""Narrow gene programmes: independent components of the PCs that a handful of genes carry.

Haemoglobin, immunoglobulins or the genes of another tissue that leaked into a library (the
DLPFC files carry a breast-epithelium programme, ``benchmarks/RESULTS.md``) vary a lot between
spots but are carried by a few genes each. Independent component analysis of the leading
PCs separates such programmes into components of their own, whose gene loadings are
concentrated: their participation ratio (the effective number of genes, ``1 / sum(loading**4)``
of the unit loading vector) is small. So is a real domain's where a few strong genes mark it
(a simulated chip's domains had ~10): the step is an option, off by default.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scanpy as sc
from anndata import AnnData
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

log = logging.getLogger("spaseg")

#: Spots the wide PCA and the ICA are fitted on (a random subset of larger sections; all
#: spots are projected): enough for components that a domain of 1 % of the spots drives.
FIT_SPOTS = 5_000
#: FastICA starts; the most non-Gaussian solution is kept.
RESTARTS = 5
#: ICA rounds at most (each on what the narrow programmes found before leave).
MAX_ROUNDS = 3
#: Variance (relative to the first PC's) below which a PC of the rest is rounding noise.
NULL_VARIANCE = 1e-9
#: E log cosh(nu) for a standard normal nu.
_GAUSS_LOGCOSH = 0.3745672


def participation_ratio(loadings: np.ndarray) -> np.ndarray:
    """Effective number of genes of each column of ``loadings`` (genes x components):
    ``1 / sum(w**4)`` of the unit-length column ``w``; n for n equal loadings."""
    unit = loadings / np.linalg.norm(loadings, axis=0, keepdims=True)
    return 1.0 / (unit**4).sum(axis=0)


def gene_names(adata: AnnData) -> np.ndarray:
    """Gene symbols where ``var`` has them, else ``var_names``: what log lines name genes by."""
    names = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names
    return np.asarray(names, dtype=str)


def leading_genes(loading: np.ndarray, names: np.ndarray, n: int = 6) -> str:
    """The ``n`` genes with the largest absolute ``loading``, each with its sign."""
    top = np.argsort(-np.abs(loading))[:n]
    return " ".join(f"{names[g]}{'+' if loading[g] > 0 else '-'}" for g in top)


def remove_narrow_programs(
    adata: AnnData,
    data: AnnData,
    panel: slice | np.ndarray,
    n_comps: int,
    *,
    min_genes: float,
    seed: int = 0,
    prefix: str = "",
) -> None:
    """Take narrow programmes out of ``adata``'s PCs (from :func:`spaseg.pp.normalize_pca`).

    ``data`` holds what the PCA was computed on (the panel's genes, log-normalised, scaled if
    asked), row for row ``adata``'s spots; ``panel`` selects those genes in ``adata``. Twice
    ``n_comps`` PCs of ``data`` (of a random ``FIT_SPOTS`` of its spots, for larger sections)
    are unmixed into as many independent components (FastICA); components carried by fewer
    than ``min_genes`` genes (participation ratio of their gene loadings), at most one in a
    hundred of the PCA's genes, are removed and the ``n_comps`` PCs of the rest replace
    ``obsm["X_pca"]``, ``varm["PCs"]`` and the variances in ``uns["pca"]``. Without a narrow
    component the plain PCA stays as it is. The removed components go to
    ``uns["pca"]["narrow_programs"]`` (participation ratio, share of the PCs' variance, leading
    genes) and to the log.
    """
    scores, loadings, total = _wide_pca(data, 2 * n_comps, seed)
    names = gene_names(adata)[panel]
    n_genes = int((np.abs(loadings).sum(axis=1) > 0).sum())
    threshold = min(float(min_genes), n_genes / 100)
    rest, found = scores - scores.mean(axis=0), []
    wide_total = float(rest.var(axis=0).sum())
    # Once the strongest narrow programmes are out, a fresh ICA of the rest can unmix one that
    # shared a component with them: repeat until none is left.
    for attempt in range(MAX_ROUNDS):
        mixing, sources = _unmix(rest, seed + attempt, n_components=scores.shape[1] - len(found))
        components = loadings @ mixing  # genes x independent components
        ratio = participation_ratio(components)
        narrow = ratio < threshold
        for i in np.flatnonzero(narrow):
            share = (mixing[:, i] ** 2).sum() / wide_total
            genes = leading_genes(components[:, i], names)
            found.append((ratio[i], share, genes))
            log.info(
                "%sremoved a programme carried by ~%.0f genes (%.1f %% of the PCs' variance): %s",
                prefix,
                ratio[i],
                100 * share,
                genes,
            )
        if not narrow.any():
            break
        rest = sources[:, ~narrow] @ mixing[:, ~narrow].T
        rest -= rest.mean(axis=0)
    adata.uns["pca"]["narrow_programs"] = {
        "min_genes": threshold,
        "participation_ratio": np.round([f[0] for f in found], 1),
        "variance_share": np.round([f[1] for f in found], 4),
        "leading_genes": np.asarray([f[2] for f in found], dtype=str),
    }
    if found:
        log.info(
            "%s%d programmes carried by fewer than %.0f genes removed from %d PCs",
            prefix,
            len(found),
            threshold,
            scores.shape[1],
        )
        _repca(adata, rest, loadings, panel, total, n_comps, prefix)


def _wide_pca(data: AnnData, n_comps: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``n_comps`` PCs of ``data``: every spot's scores, the genes' loadings and the total
    variance. Fitted on a random ``FIT_SPOTS`` of larger sections and projected from there."""
    rows = _fit_rows(data.n_obs, seed)
    fit = sc.pp.pca(data[rows], n_comps=n_comps, random_state=seed, mask_var=None, copy=True)
    loadings = np.asarray(fit.varm["PCs"], dtype=np.float64)
    total = float(fit.uns["pca"]["variance"][0] / fit.uns["pca"]["variance_ratio"][0])
    if fit.n_obs == data.n_obs:
        return np.asarray(fit.obsm["X_pca"], dtype=np.float64), loadings, total
    centre = np.asarray(fit.X.mean(axis=0), dtype=np.float64).ravel()
    scores = np.asarray(data.X @ loadings, dtype=np.float64) - centre @ loadings
    return scores, loadings, total


def _fit_rows(n: int, seed: int) -> slice | np.ndarray:
    """The spots a fit uses: all, or a random ``FIT_SPOTS`` of them in their order."""
    if n <= FIT_SPOTS:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(n, FIT_SPOTS, replace=False))


def _unmix(pcs: np.ndarray, seed: int, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """FastICA of the PCs: the mixing matrix (PCs x components) and each spot's sources.

    FastICA has local optima (on DLPFC 151673 one start in four misses the contaminating
    programme), so it starts ``RESTARTS`` times and keeps the most non-Gaussian solution: the
    largest sum over components of FastICA's own contrast, ``(E log cosh s - E log cosh
    nu)**2`` with ``nu`` standard normal.
    """
    fit = pcs[_fit_rows(len(pcs), seed)]
    best, best_contrast, unconverged = None, -np.inf, 0
    for start in range(RESTARTS):
        ica = FastICA(
            n_components,
            whiten="unit-variance",
            max_iter=1000,
            random_state=seed * RESTARTS + start,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            sources = ica.fit_transform(fit)
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        contrast = _contrast(sources)
        if contrast > best_contrast:
            best, best_contrast = ica, contrast
    if unconverged:  # common with near-Gaussian components; the contrast still ranks starts
        log.info(
            "FastICA: %d of %d starts stopped at 1000 iterations; the most non-Gaussian "
            "start is kept",
            unconverged,
            RESTARTS,
        )
    return best.mixing_, best.transform(pcs)


def _contrast(sources: np.ndarray) -> float:
    """FastICA's negentropy approximation, summed over the components."""
    unit = sources / sources.std(axis=0)
    return float(((np.log(np.cosh(unit)).mean(axis=0) - _GAUSS_LOGCOSH) ** 2).sum())


def _repca(
    adata: AnnData,
    centred: np.ndarray,
    loadings: np.ndarray,
    panel: slice | np.ndarray,
    total: float,
    n_comps: int,
    prefix: str = "",
) -> None:
    """The ``n_comps`` PCs of ``centred`` (spots x wide PCs), as the panel genes' loadings too;
    signs as scanpy's (the largest loading of each PC positive).

    Where the programmes took so many components that fewer than ``n_comps`` are left (a
    simulated chip's independent noise genes are single-gene components), the PCs beyond the
    rest's rank are set to exact zeros rather than left as rounding noise.
    """
    values, vectors = np.linalg.eigh(centred.T @ centred / (len(centred) - 1))
    order = np.argsort(values)[::-1][:n_comps]
    values, vectors = values[order], vectors[:, order]
    null = values <= NULL_VARIANCE * values[0]
    values[null], vectors[:, null] = 0.0, 0.0
    if null.any():
        log.info(
            "%s%d of %d PCs are left after the programmes; the others are zero",
            prefix,
            (~null).sum(),
            n_comps,
        )
    genes = loadings @ vectors
    flip = np.sign(genes[np.argmax(np.abs(genes), axis=0), np.arange(n_comps)])
    vectors, genes = vectors * flip, genes * flip
    adata.obsm["X_pca"] = (centred @ vectors).astype(np.float32)
    full = np.zeros((adata.n_vars, n_comps), dtype=adata.varm["PCs"].dtype)
    full[panel] = genes
    adata.varm["PCs"] = full
    adata.uns["pca"]["variance"] = values
    adata.uns["pca"]["variance_ratio"] = values / total
