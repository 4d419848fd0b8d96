"""Moran's I for every gene at once, on a sparse spatial neighbour graph.

For a gene with values ``x`` centred to ``z = x - mean(x)`` and a spatial weight matrix ``W``::

    I = (n / S0) * (z' W z) / (z' z),        S0 = sum of all weights.

``W`` is row-standardised (each spot's weights sum to 1, as squidpy's ``transformation=True``),
so ``S0`` is the number of spots with at least one neighbour. ``W @ Z`` is a sparse-times-dense
product over a block of genes, so all genes cost a few passes over the graph's edges.

P-values use the normal approximation under the *normality* assumption (Cliff and Ord 1981, as
pysal/esda and squidpy's analytic ``pval_norm``): under no spatial autocorrelation ``I`` is
about normal with mean ``-1 / (n - 1)`` and a variance that depends only on the graph, hence is
the same for every gene. The test is one-sided (positive autocorrelation: neighbours alike).
It is accurate for the thousands of spots of a section; for genes detected in only a handful
of spots the distribution of ``I`` is skewed and the p-value is only a rough guide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse, stats
from scipy.spatial import cKDTree
from statsmodels.stats.multitest import multipletests

from .._errors import InputError
from .._sections import sections
from ..pp._image import grid_lattice, lattice_edges

# Dense float64 values held per block of genes in Moran's I (about 160 MB).
_BLOCK_ELEMENTS = 20_000_000


# Relative tolerance under which two neighbour distances count as equal (a lattice's ties).
_TIE_RTOL = 1e-6
# Extra neighbours looked at beyond the k-th, to find those tied with it (a square lattice's
# second ring has four).
_TIE_LOOKAHEAD = 8


def spatial_knn_graph(
    adata: AnnData, *, n_neighbors: int = 6, batch_key: str | None = None
) -> sparse.csr_matrix:
    """Row-standardised spatial neighbour graph that follows the grid.

    Spots on a grid (integer ``obs["array_row"]``/``obs["array_col"]``) are linked to their
    grid neighbours: the six around a Visium spot, the four edge neighbours of a square bin
    (as SpaSEG's continuity loss), and spots at the same grid point to each other. Other
    spots (``obsm["spatial"]`` only: Slide-seq, cells) are linked to their ``n_neighbors``
    nearest spots and to every spot tied with the farthest of them (within a relative
    ``1e-6``), so that lattice-like coordinates do not leave the choice among equally near
    spots to their order. Either way, reordering, rotating or shifting a section gives the
    same graph.

    Parameters
    ----------
    adata
        Spots with ``obs["array_row"]``/``obs["array_col"]`` on a grid, or ``obsm["spatial"]``.
    n_neighbors
        Neighbours per spot off a grid, before ties (fewer in a section with fewer spots).
    batch_key
        ``obs`` column naming each spot's section (e.g. ``"sample"`` for a group's joint data):
        the neighbours of a spot are searched among the spots of its own section only, so no
        edge ever links two sections, even where their coordinates overlap (as serial
        sections' do). Each section's block equals the graph of that section alone.
        ``None``: one section.

    Returns
    -------
    ``(n_spots, n_spots)`` CSR matrix; row ``i`` holds ``1 / k_i`` at the ``k_i`` neighbours of
    spot ``i`` (a row of zeros for a spot without neighbours).
    """
    if n_neighbors < 1:
        raise InputError(f"must be at least 1, got {n_neighbors!r}", field="n_neighbors")
    rows, cols = [], []
    for members in _sections(adata, batch_key):
        section = adata if batch_key is None else adata[members]
        on_grid = grid_lattice(section)
        if on_grid is not None:
            row, col = _grid_neighbours(*on_grid)
        else:
            if "spatial" not in adata.obsm:
                raise InputError(
                    "no coordinates to build the spatial graph from.", field="obsm['spatial']"
                )
            xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[members, :2]
            row, col = _neighbours_with_ties(xy, n_neighbors)
        rows.append(members[row])
        cols.append(members[col])
    n = adata.n_obs
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return row_standardise(graph)


def _grid_neighbours(lattice: np.ndarray, grid: str) -> tuple[np.ndarray, np.ndarray]:
    """Edges (spot, neighbour) between spots at neighbouring or equal grid points."""
    points, point_of = np.unique(lattice, axis=0, return_inverse=True)
    n_spots, n_points = len(lattice), len(points)
    pairs = lattice_edges(points, grid)
    between = sparse.coo_matrix(
        (
            np.ones(2 * len(pairs)),
            (np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]),
        ),
        shape=(n_points, n_points),
    )
    at = sparse.csr_matrix(
        (np.ones(n_spots), (np.arange(n_spots), point_of.ravel())), shape=(n_spots, n_points)
    )
    linked = at @ (between + sparse.identity(n_points)) @ at.T  # includes each spot itself
    linked.setdiag(0)
    linked.eliminate_zeros()
    linked = linked.tocoo()
    return linked.row.astype(np.int64), linked.col.astype(np.int64)


def _neighbours_with_ties(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (spot, neighbour) to the ``k`` nearest other spots and all tied with the k-th."""
    n = len(xy)
    k = min(k, n - 1)
    if k < 1:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    m = min(k + 1 + _TIE_LOOKAHEAD, n)
    dist, nearest = cKDTree(xy).query(xy, k=m)
    # Drop each spot itself (not always first: spots may share coordinates) by index.
    own = nearest == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True  # m duplicates of a point: drop the farthest instead
    dist = dist[~own].reshape(n, m - 1)
    nearest = nearest[~own].reshape(n, m - 1)
    kth = dist[:, k - 1 : k]
    keep = dist <= kth + _TIE_RTOL * np.maximum(kth, np.finfo(float).tiny)
    return np.nonzero(keep)[0], nearest[keep]


def _sections(adata: AnnData, batch_key: str | None) -> list[np.ndarray]:
    """Spot indices of each section."""
    return sections(adata, batch_key)[1]


def row_standardise(graph: sparse.spmatrix) -> sparse.csr_matrix:
    """Divide each row by its sum (rows without neighbours stay zero)."""
    graph = sparse.csr_matrix(graph, dtype=np.float64, copy=True)
    graph.eliminate_zeros()
    sums = np.asarray(graph.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
    return sparse.csr_matrix(sparse.diags(scale) @ graph)


def resolve_graph(
    adata: AnnData,
    spatial_graph: str | sparse.spmatrix | None,
    n_neighbors: int,
    batch_key: str | None,
) -> sparse.csr_matrix:
    """The row-standardised graph to use: built, taken from ``obsp``, or given.

    With ``batch_key``, a graph taken from ``obsp`` or given must not link spots of different
    sections (:class:`InputError` otherwise).
    """
    if spatial_graph is None:
        return spatial_knn_graph(adata, n_neighbors=n_neighbors, batch_key=batch_key)
    if isinstance(spatial_graph, str):
        if spatial_graph not in adata.obsp:
            raise InputError(
                f"obsp has no graph {spatial_graph!r} (squidpy.gr.spatial_neighbors writes "
                "'spatial_connectivities').",
                field="spatial_graph",
            )
        spatial_graph = adata.obsp[spatial_graph]
    if not sparse.issparse(spatial_graph) and not isinstance(spatial_graph, np.ndarray):
        raise InputError("must be an obsp key or a spots x spots matrix.", field="spatial_graph")
    if spatial_graph.shape != (adata.n_obs, adata.n_obs):
        raise InputError(
            f"graph is {spatial_graph.shape}, expected {(adata.n_obs, adata.n_obs)}.",
            field="spatial_graph",
        )
    graph = row_standardise(spatial_graph)
    if batch_key is not None:
        _check_within_sections(adata, graph, batch_key)
    return graph


def _check_within_sections(adata: AnnData, graph: sparse.csr_matrix, batch_key: str) -> None:
    sections = _sections(adata, batch_key)
    section_of = np.empty(adata.n_obs, dtype=np.int64)
    for k, members in enumerate(sections):
        section_of[members] = k
    rows, cols = graph.nonzero()
    crossing = int((section_of[rows] != section_of[cols]).sum())
    if crossing:
        raise InputError(
            f"the spatial graph links spots of different sections ({crossing} edges) while "
            f"obs[{batch_key!r}] names the sections; leave spatial_graph=None to build one per "
            "section, or build it with spaseg.tl.spatial_knn_graph(adata, batch_key=...).",
            field="spatial_graph",
        )


def morans_i(
    adata: AnnData,
    *,
    layer: str | None = None,
    spatial_graph: str | sparse.spmatrix | None = None,
    n_neighbors: int = 6,
    batch_key: str | None = None,
) -> pd.DataFrame:
    """Moran's I of every gene, with one-sided analytic p-values and Benjamini-Hochberg FDR.

    Parameters
    ----------
    adata
        Spots x genes; log-normalised expression in ``X`` (or ``layer``).
    layer
        Layer to use instead of ``X``.
    spatial_graph
        ``None``: a graph that follows the grid (:func:`spatial_knn_graph`); a key of ``obsp`` (e.g. squidpy's
        ``"spatial_connectivities"``); or a spots x spots matrix. Always row-standardised.
    n_neighbors
        Neighbours per spot of the built graph.
    batch_key
        ``obs`` column of sections (a group's joint data): spots are only linked within their
        section (a given ``spatial_graph`` must not link sections), and each gene is centred
        per section, so differences between sections do not count as spatial autocorrelation.

    Returns
    -------
    DataFrame indexed by gene with ``morans_i``, ``morans_pval``, ``morans_padj``. Genes
    constant within every section get NaN and are left out of the FDR correction.

    Notes
    -----
    ``I = (n / S0) * (z' W z) / (z' z)`` on the row-standardised graph ``W``; the p-value is
    ``P(N(0, 1) > (I - E[I]) / sd(I))`` with ``E[I] = -1 / (n - 1)`` and the variance of
    Cliff and Ord under normality. With sections the statistic pools them (per-section
    centring); its null mean and variance are approximated by the same formulas on the
    block-diagonal graph.
    """
    values = _matrix(adata, layer)
    graph = resolve_graph(adata, spatial_graph, n_neighbors, batch_key)
    sections = _sections(adata, batch_key)
    return morans_table(sparse.csc_matrix(values), graph, sections, adata.var_names)


def _matrix(adata: AnnData, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise InputError(f"no layer {layer!r}.", field="layer")
    return adata.layers[layer]


def morans_table(
    values: sparse.csc_matrix,
    graph: sparse.csr_matrix,
    sections: list[np.ndarray],
    genes: pd.Index,
) -> pd.DataFrame:
    """Moran's I, p-values and FDR of the columns of ``values`` (spots x genes)."""
    if graph.nnz == 0:
        raise InputError("the spatial graph has no edges: no spot has a neighbour.")
    stat = morans_statistic(values, graph, sections)
    pval = np.full(stat.shape, np.nan)
    ok = np.isfinite(stat)
    expected, sd = morans_null(graph)
    pval[ok] = stats.norm.sf((stat[ok] - expected) / sd)
    return pd.DataFrame(
        {"morans_i": stat, "morans_pval": pval, "morans_padj": bh_adjust(pval)},
        index=pd.Index(genes, name="gene"),
    )


def morans_statistic(
    values: sparse.csc_matrix, graph: sparse.csr_matrix, sections: list[np.ndarray]
) -> np.ndarray:
    """``I`` for every column, block by block of dense, centred columns."""
    n, n_genes = values.shape
    s0 = graph.sum()
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    num, den, raw = np.empty(n_genes), np.empty(n_genes), np.empty(n_genes)
    for start in range(0, n_genes, block):
        genes = slice(start, min(start + block, n_genes))
        z = values[:, genes].toarray().astype(np.float64, copy=False)
        raw[genes] = np.einsum("ij,ij->j", z, z)
        for members in sections:
            z[members] -= z[members].mean(axis=0)
        num[genes] = np.einsum("ij,ij->j", z, graph @ z)
        den[genes] = np.einsum("ij,ij->j", z, z)
    # A column constant within each section leaves only rounding error after centring.
    constant = den <= 1e-12 * raw
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (n / s0) * num / den
    stat[constant] = np.nan
    return stat


def morans_null(graph: sparse.csr_matrix) -> tuple[float, float]:
    """Mean and standard deviation of ``I`` without autocorrelation (normality assumption)."""
    n = graph.shape[0]
    s0 = graph.sum()
    sym = graph + graph.T
    s1 = sym.multiply(sym).sum() / 2.0
    s2 = float(np.square(np.asarray(graph.sum(axis=1) + graph.sum(axis=0).T)).sum())
    expected = -1.0 / (n - 1)
    variance = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n - 1) * (n + 1) * s0 * s0)
    return expected, float(np.sqrt(variance - expected**2))


def bh_adjust(pval: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN (untestable) entries stay NaN and are not
    counted as tests."""
    padj = np.full(pval.shape, np.nan)
    ok = np.isfinite(pval)
    if ok.any():
        padj[ok] = multipletests(pval[ok], method="fdr_bh")[1]
    return padj
