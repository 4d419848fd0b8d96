"""The background of the L-R tests, and p-values from it.

A pair is compared with random gene pairs whose ligand and receptor sit in the same expression
bins (quantiles of mean sqrt-expression) as its own. All pairs of one (ligand bin, receptor bin)
stratum share one background of ``n`` random pairs, so the cost grows with the number of
occupied strata, not of pairs. A statistic is tested against the same statistic of its
stratum's background pairs: empirically where at least ``MIN_EXCEED`` of them reach it, beyond
that from a generalised Pareto fit to the background's tail (:mod:`spaseg.tl._tail`), so
p-values far below ``1 / (n + 1)`` are reachable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._lr_data import _Pairs
from ._tail import tail_pvalues


def _expression_bins(
    means: np.ndarray, gene_means: np.ndarray, n_bins: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bin of each entity by its mean, on quantiles of the genes' means; the genes of each bin."""
    expressed = np.flatnonzero(gene_means > 0)
    edges = np.quantile(gene_means[expressed], np.linspace(0, 1, n_bins + 1)[1:-1])
    gene_bin = np.searchsorted(edges, gene_means[expressed], side="right")
    pools = [expressed[gene_bin == b] for b in range(n_bins)]
    nonempty = np.array([len(p) > 0 for p in pools])
    entity_bin = np.searchsorted(edges, means, side="right")
    # Ties in the gene means can leave a bin empty: use the nearest bin with genes.
    options = np.flatnonzero(nonempty)
    entity_bin = options[np.abs(entity_bin[:, None] - options[None, :]).argmin(axis=1)]
    return entity_bin, pools


def _bh_grouped(pvals: np.ndarray, group: np.ndarray, n_tests: np.ndarray | int) -> np.ndarray:
    """Benjamini-Hochberg within groups; ``n_tests`` per group may exceed the p-values given
    (untested entries count as p = 1, which never lowers another's adjusted value)."""
    if pvals.size == 0:
        return pvals.copy()
    order = np.lexsort((pvals, group))
    g, p = group[order], pvals[order]
    rank = np.arange(len(p)) - np.searchsorted(g, g, side="left") + 1
    m = n_tests[g] if isinstance(n_tests, np.ndarray) else n_tests
    q = np.minimum(p * m / rank, 1.0)
    # Step-up: running minimum from the largest p-value down, within each group.
    q = pd.Series(q[::-1]).groupby(g[::-1]).cummin().to_numpy()[::-1]
    out = np.empty_like(q)
    out[order] = q
    return out


# Relative tolerance of "at least as large" in the empirical tests. Scores are float32 sums whose
# last bits depend on summation order (chunking, spot order, BLAS threads); a background pair
# with the same genes as the observed one, or genes of identical expression, gives a statistic
# equal up to that rounding. Such near-ties count as ties (>=), so p-values do not depend on
# the order of summation. 1e-6 is ~10 float32 ulps: far below any real difference of scores.
TIE_RTOL = 1e-6


def _count_at_least(
    background: np.ndarray, stratum: np.ndarray, spot: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """How many of the background scores of (``stratum``, ``spot``) are >= ``value``.

    ``background`` is ``(n_strata, n, n_spots)``, sorted along axis 1. A background score
    within a relative ``TIE_RTOL`` below ``value`` counts as a tie, hence as >=. A binary
    search per query, vectorised over all queries: ``log2(n)`` rounds of one gather each.
    """
    _, n, n_spots = background.shape
    flat = background.reshape(-1)
    value = np.asarray(value, dtype=np.float64)
    value = value - TIE_RTOL * np.abs(value)
    base = stratum.astype(np.int64) * (n * n_spots) + spot
    below = np.zeros(len(value), dtype=np.int64)  # background values < value found so far
    step = 1 << (n.bit_length() - 1)
    while step:
        probe = below + step
        inside = probe <= n
        look = base + (np.minimum(probe, n) - 1) * n_spots
        below = np.where(inside & (flat[look] < value), probe, below)
        step >>= 1
    return n - below


@dataclass
class _Background:
    """Random expression-matched gene pairs: one set of ``n`` per (ligand bin, receptor bin)."""

    pair_stratum: np.ndarray  # (ligand bin, receptor bin) stratum of each resource pair
    ligand: np.ndarray  # (n_strata * n,) gene of each background ligand (then: its column)
    receptor: np.ndarray
    n: int

    @property
    def n_strata(self) -> int:
        return len(self.ligand) // self.n


def _draw_background(
    entity_bin: np.ndarray,
    pools: list[np.ndarray],
    pairs: _Pairs,
    n: int,
    rng: np.random.Generator,
) -> _Background:
    """``n`` random gene pairs (gene indices) per occupied (ligand bin, receptor bin) stratum."""
    strata, pair_stratum = np.unique(
        np.column_stack([entity_bin[pairs.ligand], entity_bin[pairs.receptor]]),
        axis=0,
        return_inverse=True,
    )
    ligand = np.concatenate([rng.choice(pools[a], n) for a in strata[:, 0]])
    receptor = np.concatenate([rng.choice(pools[b], n) for b in strata[:, 1]])
    return _Background(pair_stratum.ravel(), ligand, receptor, n)


def _empirical(
    observed: np.ndarray, null: np.ndarray, pair_stratum: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """P-values and z-scores of statistics against their background.

    ``observed`` is (groups, pairs), ``null`` (groups, strata * n): the same statistic of each
    background pair; a pair is compared with the ``n`` of its stratum. Ties, within a relative
    ``TIE_RTOL`` (rounding of sums taken in another order), count as >=. Empirical p where at
    least ``MIN_EXCEED`` draws reach the statistic, else from a generalised Pareto fit to the
    background's tail (:mod:`spaseg.tl._tail`), so p can fall below ``1 / (n + 1)``.
    """
    n_groups, n_pairs = observed.shape
    null = np.sort(null.reshape(n_groups, -1, n), axis=2)
    ordered = np.ascontiguousarray(null.transpose(1, 2, 0))  # strata, n, groups
    group, pair = np.divmod(np.arange(n_groups * n_pairs), n_pairs)
    count = _count_at_least(ordered, pair_stratum[pair], group, observed.ravel())
    n_strata = null.shape[1]
    pval = tail_pvalues(
        observed.ravel(), null.reshape(-1, n), group * n_strata + pair_stratum[pair], count
    ).reshape(n_groups, n_pairs)
    centre = null.mean(axis=2)[:, pair_stratum]
    spread = null.std(axis=2, ddof=1)[:, pair_stratum] if n > 1 else np.zeros_like(observed)
    z = np.divide(observed - centre, spread, out=np.zeros_like(observed), where=spread > 0)
    return pval, z
