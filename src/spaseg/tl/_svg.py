"""Spatially variable genes: per-domain Wilcoxon tests with the reference's filters, plus Moran's I.

The rank-sum test of every domain against the rest needs each gene's ranks over all spots. Most
entries of a spatial expression matrix are zeros, which all tie: they share one average rank,
so only the non-zero entries of each gene (one CSC column) are sorted. One ranking per gene
serves all domains, whose rank sums are then bincounts over the spots' domain labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse, stats

from .._errors import InputError
from ._moran import _matrix, _sections, bh_adjust, morans_table, resolve_graph

log = logging.getLogger("spaseg")

# Non-zero entries ranked at once (about 50 bytes each of working memory).
_BLOCK_NNZ = 10_000_000

TABLE_COLUMNS = [
    "gene", "symbol", "domain", "log2fc", "pval", "padj", "in_frac", "out_frac",
    "morans_i", "morans_padj", "passes", "fails", "score", "mean_in", "mean_out",
    "max_out_domain", "max_out_frac", "log2fc_max_out", "morans_pval",
]  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """Thresholds that make a gene a domain-specific SVG (all must hold; defaults: reference).

    Attributes
    ----------
    max_padj
        Benjamini-Hochberg adjusted Wilcoxon p-value below this.
    min_log2fc
        log2 fold change, domain vs all other spots, above this.
    min_in_frac
        Fraction of the domain's spots expressing the gene above this.
    min_log2fc_max_out
        log2 fold change vs the other domain with the highest expressing fraction, above this.
    min_in_max_frac_ratio
        ``in_frac / max_out_frac`` at least this.
    min_in_out_frac_ratio
        ``in_frac / out_frac`` at least this.
    """

    max_padj: float = 0.05
    min_log2fc: float = 1.5
    min_in_frac: float = 0.75
    min_log2fc_max_out: float = 1.5
    min_in_max_frac_ratio: float = 0.95
    min_in_out_frac_ratio: float = 1.0

    def checks(self, t: pd.DataFrame) -> pd.DataFrame:
        """One boolean column per filter, for the rows of an SVG table."""
        with np.errstate(divide="ignore", invalid="ignore"):
            in_max = t["in_frac"] / t["max_out_frac"]
            in_out = t["in_frac"] / t["out_frac"]
        # Ratios at least (not above) their threshold: a gene expressed in every spot of the
        # domain and of the rest has ratio 1 and stays in, as the reference's second-stage
        # rule let strong ubiquitous markers back in on their fold change.
        return pd.DataFrame(
            {
                "padj": t["padj"] < self.max_padj,
                "log2fc": t["log2fc"] > self.min_log2fc,
                "in_frac": t["in_frac"] > self.min_in_frac,
                "log2fc_max_out": t["log2fc_max_out"] > self.min_log2fc_max_out,
                "in_max_frac_ratio": in_max >= self.min_in_max_frac_ratio,
                "in_out_frac_ratio": in_out >= self.min_in_out_frac_ratio,
            }
        )

    def passes(self, t: pd.DataFrame) -> np.ndarray:
        return self.checks(t).all(axis=1).to_numpy()

    def fails(self, t: pd.DataFrame) -> np.ndarray:
        """Comma-separated names of the filters each row fails (``""`` when it passes)."""
        failed = np.full(len(t), "", dtype=object)
        for name, ok in self.checks(t).items():
            failed = failed + np.where(ok.to_numpy(), "", name + ",")
        return np.array([f[:-1] for f in failed], dtype=object)


def svg(
    adata: AnnData,
    *,
    groupby: str = "domain",
    layer: str | None = None,
    max_padj: float = 0.05,
    min_log2fc: float = 1.5,
    min_in_frac: float = 0.75,
    min_log2fc_max_out: float = 1.5,
    min_in_max_frac_ratio: float = 0.95,
    min_in_out_frac_ratio: float = 1.0,
    pseudocount: float = 0.01,
    min_spots: int = 10,
    spatial_graph: str | sparse.spmatrix | None = None,
    n_neighbors: int = 6,
    batch_key: str | None = None,
    symbol_key: str = "gene_symbols",
    key_added: str = "svg",
    sample: str | None = None,
    copy: bool = False,
) -> pd.DataFrame | None:
    """Spatially variable genes: domain-specific (Wilcoxon, filtered) and global (Moran's I).

    For each domain, every gene is tested in the domain's spots against all other spots with
    the Wilcoxon rank-sum test (normal approximation with tie correction, two-sided, no
    continuity correction), and the p-values of each domain are corrected with
    Benjamini-Hochberg. A gene is a *domain-specific* SVG of a domain (``passes``) when it
    clears all the reference's filters (see the threshold parameters). Independently, every
    gene gets Moran's I on the spatial neighbour graph with its own FDR
    (:func:`spaseg.tl.morans_i`), its *global* spatial score; a smooth gradient is globally
    spatial without belonging to a domain.

    *Group mode* (``batch_key``, e.g. ``"sample"`` on a group's joint data with shared domain
    labels): each domain is tested against the rest in every section, and the sections'
    rank-sum statistics are combined (van Elteren's stratified test, :func:`rank_sum_test`),
    so a gene must mark the domain across the group, and a section with more spots or deeper
    sequencing cannot make a gene that is merely higher in that section look like a marker of
    the domains it holds more of. Fractions, means and fold changes pool the spots of all
    sections (joint normalisation has made them comparable). Moran's I uses a neighbour graph
    built within each section (:func:`spaseg.tl.spatial_knn_graph` with ``batch_key``): no spot
    is ever linked to a spot of another section, even where their coordinates overlap (as
    serial sections' do), and each gene is centred per section, so a gene that only differs
    between sections is not spatial.

    Fold changes are on the normalised (not log) scale::

        log2fc = log2((mean_in + pseudocount) / (mean_out + pseudocount))

    where ``mean_in`` and ``mean_out`` are the arithmetic means of ``expm1(x)`` (normalised
    counts, for log1p-normalised ``x``) in the domain and in all other spots. The reference
    passed already exponentiated values to a log-scale formula, which inflates fold changes
    (MBP: ~98); here a white-matter marker comes out at a few units.

    Parameters
    ----------
    adata
        Spots x genes with log1p-normalised expression in ``X`` (:func:`spaseg.pp.normalize_pca`)
        and domain labels in ``obs[groupby]``. Spots without a label take no part in the
        domain tests (they do in Moran's I).
    groupby
        ``obs`` column of domain labels.
    layer
        Layer with log1p-normalised expression to use instead of ``X``.
    max_padj, min_log2fc, min_in_frac, min_log2fc_max_out, min_in_max_frac_ratio, min_in_out_frac_ratio
        Filters of a domain-specific SVG: adjusted p-value below ``max_padj``;
        fold change vs the rest above ``min_log2fc``; expressing fraction (value > 0) in
        the domain above ``min_in_frac``; against the *max-out domain* (the other domain with
        the highest expressing fraction), fold change above ``min_log2fc_max_out`` and
        ``in_frac / max_out_frac`` at least ``min_in_max_frac_ratio``; and
        ``in_frac / out_frac`` at least ``min_in_out_frac_ratio``. The reference requires the
        ratios to be strictly above; at least keeps genes expressed in every spot (ratio 1).
    pseudocount
        Added to both means of the fold changes, in normalised counts. It keeps genes
        absent outside a domain finite (``log2(mean_in / 0.01)``) instead of ~30.
    min_spots
        Domains with fewer spots are described (fractions, means, fold changes) but not tested:
        their p-values are NaN and no gene passes. With a handful of spots, mostly tied at
        zero, the normal approximation of the rank-sum test is far too optimistic.
    spatial_graph, n_neighbors
        Graph for Moran's I: ``None`` builds one that follows the grid
        (:func:`spaseg.tl.spatial_knn_graph`; ``n_neighbors`` only for spots off a grid; per
        section with ``batch_key``); a key of ``obsp`` or a
        spots x spots matrix is used as given (with ``batch_key`` it must not link sections).
        Always row-standardised.
    batch_key
        ``obs`` column naming sections, for a group's joint data (e.g. ``"sample"``): the
        domain tests are stratified by section, the spatial graph only links spots of the
        same section and Moran's I centres genes per section (group mode, above).
    symbol_key
        ``var`` column of gene symbols, copied to ``symbol`` where present.
    key_added
        The table goes to ``uns[key_added]``, the parameters to ``uns[key_added + "_params"]``,
        Moran's I to ``var["morans_i"]``, ``var["morans_pval"]``, ``var["morans_padj"]``.
    sample
        Sample id, for error messages.
    copy
        Leave ``adata`` unchanged and return the table (as squidpy's tools that compute a
        table do); ``False``: write it (see ``key_added``) and return ``None``.

    Returns
    -------
    ``None``, or with ``copy`` the table. One row per gene and domain, sorted by domain and then by decreasing Wilcoxon z-score:
    ``gene``, ``symbol``, ``domain``, ``log2fc``, ``pval``, ``padj``, ``in_frac``,
    ``out_frac``, ``morans_i``, ``morans_padj``, ``passes`` (domain-specific SVG), then
    ``fails`` (comma-separated filters the gene fails, named as the columns of
    :meth:`Filters.checks`; ``""`` when it passes), ``score`` (Wilcoxon z, positive when
    higher in the domain), ``mean_in``, ``mean_out``, ``max_out_domain``, ``max_out_frac``,
    ``log2fc_max_out`` and ``morans_pval``.
    Genes that cannot be tested (constant across the spots compared) get NaN statistics,
    take no part in the FDR correction and never pass.

    Notes
    -----
    The reference follows its filters with a second stage (ratios above 1.2, or fold
    changes above 3 with a low coefficient of variation, or above 8). It was tuned on its
    inflated fold changes and is left out.
    """
    filters = Filters(
        max_padj, min_log2fc, min_in_frac, min_log2fc_max_out,
        min_in_max_frac_ratio, min_in_out_frac_ratio,
    )  # fmt: skip
    labels = _domain_labels(adata, groupby, sample)
    values = _checked_values(adata, layer, sample)
    labelled = labels.codes >= 0

    csc = _csc(values[labelled] if not labelled.all() else values)
    codes, n_domains = labels.codes[labelled], len(labels.categories)
    if batch_key is None:
        parts = [domain_statistics(csc, codes, n_domains)]
    else:  # each section ranks its own spots (rank_sum_test)
        strata = _sections(adata[labelled] if not labelled.all() else adata, batch_key)
        parts = [domain_statistics(csc[rows], codes[rows], n_domains) for rows in strata]
    z, pval = rank_sum_test(parts)
    table = _domain_table(
        pool(parts), z, pval, labels.categories, adata.var_names, pseudocount, min_spots
    )

    graph = resolve_graph(adata, spatial_graph, n_neighbors, batch_key)
    full = csc if labelled.all() else _csc(values)
    moran = morans_table(full, graph, _sections(adata, batch_key), adata.var_names)
    table = table.join(moran, on="gene")
    table["passes"] = filters.passes(table)
    table["fails"] = filters.fails(table)
    table.insert(1, "symbol", _symbols(adata, symbol_key).reindex(table["gene"]).to_numpy())
    table = table[TABLE_COLUMNS]

    if not copy:
        adata.uns[key_added] = table
        adata.uns[f"{key_added}_params"] = {
            "groupby": groupby, "layer": layer, "pseudocount": pseudocount, "min_spots": min_spots,
            "n_neighbors": n_neighbors, "batch_key": batch_key,
            "spatial_graph": spatial_graph if isinstance(spatial_graph, str) else None,
            **vars(filters),
        }  # fmt: skip
        for column in moran:
            adata.var[column] = moran[column].to_numpy()
    return table if copy else None


def _domain_labels(adata: AnnData, groupby: str, sample: str | None) -> pd.Categorical:
    if groupby not in adata.obs:
        raise InputError(
            f"obs has no domain labels {groupby!r}; run spaseg.tl.spaseg first (it writes "
            "obs['domain']) or name the column with groupby=.",
            sample=sample,
            field=groupby,
        )
    labels = pd.Categorical(adata.obs[groupby]).remove_unused_categories()
    if len(labels.categories) < 2:
        raise InputError(
            f"needs at least two domains to compare, found {len(labels.categories)}.",
            sample=sample,
            field=groupby,
        )
    return labels


def _checked_values(adata: AnnData, layer: str | None, sample: str | None):
    values = _matrix(adata, layer)
    data = values.data if sparse.issparse(values) else np.asarray(values)
    where = "X" if layer is None else f"layers['{layer}']"
    if not np.isfinite(data).all():
        raise InputError(f"{where} has NaN or infinite values.", sample=sample, field=where)
    if data.size and data.min() < 0:
        raise InputError(
            f"{where} has negative values; SVGs need log1p-normalised (not scaled) expression.",
            sample=sample,
            field=where,
        )
    head = np.asarray(data).ravel()[:100_000]
    if head.size and head.max() > 0 and np.all(head == np.round(head)):
        log.warning("%s holds whole numbers only: raw counts? SVGs expect log1p-normalised.", where)
    return values


def _csc(values) -> sparse.csc_matrix:
    """A CSC copy without stored zeros (they would be ranked as non-zeros)."""
    csc = sparse.csc_matrix(values, copy=True)
    csc.eliminate_zeros()
    return csc


def _symbols(adata: AnnData, symbol_key: str) -> pd.Series:
    """Gene symbols as strings, ``""`` where unknown (h5ad cannot store mixed columns)."""
    if symbol_key in adata.var:
        symbols = adata.var[symbol_key].astype(object)
        return symbols.where(symbols.notna(), "").astype(str)
    return pd.Series("", index=adata.var_names)


@dataclass(frozen=True)
class DomainStatistics:
    """Per gene and domain sufficient statistics of the rank-sum tests and fold changes.

    Attributes
    ----------
    n_spots
        ``(n_domains,)`` spots per domain.
    n_expressing
        ``(n_genes, n_domains)`` spots with a non-zero value.
    rank_sum
        ``(n_genes, n_domains)`` sum of the ranks (over all compared spots, ties averaged).
    tie_sum
        ``(n_genes,)`` sum of ``t**3 - t`` over groups of ``t`` tied values.
    expm1_sum
        ``(n_genes, n_domains)`` sum of ``expm1(x)`` (normalised counts).
    """

    n_spots: np.ndarray
    n_expressing: np.ndarray
    rank_sum: np.ndarray
    tie_sum: np.ndarray
    expm1_sum: np.ndarray

    def wilcoxon(self) -> tuple[np.ndarray, np.ndarray]:
        """z-scores and two-sided p-values of each domain vs the rest, ``(n_genes, n_domains)``."""
        return rank_sum_test([self])


def pool(parts: list[DomainStatistics]) -> DomainStatistics:
    """The statistics of all spots of several sections together (counts and sums add up;
    the rank statistics, which are per section, are not kept)."""
    return DomainStatistics(
        n_spots=sum(d.n_spots for d in parts),
        n_expressing=sum(d.n_expressing for d in parts),
        rank_sum=np.full_like(parts[0].rank_sum, np.nan),
        tie_sum=np.full_like(parts[0].tie_sum, np.nan),
        expm1_sum=sum(d.expm1_sum for d in parts),
    )


def rank_sum_test(strata: list[DomainStatistics]) -> tuple[np.ndarray, np.ndarray]:
    """Wilcoxon rank-sum test of each domain vs the rest, stratified by section (van Elteren).

    Each section ranks its own spots; its rank sum's deviation from expectation is weighted
    by ``1 / (n_s + 1)`` and the weighted deviations add up over sections, as do their
    variances (ties corrected per section). A gene higher in one section than another (depth,
    batch) therefore cannot look like a marker of a domain that section holds more of. With
    one section this is the plain rank-sum test (normal approximation, two-sided, no
    continuity correction). Returns z-scores (positive: higher in the domain) and p-values,
    ``(n_genes, n_domains)``; NaN where no section has any variation to test.
    """
    deviation = variance = untied = 0.0
    for d in strata:
        n = float(d.n_spots.sum())
        if n < 2:
            continue
        n1 = d.n_spots[None, :].astype(np.float64)
        n2 = n - n1
        weight = 1.0 / (n + 1.0)
        deviation = deviation + weight * (d.rank_sum - n1 * (n + 1) / 2)
        tie_factor = (n + 1) - d.tie_sum[:, None] / (n * (n - 1.0))
        variance = variance + weight**2 * n1 * n2 / 12.0 * tie_factor
        untied = untied + weight**2 * n1 * n2 / 12.0 * (n + 1)
    # All values tied (e.g. a gene without counts): the variance is rounding error.
    testable = np.asarray(variance > 1e-9 * np.asarray(untied)) & np.asarray(untied > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(testable, deviation / np.sqrt(variance), np.nan)
    return z, 2.0 * stats.norm.sf(np.abs(z))


def domain_statistics(
    csc: sparse.csc_matrix, codes: np.ndarray, n_domains: int
) -> DomainStatistics:
    """Rank every gene once and accumulate the statistics of all domains.

    Parameters
    ----------
    csc
        Spots x genes, non-negative, without stored zeros.
    codes
        Domain of each spot, ``0 .. n_domains - 1``.
    n_domains
        Number of domains.
    """
    n, n_genes = csc.shape
    n_expressing = np.zeros((n_genes, n_domains))
    rank_sum = np.zeros((n_genes, n_domains))
    expm1_sum = np.zeros((n_genes, n_domains))
    tie_sum = np.zeros(n_genes)
    for lo, hi in _column_blocks(csc.indptr, _BLOCK_NNZ):
        seg = slice(csc.indptr[lo], csc.indptr[hi])
        col = np.repeat(np.arange(hi - lo), np.diff(csc.indptr[lo : hi + 1]))
        cell = col * n_domains + codes[csc.indices[seg]]  # (gene, domain) of each entry
        data = csc.data[seg]
        size = (hi - lo) * n_domains
        n_expressing[lo:hi] = np.bincount(cell, minlength=size).reshape(-1, n_domains)
        expm1_sum[lo:hi] = np.bincount(
            cell, weights=np.expm1(data, dtype=np.float64), minlength=size
        ).reshape(-1, n_domains)
        ranks, ties = _nonzero_ranks(data, col, csc.indptr[lo : hi + 1] - csc.indptr[lo])
        rank_sum[lo:hi] = np.bincount(cell, weights=ranks, minlength=size).reshape(-1, n_domains)
        tie_sum[lo:hi] = ties

    n_spots = np.bincount(codes, minlength=n_domains)
    n_zero = n - n_expressing.sum(axis=1)
    # Zeros rank below every non-zero value: all share the rank (n_zero + 1) / 2, and every
    # non-zero rank moves up by n_zero.
    rank_sum += n_zero[:, None] * n_expressing
    rank_sum += (n_zero[:, None] + 1) / 2 * (n_spots[None, :] - n_expressing)
    tie_sum += n_zero**3 - n_zero
    return DomainStatistics(n_spots, n_expressing, rank_sum, tie_sum, expm1_sum)


def _column_blocks(indptr: np.ndarray, max_nnz: int):
    """Consecutive column ranges holding about ``max_nnz`` entries each (at least a column)."""
    lo, n_cols = 0, indptr.size - 1
    while lo < n_cols:
        hi = int(np.searchsorted(indptr, indptr[lo] + max_nnz, side="right")) - 1
        hi = min(max(hi, lo + 1), n_cols)
        yield lo, hi
        lo = hi


def _nonzero_ranks(
    data: np.ndarray, col: np.ndarray, col_start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tie-averaged ranks (from 1) of each entry among the non-zeros of its column.

    Returns the ranks in the entries' order, and per column the sum of ``t**3 - t`` over
    its groups of ``t`` tied values.
    """
    # One sort for all columns: column in the high 32 bits, value order in the low 32 bits.
    key = (col.astype(np.uint64) << np.uint64(32)) | _order_codes(data)
    order = np.argsort(key)
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lengths = np.diff(np.r_[starts, key.size])
    run_col = col[order][starts]
    # Position of the run's first entry within its column, plus the mean offset inside the run.
    mean_rank = starts - col_start[run_col] + (lengths + 1) / 2.0
    ranks = np.empty(key.size)
    ranks[order] = np.repeat(mean_rank, lengths)
    t = lengths.astype(np.float64)
    ties = np.bincount(run_col, weights=t**3 - t, minlength=col_start.size - 1)
    return ranks, ties


def _order_codes(values: np.ndarray) -> np.ndarray:
    """Unsigned integers below 2**32 in the order of the (non-negative) values, ties kept."""
    if values.dtype == np.float32:
        # The bit pattern of a non-negative IEEE float increases with its value.
        return values.view(np.uint32).astype(np.uint64)
    _, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.uint64)


def _domain_table(
    d: DomainStatistics,
    z: np.ndarray,
    pval: np.ndarray,
    domains: pd.Index,
    genes: pd.Index,
    pseudocount: float,
    min_spots: int,
) -> pd.DataFrame:
    """Long table (gene x domain) of the Wilcoxon results and fold changes."""
    small = d.n_spots < min_spots
    if small.any():
        log.warning(
            "domains with fewer than %d spots are not tested: %s",
            min_spots, ", ".join(map(str, np.asarray(domains)[small])),
        )  # fmt: skip
        z[:, small] = pval[:, small] = np.nan
    n_total = d.n_spots.sum()
    frac = d.n_expressing / d.n_spots
    mean = d.expm1_sum / d.n_spots
    frames = []
    for k, name in enumerate(domains):
        n_out = n_total - d.n_spots[k]
        mean_out = (d.expm1_sum.sum(axis=1) - d.expm1_sum[:, k]) / n_out
        out_frac = (d.n_expressing.sum(axis=1) - d.n_expressing[:, k]) / n_out
        others = np.delete(np.arange(len(domains)), k)
        # Reference: the "max-out" domain is the other domain where most spots express the gene.
        max_out = others[np.argmax(frac[:, others], axis=1)]
        rows = np.arange(len(genes))
        frame = pd.DataFrame(
            {
                "gene": genes,
                "domain": name,
                "score": z[:, k],
                "log2fc": _log2fc(mean[:, k], mean_out, pseudocount),
                "pval": pval[:, k],
                "padj": bh_adjust(pval[:, k]),
                "in_frac": frac[:, k],
                "out_frac": out_frac,
                "mean_in": mean[:, k],
                "mean_out": mean_out,
                "max_out_domain": np.asarray(domains)[max_out],
                "max_out_frac": frac[rows, max_out],
                "log2fc_max_out": _log2fc(mean[:, k], mean[rows, max_out], pseudocount),
            }
        )
        frames.append(frame.sort_values("score", ascending=False, na_position="last"))
    table = pd.concat(frames, ignore_index=True)
    table["domain"] = pd.Categorical(table["domain"], categories=domains)
    table["max_out_domain"] = pd.Categorical(table["max_out_domain"], categories=domains)
    return table


def _log2fc(mean_in: np.ndarray, mean_out: np.ndarray, pseudocount: float) -> np.ndarray:
    return np.log2((mean_in + pseudocount) / (mean_out + pseudocount))
