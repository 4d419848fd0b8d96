"""The L-R result tables: per pair and domain, per pair and domain pair (sender, receiver),
the spots x pairs AnnData that holds them, and the top pairs of each domain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._lr_data import ALL, _Domains, _pair_names, _Pairs
from ._lr_null import _Background, _empirical
from ._lr_perm import Permutation, pooled_pvalues
from ._moran import bh_adjust

PAIR_COLUMNS = [
    "pair", "ligand", "receptor", "domain", "n_spots", "mean_score", "zscore", "pval", "padj",
    "zscore_perm", "pval_perm", "padj_perm", "frac_spots_significant",
]  # fmt: skip


@dataclass
class _Result:
    scores: sparse.csr_matrix
    neglog10_p: sparse.csr_matrix
    neglog10_padj: sparse.csr_matrix
    table: pd.DataFrame  # per pair and domain
    domain_pairs: pd.DataFrame
    n_permutations: int  # drawn for the permutation test (:func:`permutations_needed`)


@dataclass
class _Counts:
    """Per-domain sums gathered over the chunks (rows: domains)."""

    size: np.ndarray  # spots
    score: np.ndarray  # (domains, pairs) sum of scores
    background: np.ndarray  # (domains, strata * n) sum of background scores
    nonzero: np.ndarray  # (domains, pairs) spots with score > 0
    significant: np.ndarray  # (domains, pairs) spots with spot-level padj < alpha

    def with_total(self) -> _Counts:
        """Append the whole section as one more row."""
        return _Counts(*(np.r_[a, a.sum(axis=0, keepdims=True)] for a in vars(self).values()))


@dataclass(frozen=True)
class _Expected:
    """What each pair's score would be without any spatial association of its genes: the
    product of their section-wide mean sqrt-expression (the score's neighbour mean then
    averages to the section mean). The tests compare score / expected, not the score itself:
    expression bins are coarse, so a pair near the top of its bin would otherwise beat most
    background pairs of the bin on expression alone (DLPFC calibration, RESULTS.md)."""

    pairs: np.ndarray  # per resource pair
    background: np.ndarray  # per background pair


def _with_permutation(table: pd.DataFrame, observed, test: Permutation, which: str) -> None:
    """Add ``zscore_perm``, ``pval_perm`` and ``padj_perm`` (BH over the tested rows: one
    family, like ``padj``) of ``observed`` (statistics x pairs, flattened as ``table``), for
    the ``which`` (``"domains"`` or ``"boundaries"``) statistics of ``test``; NaN where not
    tested. p against the pooled permutation draws of the family when there are any, else
    the normal tail of z."""
    z, p = test.zscores(observed, which)
    null = test.null_domains if which == "domains" else test.null_boundaries
    if null is not None:
        p = pooled_pvalues(z, null)
    z, p = z.ravel(), p.ravel()
    tested = np.isfinite(p)
    padj = np.full(p.size, np.nan)
    padj[tested] = bh_adjust(p[tested])
    table["zscore_perm"], table["pval_perm"], table["padj_perm"] = z, p, padj


def _domain_table(
    pairs: _Pairs,
    domains: _Domains,
    counts: _Counts,
    background: _Background,
    expected: _Expected,
    permutation: Permutation,
) -> pd.DataFrame:
    """Per pair and domain (and the whole section): mean score against the background's,
    each relative to what its genes' expression alone gives (:class:`_Expected`), and
    against spots placed at random (:class:`~spaseg.tl._lr_perm.Permutation`)."""
    names = domains.names
    if domains.labelled:
        counts, names = counts.with_total(), [*names, ALL]
    mean = counts.score / counts.size[:, None]  # (domains, pairs)
    null = counts.background / counts.size[:, None]
    pval, z = _empirical(
        mean / expected.pairs,
        null / expected.background,
        background.pair_stratum,
        background.n,
    )
    n_dom, n_pairs = mean.shape
    table = pd.DataFrame(
        {
            "pair": np.tile(_pair_names(pairs.table), n_dom),
            "ligand": np.tile(pairs.table["ligand"], n_dom),
            "receptor": np.tile(pairs.table["receptor"], n_dom),
            "domain": np.repeat(names, n_pairs),
            "n_spots": counts.nonzero.ravel().astype(int),
            "mean_score": mean.ravel(),
            "zscore": z.ravel(),
            "pval": pval.ravel(),
            "frac_spots_significant": (counts.significant / counts.size[:, None]).ravel(),
        }
    )
    # One family: every pair in every domain (and the section), as the table is read.
    table["padj"] = bh_adjust(table["pval"].to_numpy())
    _with_permutation(table, mean, permutation, "domains")
    return table[PAIR_COLUMNS]


#: Fewest neighbour links between two domains for their boundary to be tested: a mean over a
#: handful of links is one or two spots' chance expression, not an interaction of domains.
MIN_EDGES = 10


def _domain_pairs_table(
    pairs: _Pairs,
    domains: _Domains,
    edge_sum: np.ndarray,
    background_edge_sum: np.ndarray,
    n_edges: np.ndarray,
    background: _Background,
    expected: _Expected,
    permutation: Permutation,
) -> pd.DataFrame:
    """Per pair, sender and receiver domain: mean edge score; across two domains, also its
    z-score, empirical p and BH padj (per domain pair) against the background pairs', each
    relative to what its genes' expression alone gives (:class:`_Expected`), and the same
    against spots placed at random (:class:`~spaseg.tl._lr_perm.Permutation`)."""
    n_dom, _, n_pairs = edge_sum.shape
    edges = n_edges[:, :, None]
    mean = np.divide(edge_sum, edges, out=np.zeros_like(edge_sum), where=edges > 0)
    null = np.divide(
        background_edge_sum, edges, out=np.zeros_like(background_edge_sum), where=edges > 0
    )
    pval, z = _empirical(
        mean.reshape(n_dom * n_dom, n_pairs) / expected.pairs,
        null / expected.background,
        background.pair_stratum,
        background.n,
    )
    tested = ((n_edges >= MIN_EDGES) & ~np.eye(n_dom, dtype=bool)).ravel()
    pval[~tested], z[~tested] = np.nan, np.nan
    # One family: every pair across every pair of domains.
    padj = np.full(pval.size, np.nan)
    flat_tested = np.repeat(tested, n_pairs)
    padj[flat_tested] = bh_adjust(pval.ravel()[flat_tested])
    names = np.asarray(domains.names, dtype=object)
    table = pd.DataFrame(
        {
            "pair": np.tile(_pair_names(pairs.table), n_dom * n_dom),
            "sender": np.repeat(names, n_dom * n_pairs),
            "receiver": np.tile(np.repeat(names, n_pairs), n_dom),
            "score": mean.ravel(),
            "n_edges": np.repeat(n_edges.ravel(), n_pairs).astype(int),
            "zscore": z.ravel(),
            "pval": pval.ravel(),
            "padj": padj,
        }
    )
    observed = mean.reshape(n_dom * n_dom, n_pairs)
    _with_permutation(table, observed, permutation, "boundaries")
    return table


def _assemble(
    adata: AnnData, pairs: _Pairs, entity_bin: np.ndarray, domains: _Domains, h, result: _Result
) -> AnnData:
    var = pairs.table.copy()
    var["ligand_bin"] = entity_bin[pairs.ligand]
    var["receptor_bin"] = entity_bin[pairs.receptor]
    var.index = pd.Index(_pair_names(pairs.table))
    section = result.table[result.table["domain"] == ALL].set_index("pair")
    for column in ("mean_score", "zscore", "pval", "padj"):
        var[column] = section.loc[var.index, column].to_numpy()
    obs = pd.DataFrame({"cell_type_entropy": h}, index=adata.obs_names)
    if domains.labelled:
        labels = np.asarray(domains.names, dtype=object)[domains.codes]
        obs.insert(0, "domain", pd.Categorical(labels, categories=domains.names))
    lrdata = AnnData(X=result.scores, obs=obs, var=var)
    lrdata.layers["neglog10_pval"] = result.neglog10_p
    lrdata.layers["neglog10_padj"] = result.neglog10_padj
    if "spatial" in adata.obsm:
        lrdata.obsm["spatial"] = np.asarray(adata.obsm["spatial"])
    lrdata.uns["lr_pairs"] = result.table
    lrdata.uns["lr_domain_pairs"] = result.domain_pairs
    return lrdata


#: Which test's ``padj`` (and z-score) decides a table row: the within-domain permutation test
#: (``_perm`` columns), the random-pair test, or both together (a row passes when both do).
TESTS = {"permutation": ("_perm",), "random_pairs": ("",), "both": ("_perm", "")}


def passing(table: pd.DataFrame, alpha: float = 0.05, test: str = "permutation") -> pd.Series:
    """Rows of an L-R table (``uns["lr_pairs"]``, ``uns["lr_domain_pairs"]`` or their TSVs)
    whose ``test`` passes: ``padj_perm``, ``padj`` or both below ``alpha``."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {sorted(TESTS)}, not {test!r}")
    hit = pd.Series(True, index=table.index)
    for suffix in TESTS[test]:
        hit &= table[f"padj{suffix}"] < alpha
    return hit


def top_pairs(
    table: pd.DataFrame, *, n: int = 5, alpha: float = 0.05, test: str = "permutation"
) -> pd.DataFrame:
    """The ``n`` pairs of each domain with the largest z-score among those that pass ``test``
    (:func:`passing`) with a positive mean score.

    ``table`` is ``uns["lr_pairs"]`` of :func:`lr_scores` (or ``cci/pairs.tsv``).
    """
    hits = table[passing(table, alpha, test) & (table["mean_score"] > 0)]
    z = f"zscore{TESTS[test][0]}"  # the first test's z ranks (``passing`` checked the name)
    hits = hits.sort_values(["domain", z, "mean_score"], ascending=[True, False, False])
    return hits.groupby("domain", sort=False, observed=True).head(n).reset_index(drop=True)
