"""The within-domain permutation test of the domain-level L-R statistics, in closed form.

Every domain-level statistic of :func:`spaseg.tl.lr_scores` is a bilinear form
``T = sum_{i != j} c_ij x_i y_j`` of the pair's ligand ``x = sqrt(L)`` and receptor
``y = sqrt(R)`` over the spots, with weights ``c_ij`` from the neighbour graph, the domain and
the entropy weights. The null hypothesis: within each domain, the spots' expression profiles
are exchangeable; each spot's profile ``(x_i, y_i)`` is an independent draw from the profiles
of its own domain (a random permutation of the expression among a domain's spots, in the limit
of many spots). What a domain expresses is kept, so a pair whose genes merely mark the domain
(or two touching domains) is not a finding; a finding is L and R on neighbouring spots more
often than their domains' expression places them by chance.

``T`` then has a mean and variance (:func:`permutation_test`) that depend on the pair only
through five moments per domain (means and second moments of ``x`` and ``y``, and their moment
at the same spot) and on the weights only through sums over domains (:class:`_Forms`): every
pair and statistic costs a few small contractions. ``p`` compares each z-score with the
z-scores of a few real within-domain permutations, pooled over every test of the table
(:func:`pooled_pvalues`; the normal tail is far too thin where a statistic rests on a few
spots). Without domains the null is SpatialDM's (every spot exchangeable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.stats import norm

from ._lr_data import _chunk_rows, _onehot
from ._tail import tail_pvalues

log = logging.getLogger("spaseg")


@dataclass(frozen=True)
class _Forms:
    """The weights ``c`` of one statistic summed by the domains ``g, h, k`` of the spots:
    ``mean[g, h] = sum_{i in g, j in h} c_ij``, ``squares`` the same of ``c_ij^2``, ``mirror``
    of ``c_ij c_ji``; with ``r_i[h] = sum_{j in h} c_ij`` and ``s_i[h] = sum_{j in h} c_ji``
    centred on their mean over the spots of ``i``'s domain ``g`` (a permutation keeps each
    domain's total), ``rows[g, h, k] = n_g / (n_g - 1) sum_{i in g} r_i[h] r_i[k]``, ``cols``
    the same of ``s``, ``cross`` of ``r_i[h] s_i[k]``. ``size``: spots per domain."""

    mean: np.ndarray
    squares: np.ndarray
    mirror: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    cross: np.ndarray
    size: np.ndarray


def forms(c: sparse.spmatrix, codes: np.ndarray, n_dom: int) -> _Forms:
    """:class:`_Forms` of the weights ``c`` (spots x spots, no diagonal) for spots in domains
    ``codes``; only the spots that ``c`` touches are visited (the others have ``r = s = 0``)."""
    c = sparse.csr_matrix(c, dtype=np.float64)
    ct = c.T.tocsr()
    onehot = _onehot(codes, n_dom)

    def by_domain(m: sparse.spmatrix) -> np.ndarray:
        return (onehot @ m @ onehot.T).toarray()

    size = np.bincount(codes, minlength=n_dom).astype(float)
    touched = np.union1d(np.flatnonzero(np.diff(c.indptr)), np.flatnonzero(np.diff(ct.indptr)))
    r = (c[touched] @ onehot.T).toarray()  # spots x domains
    s = (ct[touched] @ onehot.T).toarray()
    where = codes[touched]
    rows, cols, cross = (np.zeros((n_dom, n_dom, n_dom)) for _ in range(3))
    for g in np.unique(where):
        rg, sg = r[where == g], s[where == g]
        r_sum, s_sum, n = rg.sum(axis=0), sg.sum(axis=0), size[g]
        factor = n / (n - 1.0) if n > 1 else 0.0  # one spot: nothing to permute
        rows[g] = factor * (rg.T @ rg - np.outer(r_sum, r_sum) / n)
        cols[g] = factor * (sg.T @ sg - np.outer(s_sum, s_sum) / n)
        cross[g] = factor * (rg.T @ sg - np.outer(r_sum, s_sum) / n)
    return _Forms(
        by_domain(c), by_domain(c.multiply(c)), by_domain(c.multiply(ct)), rows, cols, cross, size
    )


@dataclass(frozen=True)
class _Moments:
    """Per pair and domain (pairs x domains), moments of ``(x, y)`` over the domain's spots."""

    mx: np.ndarray
    my: np.ndarray
    xx: np.ndarray  # E[x^2]
    yy: np.ndarray
    xy: np.ndarray  # E[x y] at the same spot


def _row_chunks(n_rows: int, width: int):
    """Slices of rows, each small enough to be dense with ``width`` columns (``_chunk_rows``)."""
    step = _chunk_rows(width, n_rows)
    return (slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step))


def domain_moments(
    sqrt_entities: sparse.spmatrix, codes: np.ndarray, n_dom: int, ligand, receptor
) -> _Moments:
    """Moments of each pair's sqrt-expression in each domain (``sqrt_entities``: spots x
    entities, CSR; ``codes``: the spots' domains); a chunk of spots at a time, so no copy of
    the data is made whole."""
    e = sparse.csr_matrix(sqrt_entities)
    sums = np.zeros((3, n_dom, e.shape[1]))
    cross = np.zeros((n_dom, len(ligand)))
    for rows in _row_chunks(e.shape[0], max(e.shape[1], len(ligand))):
        x = e[rows].toarray().astype(np.float64)
        onehot = np.eye(n_dom)[codes[rows]].T  # domains x spots
        sums[0] += onehot @ x
        sums[1] += onehot @ x**2
        cross += onehot @ (x[:, ligand] * x[:, receptor])
    size = np.bincount(codes, minlength=n_dom).astype(float)[:, None]
    mean, square, cross = (sums[0] / size).T, (sums[1] / size).T, (cross / size).T
    return _Moments(mean[ligand], mean[receptor], square[ligand], square[receptor], cross)


def permutation_test(
    observed: np.ndarray, moments: _Moments, statistics: list[_Forms | None]
) -> tuple[np.ndarray, np.ndarray]:
    """z-scores and one-sided p (upper tail) of ``observed`` (statistics x pairs); NaN for a
    statistic given as ``None`` (not tested) or without variance.

    With ``x_i = mu_i + u_i`` (``mu_i`` the mean of spot ``i``'s domain; likewise ``y``,
    ``nu``, ``v``), ``T = const + sum_i (u_i rho_i + v_i lambda_i) + sum c_ij u_i v_j`` with
    ``rho = C nu`` and ``lambda = C^T mu``. A permutation within domains keeps each domain's
    sum of ``u`` at 0, so the linear part varies with ``rho``'s and ``lambda``'s spread within
    each domain (the centred ``rows``, ``cols``, ``cross`` of :class:`_Forms`); the bilinear
    part adds ``sum c_ij^2 var_i var_j + sum c_ij c_ji cov_i cov_j`` (``cov``: of ``x`` and
    ``y`` at one spot); the two are uncorrelated. The mean is ``sum c_ij mu_i nu_j`` less
    ``cov_g / (n_g - 1)`` for each weight inside one domain ``g`` (two spots of one domain
    cannot both hold the same profile).
    """
    mx, my, xx, yy, xy = vars(moments).values()
    vx, vy, cov = xx - mx**2, yy - my**2, xy - mx * my

    def pair_form(u, m, v):  # per pair: u^T m v
        return np.einsum("pg,gh,ph->p", u, m, v)

    def spread(u, m3, v, w):  # per pair: sum_g u_g v^T m3[g] w
        return np.einsum("pg,ph,ghk,pk->p", u, v, m3, w)

    z = np.full(observed.shape, np.nan)
    for s, f in enumerate(statistics):
        if f is None:
            continue
        same = np.diagonal(f.mean) / np.maximum(f.size - 1.0, 1.0)
        expected = pair_form(mx, f.mean, my) - cov @ same
        var = (
            pair_form(vx, f.squares, vy)
            + pair_form(cov, f.mirror, cov)
            + spread(vx, f.rows, my, my)
            + spread(vy, f.cols, mx, mx)
            + 2 * spread(cov, f.cross, my, mx)
        )
        sd = np.sqrt(np.clip(var, 0.0, None))
        ok = sd > 1e-9 * np.maximum(np.abs(expected), 1e-12)
        np.divide(observed[s] - expected, sd, out=z[s], where=ok)
    return z, norm.sf(z)


def domain_forms(
    mean_op: sparse.csr_matrix, h: np.ndarray, rows: np.ndarray, codes: np.ndarray, n_dom: int
) -> list[_Forms]:
    """:class:`_Forms` of the domain means of the score, one per row of ``rows`` (0/1, rows x
    spots: the domains, then the section when labelled). The mean score of a set ``d`` is
    ``1/|d| sum_{i in d} h_i / 2 sum_j w_ij (x_i y_j + y_i x_j)`` (``w`` = ``mean_op``, the
    row-normalised neighbour graph): weights ``(A_d + A_d^T) / (2 |d|)`` with
    ``A = diag(h) W`` restricted to the rows of ``d``."""
    a = sparse.diags(h.astype(np.float64)) @ sparse.csr_matrix(mean_op, dtype=np.float64)
    out = []
    for member in np.asarray(rows, dtype=bool):
        a_d = sparse.diags(member.astype(np.float64)) @ a
        out.append(forms((a_d + a_d.T) / (2.0 * member.sum()), codes, n_dom))
    return out


def _edge_weights(graph: sparse.spmatrix, h: np.ndarray) -> sparse.csr_matrix:
    """The neighbour graph's edges ``i -> j`` weighted ``(h_i + h_j) / 2``, as the boundary
    means weigh them."""
    g = sparse.csr_matrix(graph, dtype=np.float64)
    hd = sparse.diags(h.astype(np.float64))
    return ((hd @ g + g @ hd) * 0.5).tocsr()


def boundary_forms(
    graph: sparse.csr_matrix, h: np.ndarray, codes: np.ndarray, n_dom: int, tested: np.ndarray
) -> list[_Forms | None]:
    """:class:`_Forms` of the boundary means, sender ``a`` (ligand) into receiver ``b``
    (receptor), in the order ``a * n_dom + b``: ``c_ij = (h_i + h_j) / 2 / n_ab`` on the
    edges from ``a`` to ``b``; ``None`` where ``tested`` (domains x domains) is False."""
    k = _edge_weights(graph, h)
    onehot = _onehot(codes, n_dom)
    n_edges = (onehot @ sparse.csr_matrix(graph, dtype=np.float64) @ onehot.T).toarray()
    out: list[_Forms | None] = []
    for a in range(n_dom):
        from_a = sparse.diags((codes == a).astype(np.float64)) @ k
        for b in range(n_dom):
            if not tested[a, b]:
                out.append(None)
                continue
            c = from_a @ sparse.diags((codes == b).astype(np.float64))
            out.append(forms(c / n_edges[a, b], codes, n_dom))
    return out


def testable(
    sqrt_entities: sparse.spmatrix,
    codes: np.ndarray,
    n_dom: int,
    ligand,
    receptor,
    min_spots: int,
    with_section: bool,
    boundary_tested: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Which statistics x pairs have the ligand and the receptor each detected in at least
    ``min_spots`` spots of their domain: for a domain's mean, that domain (the section for its
    row, when ``with_section``); for the boundary from ``a`` into ``b`` (only where
    ``boundary_tested[a, b]``), the ligand in ``a`` and the receptor in ``b``.

    A statistic carried by a handful of spots is far from normal, and its p would be too small
    against the pooled draws of better-behaved rows: such rows are not tested. The choice uses
    only what a within-domain permutation keeps. Chosen on the detections at the boundary
    itself, the tested rows were those whose genes happened to sit there, and the boundary
    p-values came out too small (share below 0.05 of 0.06 on null data; runs with a false
    discovery 2 of 26, against none).
    """
    e = sparse.csr_matrix(sqrt_entities)
    onehot = _onehot(codes, n_dom)
    in_domain = np.zeros((n_dom, e.shape[1]))  # domains x entities: spots detecting it
    for rows in _row_chunks(e.shape[0], e.shape[1]):  # a float copy of all of e is GBs on a chip
        in_domain += (onehot[:, rows] @ (e[rows] > 0).astype(np.float64)).toarray()
    ok = in_domain >= min_spots
    boundary_ok = ok[:, None, ligand] & ok[None, :, receptor]  # [a, b, pair]
    boundary_ok &= np.asarray(boundary_tested, dtype=bool)[:, :, None]
    if with_section:
        ok = np.r_[ok, in_domain.sum(axis=0, keepdims=True) >= min_spots]
    domain_ok = ok[:, ligand] & ok[:, receptor]
    return domain_ok, boundary_ok.reshape(n_dom * n_dom, -1)


def within_domain_permutation(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index array ``perm``: position ``i`` receives the profile of spot ``perm[i]``, a spot of
    the same domain."""
    perm = np.arange(len(codes))
    for g in np.unique(codes):
        spots = np.flatnonzero(codes == g)
        perm[spots] = rng.permutation(spots)
    return perm


def _moved(op: sparse.csr_matrix, perm: np.ndarray) -> sparse.csr_matrix:
    """``op @ P`` with ``(P @ e)[j] = e[perm[j]]``: each entry's column ``j`` becomes
    ``perm[j]``, so ``_moved(op, perm) @ e`` reads the moved profiles without moving ``e``."""
    return sparse.csr_matrix((op.data, perm[op.indices], op.indptr), shape=op.shape)


@dataclass
class NullDraws:
    """What every draw of the null reuses, built once (:func:`null_draws`): the data, the
    neighbour-mean operator and the domain weights of the domain means, and per receiving
    domain ``b`` the spots outside it that touch it with their edge weights into it."""

    entities: sparse.csr_matrix  # spots x entities, float32 as given (never copied)
    mean_op: sparse.csr_matrix  # in the data's dtype (see :func:`null_draws`)
    weights: np.ndarray  # rows x spots: h_i / 2 / |d| for the spots of each domain mean
    into: list[tuple[np.ndarray, sparse.csr_matrix]]  # per b: (senders, edge weights into b)
    onehot: sparse.csr_matrix
    n_edges: np.ndarray  # domains x domains, edges of the 0/1 graph
    ligand: np.ndarray
    receptor: np.ndarray

    def statistics(self, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The domain means and boundary means (``a * n_dom + b``) of every pair's score with
        the spots' profiles moved by ``perm`` (position ``i`` holds the profile of spot
        ``perm[i]``): one draw of the null. A chunk of spots at a time, and the data are never
        moved (the operators' columns are)."""
        e, lig, rec = self.entities, self.ligand, self.receptor
        n_spots, n_ent = e.shape
        domain = np.zeros((len(self.weights), len(lig)))
        moved_mean = _moved(self.mean_op, perm)
        for rows in _row_chunks(n_spots, max(n_ent, len(lig))):
            here = e[perm[rows]].toarray()  # spots x entities
            near = (moved_mean[rows] @ e).toarray()
            domain += self.weights[:, rows] @ (
                here[:, lig] * near[:, rec] + here[:, rec] * near[:, lig]
            )
        n_dom = len(self.n_edges)
        boundary = np.zeros((n_dom, n_dom, len(lig)))
        for b, (senders, into_b) in enumerate(self.into):
            moved = _moved(into_b, perm)
            for part in _row_chunks(len(senders), max(n_ent, len(lig))):
                here = e[perm[senders[part]]][:, lig].toarray()
                near = (moved[part] @ e).toarray()[:, rec]
                boundary[:, b] += self.onehot[:, senders[part]] @ (here * near)
        boundary /= np.where(self.n_edges > 0, self.n_edges, np.inf)[:, :, None]
        return domain, boundary.reshape(n_dom * n_dom, -1)


def null_draws(
    sqrt_entities: sparse.csr_matrix,
    mean_op: sparse.csr_matrix,
    graph: sparse.csr_matrix,
    h: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    members: np.ndarray,
    ligand: np.ndarray,
    receptor: np.ndarray,
) -> NullDraws:
    """:class:`NullDraws` of a section (``members``: rows x spots, the sets of the domain
    means). Operators are kept in the data's dtype: a float64 operator times float32 data
    makes scipy convert the whole data matrix for every product."""
    e = sparse.csr_matrix(sqrt_entities)
    weights = np.asarray(members, dtype=np.float64)
    weights = weights / weights.sum(axis=1, keepdims=True) * (0.5 * h)[None, :]
    g = sparse.csr_matrix(graph, dtype=np.float64)
    k = _edge_weights(g, h)
    into = []
    for b in range(n_dom):
        inside = (codes == b).astype(np.float64)
        senders = np.flatnonzero((codes != b) & (g @ inside > 0))  # outside b, touching it
        into.append((senders, (k[senders] @ sparse.diags(inside)).tocsr().astype(e.dtype)))
    onehot = _onehot(codes, n_dom)
    return NullDraws(
        e,
        sparse.csr_matrix(mean_op, dtype=e.dtype),
        weights,
        into,
        onehot,
        (onehot @ g @ onehot.T).toarray(),
        np.asarray(ligand),
        np.asarray(receptor),
    )


def pooled_pvalues(z: np.ndarray, null_z: np.ndarray) -> np.ndarray:
    """One-sided p of each z-score against the z-scores of every test of the family in the
    permuted data (pooled, as SAM does): the normal tail is far too thin where a statistic
    rests on a few spots, and the pooled draws carry those tails. Empirical where at least
    ``MIN_EXCEED`` draws reach ``z``, a generalised Pareto tail fitted to the draws beyond."""
    out = np.full(z.shape, np.nan)
    ok = np.isfinite(z)
    draws = np.sort(null_z[np.isfinite(null_z)])
    if not ok.any() or not draws.size:
        return out
    count = len(draws) - np.searchsorted(draws, z[ok], side="left")
    out[ok] = tail_pvalues(z[ok], draws[None, :], np.zeros(int(ok.sum()), dtype=np.int64), count)
    return out


#: Pooled null z-scores per family of tests (domain means, boundary means) that are enough:
#: the p-values are empirical down to 1 / POOLED_DRAWS and from the fitted tail beyond, so a
#: large table (a chip: 1 000 pairs x 10 domains) needs fewer permutations than a small one.
POOLED_DRAWS = 20_000


def permutations_needed(n_permutations: int, *family_sizes: int) -> int:
    """At most ``n_permutations``; fewer where every family of ``family_sizes`` tests already
    pools :data:`POOLED_DRAWS` z-scores from fewer permutations."""
    sizes = [int(n) for n in family_sizes if n > 0]
    if not n_permutations or not sizes:
        return n_permutations
    return min(n_permutations, max(-(-POOLED_DRAWS // n) for n in sizes))


@dataclass
class Permutation:
    """The within-domain permutation test of one section: the pairs' moments per domain, the
    weights of the domain means (domains, then the section when labelled) and of the boundary
    means (sender x receiver, flattened; ``None``: not tested), which statistics x pairs are
    testable (:func:`testable`), and the pooled z-scores of the permuted data (``None``: no
    permutations; p from the normal tail)."""

    moments: _Moments
    domains: list[_Forms]
    boundaries: list[_Forms | None]
    domains_testable: np.ndarray
    boundaries_testable: np.ndarray
    null_domains: np.ndarray | None = None
    null_boundaries: np.ndarray | None = None
    n_permutations: int = 0

    def zscores(self, observed: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
        """z and normal-tail p of ``observed`` (statistics x pairs); NaN where not tested."""
        forms_, ok = (
            (self.domains, self.domains_testable)
            if which == "domains"
            else (self.boundaries, self.boundaries_testable)
        )
        z, p = permutation_test(observed, self.moments, forms_)
        z[~ok], p[~ok] = np.nan, np.nan
        return z, p


def permutation_setup(
    sqrt_entities: sparse.csr_matrix,
    mean_op: sparse.csr_matrix,
    graph: sparse.csr_matrix,
    h: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    with_section: bool,
    ligand: np.ndarray,
    receptor: np.ndarray,
    *,
    boundary_tested: np.ndarray,
    min_spots: int,
    n_permutations: int,
    rng: np.random.Generator,
) -> Permutation:
    """Everything the tables need for the permutation test, the permuted draws included."""
    members = np.eye(n_dom, dtype=bool)[codes].T
    if with_section:
        members = np.r_[members, np.ones((1, len(codes)), dtype=bool)]
    test = Permutation(
        domain_moments(sqrt_entities, codes, n_dom, ligand, receptor),
        domain_forms(mean_op, h, members, codes, n_dom),
        boundary_forms(graph, h, codes, n_dom, boundary_tested),
        *testable(
            sqrt_entities, codes, n_dom, ligand, receptor, min_spots, with_section, boundary_tested
        ),
    )
    n_permutations = permutations_needed(
        n_permutations, int(test.domains_testable.sum()), int(test.boundaries_testable.sum())
    )
    test.n_permutations = n_permutations
    if n_permutations:
        draws = null_draws(
            sqrt_entities, mean_op, graph, h, codes, n_dom, members, ligand, receptor
        )
        null_d, null_b = [], []
        start = time.perf_counter()
        for r in range(n_permutations):
            d, b = draws.statistics(within_domain_permutation(codes, rng))
            null_d.append(test.zscores(d, "domains")[0].ravel())
            null_b.append(test.zscores(b, "boundaries")[0].ravel())
            log.info(
                "L-R permutation test: permutation %d/%d (%.0f s)",
                r + 1,
                n_permutations,
                time.perf_counter() - start,
            )
        test.null_domains, test.null_boundaries = np.concatenate(null_d), np.concatenate(null_b)
    return test
