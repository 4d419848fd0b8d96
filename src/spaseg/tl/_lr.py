"""Ligand-receptor (L-R) scores between neighbouring spots, with significance.

SpaSEG's score for a pair (L, R) at spot i, over its neighbours j in N(i)::

    s1_i = mean_j sqrt(L_i R_j),   s2_i = mean_j sqrt(R_i L_j),   score_i = (s1_i + s2_i) / 2 * H_i

with ``H_i`` the base-2 Shannon entropy of the spot's cell-type fractions (1 without them).
Since ``sqrt(L_i R_j) = sqrt(L_i) sqrt(R_j)``, with ``S = sqrt(expression)`` and ``W`` the
row-normalised neighbour graph, ``s1 = S_L * (W S)_R`` and ``s2 = S_R * (W S)_L``: one sparse
product ``W @ S`` serves every ligand and receptor, then each pair is two column gathers and
element-wise products. Spots are processed in chunks so that memory stays bounded.

Significance follows the reference: a pair is compared with random expression-matched gene
pairs (:mod:`spaseg.tl._lr_null`). Spot level: empirical p of the score against the
background's scores at that spot; BH over every spot and pair at once (one family: with a few
hundred draws only pairs strong in many spots survive it). Domain level: the domain's mean
score against the background pairs' domain means (``"all"``: the whole section); across
domains: the mean over neighbour edges from one domain (ligand) into another (receptor) against
the background pairs' same means, computed on the boundary spots only. Both compare each
statistic relative to what its genes' expression alone gives (the product of their
section-wide mean sqrt-expression, ``_lr_tables._Expected``), and are empirical where at
least 10 background pairs reach it, from a generalised Pareto fit to the background's tail
beyond, so p-values far below ``1 / (n_background + 1)`` are reachable; BH runs over every
pair and domain of a table at once (:mod:`spaseg.tl._lr_tables`). Beside it, every domain and
boundary statistic also gets a within-domain permutation test (``*_perm`` columns,
:mod:`spaseg.tl._lr_perm`). The resource and its
matching to the data: :mod:`spaseg.tl._lr_data`; squidpy's ``ligrec`` beside it:
:mod:`spaseg.tl._ligrec`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.spatial import cKDTree

from .._errors import InputError
from ..pp._image import spot_image
from ._lr_data import (
    ComplexPolicy,
    _chunk_rows,
    _col_means,
    _data_symbols,
    _Domains,
    _domains,
    _entity_expression,
    _match,
    _onehot,
    _Pairs,
    _reindex,
    _subset_pairs,
    load_resource,
)
from ._lr_null import _Background, _count_at_least, _draw_background, _expression_bins
from ._lr_perm import permutation_setup
from ._lr_tables import (
    MIN_EDGES,
    _assemble,
    _Counts,
    _domain_pairs_table,
    _domain_table,
    _Expected,
    _Result,
)

log = logging.getLogger("spaseg")


# --- neighbours and entropy ---------------------------------------------------------------------


def neighbour_graph(
    adata: AnnData, *, rings: int = 2, radius: float | None = None, grid: str = "auto"
) -> sparse.csr_matrix:
    """Symmetric 0/1 graph of each spot's neighbours (no self loops).

    Parameters
    ----------
    adata
        A section with ``obs["array_row"]``/``obs["array_col"]`` or ``obsm["spatial"]``.
    rings
        Lattice rings around each spot (1: the 6 hex or 4 square neighbours; 2: also theirs),
        on the grid of :func:`spaseg.pp.spot_image` (free coordinates are quantised there).
    radius
        If given, ignore ``rings``: neighbours are spots within this distance in
        ``obsm["spatial"]`` units.
    grid
        Passed to :func:`spaseg.pp.spot_image`.
    """
    n = adata.n_obs
    if radius is not None:
        if radius <= 0:
            raise InputError(f"must be positive, not {radius}.", field="radius")
        xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
        pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        graph = sparse.csr_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), (n, n))
    else:
        if rings < 1:
            raise InputError(f"must be at least 1, not {rings}.", field="rings")
        image = spot_image(adata, grid=grid)
        m, (a, b) = image.n_pixels, image.edges.T
        step = sparse.csr_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), (m, m))
        reach = step + sparse.identity(m, format="csr")  # the identity joins spots of one pixel
        for _ in range(rings - 1):
            reach = reach @ (step + sparse.identity(m, format="csr"))
        to_pixel = sparse.csr_matrix((np.ones(n), (np.arange(n), image.spot_pixel)), (n, m))
        graph = (to_pixel @ reach @ to_pixel.T).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data[:] = 1.0
    return graph.astype(np.float32)


def cell_type_entropy(fractions: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Base-2 Shannon entropy of each row of cell-type fractions (rows are renormalised).

    0 for a spot of one cell type, ``log2(K)`` for an even mix of ``K`` types, 0 for an empty row.
    """
    f = np.clip(np.asarray(fractions, dtype=np.float64), 0.0, None)
    total = f.sum(axis=1, keepdims=True)
    f = np.divide(f, total, out=np.zeros_like(f), where=total > 0)
    logs = np.log2(f, out=np.zeros_like(f), where=f > 0)
    return -(f * logs).sum(axis=1) + 0.0  # + 0.0: no -0.0 for pure spots


# --- the scores ---------------------------------------------------------------------------------


def _scores(
    sqrt_expr: np.ndarray, neighbour_mean: np.ndarray, h: np.ndarray, lig, rec
) -> np.ndarray:
    """Dense scores, pairs x spots, from ``sqrt_expr`` (sqrt-expression) and ``neighbour_mean``
    (its mean over each spot's neighbours), both columns x spots: row gathers are contiguous
    copies, far faster than gathering columns of a spots x columns array."""
    out = np.take(sqrt_expr, lig, axis=0) * np.take(neighbour_mean, rec, axis=0)
    out += np.take(sqrt_expr, rec, axis=0) * np.take(neighbour_mean, lig, axis=0)
    out *= 0.5 * h
    return out


def _sqrt_col_means(x: sparse.csc_matrix, block: int = 256) -> np.ndarray:
    """Column means of ``sqrt(x)``, a block of columns at a time: never a square-rooted copy
    of the whole matrix."""
    return np.concatenate(
        [_col_means(x[:, k : k + block].sqrt()) for k in range(0, x.shape[1], block)]
    )


def _dense_t(m: sparse.spmatrix) -> np.ndarray:
    """``m.T`` as a C-contiguous dense array."""
    return m.T.tocsr().toarray()


@dataclass
class _SqrtColumns:
    """sqrt-expression, spots x columns: the resource's entities (the first columns), then the
    genes the background drew. Two matrices, not one: the resource pairs' edge sums need the
    entities only, and a column slice of one matrix would copy them."""

    entities: sparse.csr_matrix
    genes: sparse.csr_matrix

    def rows_t(self, rows: slice) -> np.ndarray:
        """These spots' values, columns x spots (dense)."""
        return np.concatenate([_dense_t(self.entities[rows]), _dense_t(self.genes[rows])])

    def product_t(self, op: sparse.csr_matrix, *, entities_only: bool = False) -> np.ndarray:
        """``(op @ columns).T``, columns x rows of ``op`` (dense)."""
        parts = (self.entities,) if entities_only else (self.entities, self.genes)
        return np.concatenate([_dense_t(op @ m) for m in parts])


def lr_scores(
    adata: AnnData,
    resource: str | PathLike | pd.DataFrame = "consensus",
    *,
    organism: Literal["human", "mouse"] = "human",
    domain_key: str | None = "domain",
    fractions_key: str | None = None,
    layer: str | None = None,
    gene_symbols: str | None = None,
    complex_policy: ComplexPolicy = "min",
    rings: int = 2,
    radius: float | None = None,
    n_background: int = 1000,
    n_permutations: int = 5,
    n_bins: int = 10,
    min_spots: int = 10,
    alpha: float = 0.05,
    seed: int = 0,
    sample: str | None = None,
) -> AnnData:
    """Spot-level L-R scores of all pairs of a resource, with significance and summaries.

    Parameters
    ----------
    adata
        A section: non-negative (log-normalised) expression in ``X`` or ``layer``, coordinates
        as for :func:`neighbour_graph`.
    resource
        See :func:`load_resource`.
    organism
        See :func:`load_resource`. Symbols are matched case-insensitively either way (as in
        squidpy's ``ligrec``), so a human table also finds mouse genes (``CXCL12`` ~ ``Cxcl12``).
    domain_key
        ``obs`` column of domains for per-domain and domain x domain summaries; ``None``: the
        whole section only.
    fractions_key
        ``obsm`` key of cell-type fractions or abundances (e.g. cell2location's); the score is
        weighted by their entropy ``H_i``. ``None``: ``H_i = 1`` for every spot.
    layer
        Expression layer; ``None``: ``X``.
    gene_symbols
        ``var`` column of gene symbols; ``None``: ``var["gene_symbols"]`` when present (symbols
        missing there fall background_scores to ``var_names``), else ``var_names``.
    complex_policy
        Expression of a complex: ``"min"`` of its subunits, or their geometric mean ``"gmean"``.
    rings, radius
        Neighbourhood, see :func:`neighbour_graph`.
    n_background
        Random expression-matched pairs per (ligand bin, receptor bin). Domain-level p-values
        beyond the draws come from a tail fitted to them (at least 60 draws; fewer: empirical
        only, at least ``1 / (n_background + 1)``); spot-level ones are empirical. The cost
        grows with it (100 is 5-10x faster than 1000).
    n_permutations
        Permutations of the spots' expression within each domain for the permutation test:
        their z-scores, pooled over every test of a table, give its p-values (0: the normal
        tail of z, too thin where a statistic rests on a few spots). The most drawn: a large
        table stops once each of its families (domain means, boundary means) pools 20 000
        z-scores (``uns["lr"]["n_permutations_drawn"]``); beyond that the fitted tail takes over.
    n_bins
        Expression bins (quantiles of the genes' mean sqrt-expression) for the matching.
    min_spots
        Pairs whose ligand or receptor is detected in fewer spots are left out; the
        permutation test leaves untested a domain, or a boundary (ligand in the sending
        domain, receptor in the receiving one), where either is detected in fewer of its spots.
    alpha
        Spot-level FDR for ``frac_spots_significant``.
    seed
        Seed of the background draws.
    sample
        Sample name for error messages.

    Returns
    -------
    AnnData of spots x pairs (``var_names`` ``LIGAND^RECEPTOR``, upper case):

    - ``X``: scores (sparse CSR, float32);
    - ``layers["neglog10_pval"]``, ``layers["neglog10_padj"]``: spot-level ``-log10`` empirical
      p and BH-adjusted p (one family: every spot and pair); 0 (p = 1) where the score is 0;
    - ``obs``: ``domain`` (if any) and ``cell_type_entropy`` (``H_i``); ``obsm["spatial"]``;
    - ``var``: ``ligand``, ``receptor``, ``ligand_genes``, ``receptor_genes`` (the data's
      symbols), ``ligand_bin``, ``receptor_bin``, and the section-wide ``mean_score``,
      ``zscore``, ``pval``, ``padj``;
    - ``uns["lr_pairs"]``: per pair and domain (``"all"`` for the section): ``n_spots`` (score >
      0), ``mean_score``, ``zscore`` and ``pval`` against the background's domain means
      (empirical, or from the fitted tail beyond the draws), ``padj`` (BH over every pair and
      domain of the table), ``zscore_perm``, ``pval_perm``, ``padj_perm`` (the within-domain
      permutation test: z of the domain mean against its mean and variance when each domain's
      spots swap their expression at random, p against the pooled z-scores of
      ``n_permutations`` such permutations, BH over the table; NaN where the ligand or
      receptor is detected in fewer than ``min_spots`` of the domain's spots),
      ``frac_spots_significant`` (spot ``padj < alpha``);
    - ``uns["lr_domain_pairs"]``: per pair, ``sender`` domain (ligand) and ``receiver`` domain
      (receptor): ``score``, the mean over directed neighbour edges of
      ``sqrt(L_i R_j) (H_i + H_j) / 2``, and ``n_edges``; across two domains also ``zscore``,
      ``pval`` and ``padj`` (BH over every pair and domain pair) against the background pairs'
      edge means, and ``zscore_perm``, ``pval_perm``, ``padj_perm`` of the permutation test
      (inside a domain these are NaN: the per-domain test of ``lr_pairs`` covers it; so are
      those of two domains joined by fewer than ``MIN_EDGES`` (10) edges, and, for the
      permutation test, where fewer than ``min_spots`` boundary spots of the sending side
      detect the ligand or of the receiving side the receptor);
    - ``uns["lr"]``: the parameters.
    """
    for name, value, low in (("n_background", n_background, 1), ("n_bins", n_bins, 1)):
        if value < low:
            raise InputError(f"must be at least {low}, not {value}.", sample=sample, field=name)
    x = adata.layers[layer] if layer is not None else adata.X
    x = sparse.csc_matrix(x, dtype=np.float32)
    if x.nnz and x.data.min() < 0:
        raise InputError(
            "expression has negative values (scaled data?); give log-normalised expression.",
            sample=sample,
            field=layer or "X",
        )
    h = _entropy_weights(adata, fractions_key, sample)
    domains = _domains(adata, domain_key, sample)

    table = load_resource(resource, organism=organism)
    try:
        pairs = _match(table, _data_symbols(adata, gene_symbols))
    except InputError as err:
        raise InputError(str(err), sample=sample, field="resource") from None
    entity = _entity_expression(x, pairs.entities, complex_policy)
    detected = np.diff(entity.indptr)
    keep = (detected[pairs.ligand] >= min_spots) & (detected[pairs.receptor] >= min_spots)
    if not keep.any():
        raise InputError(
            f"no L-R pair has ligand and receptor detected in at least {min_spots} spots "
            f"({len(keep)} pairs matched the data).",
            sample=sample,
            field="min_spots",
        )
    if not keep.all():
        log.info("L-R: %d pairs expressed in < %d spots left out", int((~keep).sum()), min_spots)
    pairs = _subset_pairs(pairs, keep)
    entity = entity[:, np.unique(np.r_[pairs.ligand, pairs.receptor])]
    pairs = _reindex(pairs)
    log.info("L-R: %d pairs, %d entities, %d spots", len(pairs.table), entity.shape[1], x.shape[0])

    sqrt_entity = entity.sqrt()
    del entity  # large sections: hold as few copies of the data as possible
    entity_means, gene_means = _col_means(sqrt_entity), _sqrt_col_means(x)
    entity_bin, pools = _expression_bins(entity_means, gene_means, min(n_bins, x.shape[1]))
    background = _draw_background(
        entity_bin, pools, pairs, n_background, np.random.default_rng(seed)
    )
    # Columns: the entities, then the genes the background drew.
    genes, background_columns = np.unique(
        np.r_[background.ligand, background.receptor], return_inverse=True
    )
    background.ligand, background.receptor = np.split(background_columns + sqrt_entity.shape[1], 2)
    sqrt_genes = x[:, genes]  # a copy: square-rooted in place
    np.sqrt(sqrt_genes.data, out=sqrt_genes.data)
    del x
    columns = _SqrtColumns(sqrt_entity.tocsr(), sqrt_genes.tocsr())
    del sqrt_entity, sqrt_genes
    means = np.r_[entity_means, gene_means[genes]]  # of the columns
    expected = _Expected(
        means[pairs.ligand] * means[pairs.receptor],
        means[background.ligand] * means[background.receptor],
    )

    graph = neighbour_graph(adata, rings=rings, radius=radius)
    result = _score_all(
        columns,
        graph,
        h,
        domains,
        pairs,
        background,
        expected,
        alpha,
        min_spots,
        n_permutations,
        np.random.default_rng([seed, 1]),  # apart from the background's draws
    )
    lrdata = _assemble(adata, pairs, entity_bin, domains, h, result)
    lrdata.uns["lr"] = {
        "resource": resource if isinstance(resource, str) else type(resource).__name__,
        "organism": organism,
        "complex_policy": complex_policy,
        "rings": rings,
        "radius": "none" if radius is None else radius,
        "n_background": n_background,
        "n_permutations": n_permutations,
        "n_permutations_drawn": result.n_permutations,
        "n_bins": n_bins,
        "min_spots": min_spots,
        "alpha": alpha,
        "seed": seed,
        "entropy": fractions_key or "none (H = 1)",
        "n_background_strata": background.n_strata,
        "mean_neighbours": float(graph.sum() / max(graph.shape[0], 1)),
    }
    return lrdata


def _entropy_weights(adata: AnnData, fractions_key: str | None, sample) -> np.ndarray:
    if fractions_key is None:
        return np.ones(adata.n_obs, dtype=np.float32)
    if fractions_key not in adata.obsm:
        raise InputError(
            f"obsm has no cell-type fractions {fractions_key!r} (rule c2l_map writes "
            "'cell_type_fractions').",
            sample=sample,
            field="fractions_key",
        )
    return cell_type_entropy(adata.obsm[fractions_key]).astype(np.float32)


def _score_all(
    columns: _SqrtColumns,
    graph: sparse.csr_matrix,
    h: np.ndarray,
    domains: _Domains,
    pairs: _Pairs,
    background: _Background,
    expected: _Expected,
    alpha: float,
    min_spots: int,
    n_permutations: int,
    rng: np.random.Generator,
) -> _Result:
    """Scores, spot-level p-values and per-domain sums, one chunk of spots at a time."""
    n_spots, n_pairs = graph.shape[0], len(pairs.table)
    codes, n_dom = domains.codes, len(domains.names)
    onehot = _onehot(codes, n_dom)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    mean_op = (sparse.diags(inverse) @ graph).tocsr()
    # Neighbour sums over one receiving domain at a time, for the domain x domain summary.
    by_receiver = [graph @ sparse.diags((codes == d).astype(np.float32)) for d in range(n_dom)]
    by_receiver = [m.tocsr() for m in by_receiver]
    # The same with each edge i -> j weighted by H_j (sum_j sqrt(X_j) H_j without a weighted
    # copy of the data); none when every H is 1 (the unweighted sums serve).
    by_receiver_h = None
    if not np.all(h == 1):
        by_receiver_h = [(m @ sparse.diags(h)).tocsr() for m in by_receiver]
    n_ent = columns.entities.shape[1]
    n_columns = n_ent + columns.genes.shape[1]

    obs_sum = np.zeros((n_dom, n_pairs))
    background_sum = np.zeros((n_dom, len(background.ligand)))
    edge_sum = np.zeros((n_dom, n_dom, n_pairs))
    background_edge_sum = np.zeros((n_dom, n_dom, len(background.ligand)))
    # The spot level as CSR pieces (spots x pairs, entries where the score is > 0): per chunk
    # the scores, their pair (column) and how many background scores reach each (p's numerator).
    spot_level = _SpotLevel(n_pairs, background.n)
    step = _chunk_rows(max(n_pairs, len(background.ligand), n_columns), n_spots)
    for start in range(0, n_spots, step):
        rows = slice(start, min(start + step, n_spots))
        n_rows = rows.stop - rows.start
        sqrt_expr = columns.rows_t(rows)  # columns x spots
        neighbour_mean = columns.product_t(mean_op[rows])
        obs = _scores(
            sqrt_expr, neighbour_mean, h[rows], pairs.ligand, pairs.receptor
        )  # pairs x spots
        background_scores = _scores(
            sqrt_expr, neighbour_mean, h[rows], background.ligand, background.receptor
        )
        # float64 one-hot: the domain sums that p-values compare accumulate in float64.
        dom = np.eye(n_dom, dtype=np.float64)[codes[rows]]  # spots x domains
        obs_sum += (obs @ dom).T
        background_sum += (background_scores @ dom).T

        # Spot level: each non-zero score against its stratum's background at the same spot.
        spot, pair = np.nonzero(obs.T)  # spot-major: the order of CSR entries
        value = obs[pair, spot]
        background_scores = np.sort(
            background_scores.reshape(background.n_strata, background.n, n_rows), axis=1
        )
        count = _count_at_least(background_scores, background.pair_stratum[pair], spot, value)
        spot_level.add(value, pair, count, np.bincount(spot, minlength=n_rows))

        # Domain x domain: ligand at i (sender domain), receptor at neighbour j (receiver).
        # Only spots with a neighbour in the receiving domain contribute: mostly that domain's
        # own spots, plus the boundary, so the work is about one pass, not one per domain.
        # The background needs only the boundary (edges between two domains): inside a domain
        # the per-domain test above applies.
        sqrt_h = sqrt_expr * h[rows]
        for d in range(n_dom):
            link = by_receiver[d][rows]
            link_h = None if by_receiver_h is None else by_receiver_h[d][rows]
            sel = np.flatnonzero(np.diff(link.indptr))
            edge_sum[:, d, :] += _edge_sums(
                (link[sel], None if link_h is None else link_h[sel]),
                columns,
                sqrt_expr[:n_ent, sel],
                sqrt_h[:n_ent, sel],
                pairs,
                dom[sel],
                entities_only=True,
            ).T
            cross = sel[codes[rows][sel] != d]
            background_edge_sum[:, d, :] += _edge_sums(
                (link[cross], None if link_h is None else link_h[cross]),
                columns,
                sqrt_expr[:, cross],
                sqrt_h[:, cross],
                background,
                dom[cross],
            ).T

    scores, count = spot_level.matrix(n_spots)
    # Spot level: p = (1 + count) / (n + 1). BH over every spot and pair at once (a zero score
    # is p = 1): one family, so that a spot counted significant is one after correcting for
    # every test of the layer. p takes only n + 1 values, so BH runs on their histogram: the
    # same adjusted values as sorting every p, without holding sorted copies of them all.
    p_of_count = ((1.0 + np.arange(background.n + 1)) / (background.n + 1.0)).astype(np.float32)
    padj_of_count = _bh_of_histogram(p_of_count, spot_level.histogram, n_spots * n_pairs)
    significant = padj_of_count < alpha
    nonzero, passing = _per_domain_counts(scores, count, significant, codes, n_dom)
    counts = _Counts(
        np.bincount(codes, minlength=n_dom).astype(float),
        obs_sum,
        background_sum,
        nonzero.astype(float),
        passing,
    )
    n_edges = (onehot @ graph @ onehot.T).toarray()
    permutation = permutation_setup(
        columns.entities,
        mean_op,
        graph,
        h,
        codes,
        n_dom,
        domains.labelled,
        pairs.ligand,
        pairs.receptor,
        boundary_tested=(n_edges >= MIN_EDGES) & ~np.eye(n_dom, dtype=bool),
        min_spots=min_spots,
        n_permutations=n_permutations,
        rng=rng,
    )
    return _Result(
        scores,
        _neglog10_layer(scores, count, p_of_count),
        _neglog10_layer(scores, count, padj_of_count.astype(np.float32)),
        _domain_table(pairs, domains, counts, background, expected, permutation),
        _domain_pairs_table(
            pairs,
            domains,
            edge_sum,
            background_edge_sum,
            n_edges,
            background,
            expected,
            permutation,
        ),
        permutation.n_permutations,
    )


def _edge_sums(links, columns, sqrt_expr, sqrt_h, pairs, dom, *, entities_only=False):
    """Per pair and sender domain: the sum over directed edges i -> j (``i`` the rows of the
    links, ``j`` their columns) of ``sqrt(L_i R_j) (H_i + H_j) / 2``.

    ``links`` are the edges unweighted and weighted by ``H_j`` (``None``: every H is 1);
    ``sqrt_expr``/``sqrt_h`` are sqrt-expression (times H) of the rows, columns x spots;
    ``pairs`` has ``ligand`` and ``receptor`` column indices; ``dom`` is the rows' one-hot
    domains.
    """
    link, link_h = links
    if not link.shape[0]:
        return np.zeros((len(pairs.ligand), dom.shape[1]))
    n1 = columns.product_t(link, entities_only=entities_only)  # sum_j sqrt(X_j)
    n2 = n1 if link_h is None else columns.product_t(link_h, entities_only=entities_only)
    edge = np.take(sqrt_h, pairs.ligand, axis=0) * np.take(n1, pairs.receptor, axis=0)
    edge += np.take(sqrt_expr, pairs.ligand, axis=0) * np.take(n2, pairs.receptor, axis=0)
    return 0.5 * (edge @ dom)


class _SpotLevel:
    """The spot-level entries gathered over the chunks of spots: CSR pieces (score, pair, spots'
    entry counts) and, aligned with them, how many background scores reach each score."""

    def __init__(self, n_pairs: int, n_background: int):
        self.n_pairs = n_pairs
        self.count_dtype = np.min_scalar_type(n_background)
        self.histogram = np.zeros(n_background + 1, dtype=np.int64)  # of the counts
        self.scores: list[np.ndarray] = []
        self.pairs: list[np.ndarray] = []  # column of each score
        self.counts: list[np.ndarray] = []
        self.per_spot: list[np.ndarray] = []  # entries of each spot (row)

    def add(self, value, pair, count, per_spot) -> None:
        self.histogram += np.bincount(count, minlength=len(self.histogram))
        self.scores.append(value)
        self.pairs.append(pair.astype(np.int32))
        self.counts.append(count.astype(self.count_dtype))
        self.per_spot.append(per_spot)

    def matrix(self, n_spots: int) -> tuple[sparse.csr_matrix, np.ndarray]:
        """(scores, spots x pairs CSR; the counts aligned with its entries), the pieces freed
        one array at a time."""
        value, count = _concatenate(self.scores), _concatenate(self.counts)
        index = np.int32 if len(value) < 2**31 else np.int64
        pair = _concatenate(self.pairs).astype(index, copy=False)
        indptr = np.r_[0, np.cumsum(_concatenate(self.per_spot))].astype(index)
        return sparse.csr_matrix((value, pair, indptr), shape=(n_spots, self.n_pairs)), count


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """The parts joined; the list emptied, so that each part is freed once copied."""
    out = np.concatenate(parts)
    parts.clear()
    return out


def _bh_of_histogram(values: np.ndarray, histogram: np.ndarray, n_tests: int) -> np.ndarray:
    """Benjamini-Hochberg adjusted value of each of a few sorted p-``values`` that
    ``histogram`` counts (``n_tests`` tests in all; the untested are p = 1): the step-up
    ``min over p' >= p of p' * n_tests / rank(p')``, ties ranked together, as a full sort
    would give."""
    rank = np.cumsum(histogram)
    q = np.full(len(values), np.inf)
    np.divide(values * float(n_tests), rank, out=q, where=rank > 0)
    return np.minimum(np.minimum.accumulate(q[::-1])[::-1], 1.0)


def _per_domain_counts(
    scores: sparse.csr_matrix,
    count: np.ndarray,
    significant: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(domains, pairs): stored scores (> 0), and those whose ``count`` is ``significant``; a
    block of spots at a time, so no per-entry index array is held whole."""
    n_spots, n_pairs = scores.shape
    nonzero = np.zeros(n_dom * n_pairs, dtype=np.int64)
    passing = np.zeros(n_dom * n_pairs, dtype=np.int64)
    step = _chunk_rows(n_pairs, n_spots)
    for start in range(0, n_spots, step):
        stop = min(start + step, n_spots)
        lo, hi = scores.indptr[start], scores.indptr[stop]
        domain = np.repeat(codes[start:stop], np.diff(scores.indptr[start : stop + 1]))
        flat = domain * n_pairs + scores.indices[lo:hi]
        nonzero += np.bincount(flat, minlength=n_dom * n_pairs)
        passing += np.bincount(flat[significant[count[lo:hi]]], minlength=n_dom * n_pairs)
    return nonzero.reshape(n_dom, n_pairs), passing.reshape(n_dom, n_pairs)


def _neglog10_layer(
    scores: sparse.csr_matrix, count: np.ndarray, p_of_count: np.ndarray
) -> sparse.csr_matrix:
    """``-log10 p`` of each score (p looked up by its ``count``), without the entries whose p is
    1 (absent entries are 0, p = 1, as where the score is 0). Shares the scores' index arrays
    when every entry stays."""
    values = (-np.log10(p_of_count))[count]
    keep = values > 0
    if keep.all():
        return sparse.csr_matrix((values, scores.indices, scores.indptr), shape=scores.shape)
    kept = np.r_[0, np.cumsum(keep, dtype=scores.indptr.dtype)]
    return sparse.csr_matrix(
        (values[keep], scores.indices[keep], kept[scores.indptr]), shape=scores.shape
    )
