"""Ligand-receptor (L-R) scores between neighbouring spots, with significance.

SpaSEG's score for a pair (L, R) at spot i, over its neighbours j in N(i)::

    s1_i = mean_j sqrt(L_i R_j),   s2_i = mean_j sqrt(R_i L_j),   score_i = (s1_i + s2_i) / 2 * H_i

with ``H_i`` the base-2 Shannon entropy of the spot's cell-type fractions (1 without them).
Since ``sqrt(L_i R_j) = sqrt(L_i) sqrt(R_j)``, with ``S = sqrt(expression)`` and ``W`` the
row-normalised neighbour graph, ``s1 = S_L * (W S)_R`` and ``s2 = S_R * (W S)_L``: one sparse
product ``W @ S`` serves every ligand and receptor, then each pair is two column gathers and
element-wise products. Spots are processed in chunks so that memory stays bounded.

Significance follows the reference: a pair is compared with random gene pairs whose ligand and
receptor sit in the same expression bins (quantiles of mean sqrt-expression) as its own. All
pairs of one (ligand bin, receptor bin) cell share one background of ``n_background`` random
pairs, so the cost grows with the number of occupied cells, not of pairs. Spot level: empirical
p of the score against the background's scores at that spot; BH over every spot and pair at
once (one family: with a few hundred draws only pairs strong in many spots survive it).
Domain level: the domain's mean score against the background pairs' domain means (``"all"``:
the whole section); across domains: the mean over neighbour edges from one domain (ligand) into
another (receptor) against the background pairs' same means, computed on the boundary spots
only. Both are empirical where at least 10 background pairs reach the statistic and from a
generalised Pareto fit to the background's tail beyond (``_tail``), so p-values far below
``1 / (n_background + 1)`` are reachable; BH runs over every pair and domain of a table at once.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.spatial import cKDTree

from .._errors import InputError
from ..pp._image import spot_image
from ._moran import bh_adjust
from ._tail import tail_pvalues

log = logging.getLogger("spaseg")

ComplexPolicy = Literal["min", "gmean"]
ALL = "all"  # the domain label of whole-section summaries
# Dense working arrays per chunk of spots (float32 entries): bounds memory at ~100 MB each.
_CHUNK_ENTRIES = 10_000_000
PAIR_COLUMNS = [
    "pair", "ligand", "receptor", "domain", "n_spots", "mean_score", "zscore", "pval", "padj",
    "frac_spots_significant",
]  # fmt: skip


# --- resource -----------------------------------------------------------------------------------


def _liana_table() -> Path:
    """The resource table inside the installed ``liana`` package (found without importing it)."""
    spec = importlib.util.find_spec("liana")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the L-R resources ship with the liana package, which is not installed: "
            "pip install 'spaseg[cci]', or give a CSV with columns ligand and receptor.",
            field="resource",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resource" / "omni_resource.csv"
    if not path.is_file():
        raise InputError(f"liana's resource table is missing: {path}", field="resource")
    return path


def load_resource(
    resource: str | PathLike | pd.DataFrame = "consensus",
    *,
    organism: Literal["human", "mouse"] = "human",
) -> pd.DataFrame:
    """Ligand-receptor pairs: a table shipped with ``liana``, a CSV/TSV file, or a data frame.

    Parameters
    ----------
    resource
        A liana resource name (``"consensus"``, ``"cellphonedb"``, ``"cellchatdb"``, ...), read
        offline from the installed package; a path to a CSV/TSV file; or a data frame. Files and
        frames need columns ``ligand`` and ``receptor``; complexes join subunits with ``_``.
    organism
        ``"mouse"`` turns ``"consensus"`` into liana's ``"mouseconsensus"`` (mouse orthologues).
        Other tables are human; genes are matched case-insensitively (see :func:`lr_scores`).

    Returns
    -------
    Data frame with columns ``ligand`` and ``receptor``, without duplicates.
    """
    if organism not in ("human", "mouse"):
        raise InputError(f"must be 'human' or 'mouse', not {organism!r}.", field="organism")
    file = None
    if isinstance(resource, pd.DataFrame):
        table = resource
    elif Path(resource).suffix.lower() in (".csv", ".tsv", ".txt") or Path(resource).is_file():
        file = Path(resource)
        if not file.is_file():
            raise InputError("resource file not found.", file=file, field="resource")
        table = pd.read_csv(file, sep=None, engine="python", dtype=str)
    else:
        name = str(resource).lower()
        if organism == "mouse" and name == "consensus":
            name = "mouseconsensus"
        omni = pd.read_csv(_liana_table(), index_col=False, dtype=str)
        if name not in set(omni["resource"]):
            known = ", ".join(sorted(set(omni["resource"])))
            raise InputError(
                f"unknown L-R resource {resource!r}; liana ships: {known}; or give a CSV path.",
                field="resource",
            )
        table = omni.loc[omni["resource"] == name, ["source_genesymbol", "target_genesymbol"]]
        table.columns = ["ligand", "receptor"]
    missing = {"ligand", "receptor"} - set(table.columns)
    if missing:
        raise InputError(
            f"needs columns ligand and receptor; missing {sorted(missing)} "
            f"(columns found: {', '.join(map(str, table.columns))}).",
            file=file,
            field="resource",
        )
    table = table[["ligand", "receptor"]].dropna().astype(str)
    table = table.apply(lambda col: col.str.strip())
    return table.drop_duplicates().reset_index(drop=True)


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


# --- matching the resource to the data ---------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    """Resource pairs found in the data, as indices into a list of entities (genes or complexes)."""

    table: pd.DataFrame  # ligand, receptor, ligand_genes, receptor_genes
    ligand: np.ndarray  # entity index per pair
    receptor: np.ndarray
    entities: list[np.ndarray]  # gene (column) indices of each entity's subunits


def _data_symbols(adata: AnnData, gene_symbols: str | None) -> pd.Index:
    """Upper-case symbol of each gene: ``var[gene_symbols]`` (or ``var["gene_symbols"]``)."""
    if gene_symbols is not None and gene_symbols not in adata.var:
        raise InputError(f"var has no column {gene_symbols!r}.", field="gene_symbols")
    key = gene_symbols or ("gene_symbols" if "gene_symbols" in adata.var else None)
    names = pd.Series(adata.var_names, index=adata.var_names)
    if key is not None:
        names = adata.var[key].astype(object).where(adata.var[key].notna(), names)
    return pd.Index(names.astype(str).str.upper())


def _match(resource: pd.DataFrame, symbols: pd.Index) -> _Pairs:
    """Entities (genes or ``_``-joined complexes) of each pair, as gene indices of the data."""
    position: dict[str, int] = {}
    for k, name in enumerate(symbols):
        position.setdefault(name, k)  # the first gene of a repeated symbol
    table = resource.copy()
    table["ligand"] = table["ligand"].str.upper()
    table["receptor"] = table["receptor"].str.upper()
    table = table.drop_duplicates(["ligand", "receptor"]).reset_index(drop=True)

    names = pd.Index(pd.unique(table[["ligand", "receptor"]].to_numpy().ravel()))
    subunits = [name.split("_") for name in names]
    found = np.array([all(s in position for s in subs) for subs in subunits])
    ok = table["ligand"].isin(names[found]) & table["receptor"].isin(names[found])
    if not ok.any():
        example = ", ".join(list(symbols[:3]))
        raise InputError(
            f"none of the {len(table)} pairs of the L-R resource has all its genes in the data "
            f"(data genes look like {example}). Gene symbols are read from var['gene_symbols'] "
            "when present, else var_names; for mouse data use organism 'mouse'.",
            field="resource",
        )
    if not ok.all():
        missing = sorted(set(names[~found]) & set(table.loc[~ok, ["ligand", "receptor"]].stack()))
        log.warning(
            "L-R resource: %d of %d pairs skipped, genes missing from the data (e.g. %s)",
            int((~ok).sum()),
            len(table),
            ", ".join(missing[:5]),
        )
    table = table[ok].reset_index(drop=True)
    kept = pd.Index(pd.unique(table[["ligand", "receptor"]].to_numpy().ravel()))
    entities = [np.array([position[s] for s in name.split("_")]) for name in kept]
    gene_names = np.array(["_".join(symbols[e]) for e in entities], dtype=object)
    index = pd.Series(np.arange(len(kept)), index=kept)
    ligand, receptor = index[table["ligand"]].to_numpy(), index[table["receptor"]].to_numpy()
    table["ligand_genes"], table["receptor_genes"] = gene_names[ligand], gene_names[receptor]
    return _Pairs(table, ligand, receptor, entities)


def _entity_expression(
    x: sparse.csc_matrix, entities: list[np.ndarray], policy: ComplexPolicy
) -> sparse.csc_matrix:
    """Spots x entities: a gene's expression, or a complex's minimum / geometric mean.

    Both are zero wherever a subunit is zero, so the geometric mean is computed on the support
    of the minimum only. Loops run over subunit positions (a handful), not over entities.
    """
    if policy not in ("min", "gmean"):
        raise InputError(f"must be 'min' or 'gmean', not {policy!r}.", field="complex_policy")
    size = np.array([len(e) for e in entities])
    padded = np.array([np.resize(e, size.max()) for e in entities])  # repeat subunits to pad
    out = x[:, padded[:, 0]]
    for k in range(1, padded.shape[1]):
        out = out.minimum(x[:, padded[:, k]])
    out = out.tocsc()
    out.eliminate_zeros()
    if policy == "gmean" and (size > 1).any():
        coo = out.tocoo()
        xr = x.tocsr()
        logs = np.zeros(coo.nnz)
        for k in range(padded.shape[1]):
            real = k < size[coo.col]  # padding positions do not count
            values = np.asarray(xr[coo.row[real], padded[coo.col[real], k]]).ravel()
            logs[real] += np.log(values)
        coo.data = np.exp(logs / size[coo.col]).astype(out.dtype)
        out = coo.tocsc()
    return out


# --- the scores and their background -------------------------------------------------------------


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
    background: np.ndarray, cell: np.ndarray, spot: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """How many of the background scores of (``cell``, ``spot``) are >= ``value``.

    ``background`` is ``(n_cells, n, n_spots)``, sorted along axis 1. A background score
    within a relative ``TIE_RTOL`` below ``value`` counts as a tie, hence as >=. A binary
    search per query, vectorised over all queries: ``log2(n)`` rounds of one gather each.
    """
    _, n, n_spots = background.shape
    flat = background.reshape(-1)
    value = np.asarray(value, dtype=np.float64)
    value = value - TIE_RTOL * np.abs(value)
    base = cell.astype(np.int64) * (n * n_spots) + spot
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

    pair_cell: np.ndarray  # cell of each resource pair
    ligand: np.ndarray  # (n_cells * n,) gene of each background ligand (then: its column)
    receptor: np.ndarray
    n: int

    @property
    def n_cells(self) -> int:
        return len(self.ligand) // self.n


def _draw_background(
    entity_bin: np.ndarray,
    pools: list[np.ndarray],
    pairs: _Pairs,
    n: int,
    rng: np.random.Generator,
) -> _Background:
    """``n`` random gene pairs (gene indices) per occupied (ligand bin, receptor bin) cell."""
    cells, pair_cell = np.unique(
        np.column_stack([entity_bin[pairs.ligand], entity_bin[pairs.receptor]]),
        axis=0,
        return_inverse=True,
    )
    ligand = np.concatenate([rng.choice(pools[a], n) for a in cells[:, 0]])
    receptor = np.concatenate([rng.choice(pools[b], n) for b in cells[:, 1]])
    return _Background(pair_cell.ravel(), ligand, receptor, n)


def _scores(s: np.ndarray, nb: np.ndarray, h: np.ndarray, lig, rec) -> np.ndarray:
    """Dense scores, pairs x spots, from ``s`` (sqrt-expression) and ``nb`` (its neighbour
    means), both columns x spots: row gathers are contiguous copies, far faster than gathering
    columns of a spots x columns array."""
    out = np.take(s, lig, axis=0) * np.take(nb, rec, axis=0)
    out += np.take(s, rec, axis=0) * np.take(nb, lig, axis=0)
    out *= 0.5 * h
    return out


def _dense_t(m: sparse.spmatrix) -> np.ndarray:
    """``m.T`` as a C-contiguous dense array."""
    return m.T.tocsr().toarray()


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
        missing there fall back to ``var_names``), else ``var_names``.
    complex_policy
        Expression of a complex: ``"min"`` of its subunits, or their geometric mean ``"gmean"``.
    rings, radius
        Neighbourhood, see :func:`neighbour_graph`.
    n_background
        Random expression-matched pairs per (ligand bin, receptor bin). Domain-level p-values
        beyond the draws come from a tail fitted to them (at least 60 draws; fewer: empirical
        only, at least ``1 / (n_background + 1)``); spot-level ones are empirical. The cost
        grows with it (100 is 5-10x faster than 1000).
    n_bins
        Expression bins (quantiles of the genes' mean sqrt-expression) for the matching.
    min_spots
        Pairs whose ligand or receptor is detected in fewer spots are left out.
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
      domain of the table), ``frac_spots_significant`` (spot ``padj < alpha``);
    - ``uns["lr_domain_pairs"]``: per pair, ``sender`` domain (ligand) and ``receiver`` domain
      (receptor): ``score``, the mean over directed neighbour edges of
      ``sqrt(L_i R_j) (H_i + H_j) / 2``, and ``n_edges``; across two domains also ``zscore``,
      ``pval`` and ``padj`` (BH over every pair and domain pair) against the background pairs' edge means
      (inside a domain these are NaN: the per-domain test of ``lr_pairs`` covers it; so are
      those of two domains joined by fewer than ``MIN_EDGES`` (10) edges);
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

    s_entity, s_genes = entity.sqrt(), x.sqrt()
    entity_bin, pools = _expression_bins(
        _col_means(s_entity), _col_means(s_genes), min(n_bins, s_genes.shape[1])
    )
    bg = _draw_background(entity_bin, pools, pairs, n_background, np.random.default_rng(seed))
    # One matrix of columns: the entities, then the genes the background drew.
    genes, bg_columns = np.unique(np.r_[bg.ligand, bg.receptor], return_inverse=True)
    bg.ligand, bg.receptor = np.split(bg_columns + s_entity.shape[1], 2)
    s_all = sparse.hstack([s_entity, s_genes[:, genes]]).tocsr()

    graph = neighbour_graph(adata, rings=rings, radius=radius)
    result = _score_all(s_all, graph, h, domains, pairs, bg, alpha)
    lrdata = _assemble(adata, pairs, entity_bin, domains, h, result)
    lrdata.uns["lr"] = {
        "resource": resource if isinstance(resource, str) else type(resource).__name__,
        "organism": organism,
        "complex_policy": complex_policy,
        "rings": rings,
        "radius": "none" if radius is None else radius,
        "n_background": n_background,
        "n_bins": n_bins,
        "min_spots": min_spots,
        "alpha": alpha,
        "seed": seed,
        "entropy": fractions_key or "none (H = 1)",
        "n_background_cells": bg.n_cells,
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


@dataclass(frozen=True)
class _Domains:
    codes: np.ndarray
    names: list[str]
    labelled: bool  # False: the whole section is one unlabelled domain


def _domains(adata: AnnData, domain_key: str | None, sample) -> _Domains:
    if domain_key is None:
        return _Domains(np.zeros(adata.n_obs, dtype=np.int64), [ALL], False)
    if domain_key not in adata.obs:
        raise InputError(f"obs has no column {domain_key!r}.", sample=sample, field="domain_key")
    labels = adata.obs[domain_key]
    if labels.isna().any():
        raise InputError("has missing values.", sample=sample, field=domain_key)
    labels = pd.Categorical(labels.astype(str))
    names = list(labels.categories)
    if ALL in names:
        raise InputError(
            f"{ALL!r} is reserved for the whole section.", sample=sample, field=domain_key
        )
    return _Domains(labels.codes.astype(np.int64), names, True)


def _col_means(m: sparse.spmatrix) -> np.ndarray:
    return np.asarray(m.mean(axis=0)).ravel()


def _subset_pairs(pairs: _Pairs, keep: np.ndarray) -> _Pairs:
    return _Pairs(
        pairs.table[keep].reset_index(drop=True),
        pairs.ligand[keep],
        pairs.receptor[keep],
        pairs.entities,
    )


def _reindex(pairs: _Pairs) -> _Pairs:
    """Renumber entities after dropping the unused ones (same order as ``np.unique``)."""
    used = np.unique(np.r_[pairs.ligand, pairs.receptor])
    new = np.full(len(pairs.entities), -1)
    new[used] = np.arange(len(used))
    return _Pairs(
        pairs.table, new[pairs.ligand], new[pairs.receptor], [pairs.entities[k] for k in used]
    )


@dataclass
class _Result:
    scores: sparse.csr_matrix
    neglog10_p: sparse.csr_matrix
    neglog10_padj: sparse.csr_matrix
    table: pd.DataFrame  # per pair and domain
    domain_pairs: pd.DataFrame


def _chunk_rows(width: int, n_spots: int) -> int:
    """Spots per chunk so that a dense chunk of ``width`` columns has ~``_CHUNK_ENTRIES``."""
    return int(np.clip(_CHUNK_ENTRIES // width, 64, max(n_spots, 64)))


def _score_all(
    s_all: sparse.csr_matrix,
    graph: sparse.csr_matrix,
    h: np.ndarray,
    domains: _Domains,
    pairs: _Pairs,
    bg: _Background,
    alpha: float,
) -> _Result:
    """Scores, spot-level p-values and per-domain sums, one chunk of spots at a time."""
    n_spots, n_pairs = s_all.shape[0], len(pairs.table)
    codes, n_dom = domains.codes, len(domains.names)
    onehot = sparse.csr_matrix((np.ones(n_spots), (codes, np.arange(n_spots))), (n_dom, n_spots))
    degree = np.asarray(graph.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    mean_op = (sparse.diags(inverse) @ graph).tocsr()
    # Neighbour sums over one receiving domain at a time, for the domain x domain summary.
    by_receiver = [graph @ sparse.diags((codes == d).astype(np.float32)) for d in range(n_dom)]
    by_receiver = [m.tocsr() for m in by_receiver]
    n_ent = int(max(pairs.ligand.max(), pairs.receptor.max())) + 1
    sh_all = sparse.csr_matrix(s_all.multiply(h[:, None]))
    s_ent, sh_ent = s_all[:, :n_ent], sh_all[:, :n_ent]

    obs_sum = np.zeros((n_dom, n_pairs))
    bg_sum = np.zeros((n_dom, len(bg.ligand)))
    edge_sum = np.zeros((n_dom, n_dom, n_pairs))
    bg_edge_sum = np.zeros((n_dom, n_dom, len(bg.ligand)))
    scores, pvals = [], []
    step = _chunk_rows(max(n_pairs, len(bg.ligand), s_all.shape[1]), n_spots)
    for start in range(0, n_spots, step):
        rows = slice(start, min(start + step, n_spots))
        n_rows = rows.stop - rows.start
        s = _dense_t(s_all[rows])  # columns x spots
        nb = _dense_t(mean_op[rows] @ s_all)
        obs = _scores(s, nb, h[rows], pairs.ligand, pairs.receptor)  # pairs x spots
        back = _scores(s, nb, h[rows], bg.ligand, bg.receptor)
        # float64 one-hot: the domain sums that p-values compare accumulate in float64.
        dom = np.eye(n_dom, dtype=np.float64)[codes[rows]]  # spots x domains
        obs_sum += (obs @ dom).T
        bg_sum += (back @ dom).T

        # Spot level: each non-zero score against its cell's background at the same spot.
        pair, spot = np.nonzero(obs)
        value = obs[pair, spot]
        back = np.sort(back.reshape(bg.n_cells, bg.n, n_rows), axis=1)
        count = _count_at_least(back, bg.pair_cell[pair], spot, value)
        p = ((1.0 + count) / (bg.n + 1.0)).astype(np.float32)
        for out, values in ((scores, value), (pvals, p)):
            out.append(sparse.csr_matrix((values, (spot, pair)), (n_rows, n_pairs)))

        # Domain x domain: ligand at i (sender domain), receptor at neighbour j (receiver).
        # Only spots with a neighbour in the receiving domain contribute: mostly that domain's
        # own spots, plus the boundary, so the work is about one pass, not one per domain.
        # The background needs only the boundary (edges between two domains): inside a domain
        # the per-domain test above applies.
        sh = s * h[rows]
        for d in range(n_dom):
            link = by_receiver[d][rows]
            sel = np.flatnonzero(np.diff(link.indptr))
            edge_sum[:, d, :] += _edge_sums(
                link[sel], s_ent, sh_ent, s[:n_ent, sel], sh[:n_ent, sel], pairs, dom[sel]
            ).T
            cross = sel[codes[rows][sel] != d]
            bg_edge_sum[:, d, :] += _edge_sums(
                link[cross], s_all, sh_all, s[:, cross], sh[:, cross], bg, dom[cross]
            ).T

    scores = sparse.vstack(scores, format="csr")
    pvals = sparse.vstack(pvals, format="csc")
    # BH over every spot and pair at once (a zero score is p = 1): one family, so that a spot
    # counted significant is one after correcting for every test of the layer.
    pair = np.repeat(np.arange(n_pairs), np.diff(pvals.indptr))
    padj = pvals.copy()
    family = np.zeros(pvals.nnz, dtype=np.int64)
    padj.data = _bh_grouped(pvals.data, family, n_spots * n_pairs).astype(np.float32)
    spot_domain = codes[pvals.indices] * n_pairs + pair
    n_flat = n_dom * n_pairs
    counts = _Counts(
        np.bincount(codes, minlength=n_dom).astype(float),
        obs_sum,
        bg_sum,
        np.bincount(spot_domain, minlength=n_flat).reshape(n_dom, n_pairs).astype(float),
        np.bincount(spot_domain[padj.data < alpha], minlength=n_flat).reshape(n_dom, n_pairs),
    )
    n_edges = (onehot @ graph @ onehot.T).toarray()
    return _Result(
        scores,
        _neglog10(pvals),
        _neglog10(padj),
        _domain_table(pairs, domains, counts, bg),
        _domain_pairs_table(pairs, domains, edge_sum, bg_edge_sum, n_edges, bg),
    )


def _edge_sums(link, s_all, sh_all, s, sh, pairs, dom) -> np.ndarray:
    """Per pair and sender domain: the sum over directed edges i -> j (``i`` the rows of
    ``link``, ``j`` its columns) of ``sqrt(L_i R_j) (H_i + H_j) / 2``.

    ``s``/``sh`` are sqrt-expression (times H) of the rows, columns x spots; ``pairs`` has
    ``ligand`` and ``receptor`` column indices; ``dom`` is the rows' one-hot domains.
    """
    if not link.shape[0]:
        return np.zeros((len(pairs.ligand), dom.shape[1]))
    n1 = _dense_t(link @ s_all)  # sum_j sqrt(X_j)
    n2 = _dense_t(link @ sh_all)  # sum_j sqrt(X_j) H_j
    edge = np.take(sh, pairs.ligand, axis=0) * np.take(n1, pairs.receptor, axis=0)
    edge += np.take(s, pairs.ligand, axis=0) * np.take(n2, pairs.receptor, axis=0)
    return 0.5 * (edge @ dom)


def _empirical(
    observed: np.ndarray, null: np.ndarray, pair_cell: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """P-values and z-scores of statistics against their background.

    ``observed`` is (groups, pairs), ``null`` (groups, cells * n): the same statistic of each
    background pair; a pair is compared with the ``n`` of its cell. Ties, within a relative
    ``TIE_RTOL`` (rounding of sums taken in another order), count as >=. Empirical p where at
    least ``MIN_EXCEED`` draws reach the statistic, else from a generalised Pareto fit to the
    background's tail (:mod:`spaseg.tl._tail`), so p can fall below ``1 / (n + 1)``.
    """
    n_groups, n_pairs = observed.shape
    null = np.sort(null.reshape(n_groups, -1, n), axis=2)
    ordered = np.ascontiguousarray(null.transpose(1, 2, 0))  # cells, n, groups
    group, pair = np.divmod(np.arange(n_groups * n_pairs), n_pairs)
    count = _count_at_least(ordered, pair_cell[pair], group, observed.ravel())
    n_cells = null.shape[1]
    pval = tail_pvalues(
        observed.ravel(), null.reshape(-1, n), group * n_cells + pair_cell[pair], count
    ).reshape(n_groups, n_pairs)
    centre = null.mean(axis=2)[:, pair_cell]
    spread = null.std(axis=2, ddof=1)[:, pair_cell] if n > 1 else np.zeros_like(observed)
    z = np.divide(observed - centre, spread, out=np.zeros_like(observed), where=spread > 0)
    return pval, z


def _neglog10(p: sparse.spmatrix) -> sparse.csr_matrix:
    """``-log10`` of the stored p-values; absent entries (p = 1) stay absent (0)."""
    out = sparse.csr_matrix(p, dtype=np.float32)
    out.data = -np.log10(out.data)
    out.eliminate_zeros()
    return out


@dataclass
class _Counts:
    """Per-domain sums gathered over the chunks (rows: domains)."""

    size: np.ndarray  # spots
    score: np.ndarray  # (domains, pairs) sum of scores
    background: np.ndarray  # (domains, cells * n) sum of background scores
    nonzero: np.ndarray  # (domains, pairs) spots with score > 0
    significant: np.ndarray  # (domains, pairs) spots with spot-level padj < alpha

    def with_total(self) -> _Counts:
        """Append the whole section as one more row."""
        return _Counts(*(np.r_[a, a.sum(axis=0, keepdims=True)] for a in vars(self).values()))


def _domain_table(
    pairs: _Pairs, domains: _Domains, counts: _Counts, bg: _Background
) -> pd.DataFrame:
    """Per pair and domain (and the whole section): mean score against the background's."""
    names = domains.names
    if domains.labelled:
        counts, names = counts.with_total(), [*names, ALL]
    mean = counts.score / counts.size[:, None]  # (domains, pairs)
    pval, z = _empirical(mean, counts.background / counts.size[:, None], bg.pair_cell, bg.n)
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
    return table[PAIR_COLUMNS]


#: Fewest neighbour links between two domains for their boundary to be tested: a mean over a
#: handful of links is one or two spots' chance expression, not an interaction of domains.
MIN_EDGES = 10


def _domain_pairs_table(
    pairs: _Pairs,
    domains: _Domains,
    edge_sum: np.ndarray,
    bg_edge_sum: np.ndarray,
    n_edges: np.ndarray,
    bg: _Background,
) -> pd.DataFrame:
    """Per pair, sender and receiver domain: mean edge score; across two domains, also its
    z-score, empirical p and BH padj (per domain pair) against the background pairs'."""
    n_dom, _, n_pairs = edge_sum.shape
    edges = n_edges[:, :, None]
    mean = np.divide(edge_sum, edges, out=np.zeros_like(edge_sum), where=edges > 0)
    null = np.divide(bg_edge_sum, edges, out=np.zeros_like(bg_edge_sum), where=edges > 0)
    pval, z = _empirical(mean.reshape(n_dom * n_dom, n_pairs), null, bg.pair_cell, bg.n)
    tested = ((n_edges >= MIN_EDGES) & ~np.eye(n_dom, dtype=bool)).ravel()
    pval[~tested], z[~tested] = np.nan, np.nan
    # One family: every pair across every pair of domains.
    padj = np.full(pval.size, np.nan)
    flat_tested = np.repeat(tested, n_pairs)
    padj[flat_tested] = bh_adjust(pval.ravel()[flat_tested])
    names = np.asarray(domains.names, dtype=object)
    return pd.DataFrame(
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


def _pair_names(table: pd.DataFrame) -> np.ndarray:
    return (table["ligand"] + "^" + table["receptor"]).to_numpy()


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


# --- squidpy's ligrec between domains -----------------------------------------------------------


def ligrec_domains(
    adata: AnnData,
    resource: str | PathLike | pd.DataFrame = "consensus",
    *,
    organism: Literal["human", "mouse"] = "human",
    domain_key: str = "domain",
    layer: str | None = None,
    gene_symbols: str | None = None,
    n_perms: int = 1000,
    threshold: float = 0.01,
    seed: int = 0,
    sample: str | None = None,
) -> pd.DataFrame:
    """squidpy's ``ligrec`` (CellPhoneDB's permutation test) between domains, offline.

    The resource is the one :func:`lr_scores` uses, given to squidpy as ``interactions`` so it
    never fetches omnipath. squidpy runs on the resource's genes only, named by their upper-case
    symbols; a complex is its subunit of lowest mean expression (squidpy's ``"min"`` policy).

    Parameters
    ----------
    adata, resource, organism, domain_key, layer, gene_symbols, sample
        As for :func:`lr_scores`.
    n_perms
        Permutations of the domain labels.
    threshold
        Pairs are not tested for a domain pair if a partner is expressed in a smaller fraction
        of that domain's spots.
    seed
        Seed of the permutations.

    Returns
    -------
    Long table: ``pair``, ``ligand``, ``receptor``, ``sender`` (domain of the ligand),
    ``receiver`` (domain of the receptor), ``mean`` (mean ligand and receptor expression),
    ``pval`` and ``padj`` (BH across pairs per domain pair); untested combinations left out.
    """
    import squidpy as sq

    domains = _domains(adata, domain_key, sample)
    if len(domains.names) < 2:
        raise InputError("ligrec needs at least 2 domains.", sample=sample, field=domain_key)
    table = load_resource(resource, organism=organism)
    symbols = _data_symbols(adata, gene_symbols)
    try:
        pairs = _match(table, symbols)
    except InputError as err:
        raise InputError(str(err), sample=sample, field="resource") from None
    x = sparse.csc_matrix(adata.layers[layer] if layer is not None else adata.X)
    # Complexes as squidpy's "min" policy has them (the subunit of lowest mean), resolved here
    # so that results map back to the resource's pair names.
    means = _col_means(x)
    chosen = np.array([e[np.argmin(means[e])] for e in pairs.entities])
    resolved = pairs.table[["ligand", "receptor"]].copy()
    resolved["source"] = np.asarray(symbols)[chosen[pairs.ligand]]
    resolved["target"] = np.asarray(symbols)[chosen[pairs.receptor]]
    genes = np.unique(chosen)
    sub = AnnData(
        X=sparse.csr_matrix(x[:, genes], dtype=np.float32),
        obs=pd.DataFrame(
            {domain_key: pd.Categorical(np.asarray(domains.names)[domains.codes])},
            index=adata.obs_names,
        ),
        var=pd.DataFrame(index=symbols[genes]),
    )
    result = sq.gr.ligrec(
        sub,
        cluster_key=domain_key,
        interactions=resolved[["source", "target"]].drop_duplicates(),
        use_raw=False,
        copy=True,
        n_perms=n_perms,
        threshold=threshold,
        seed=seed,
        corr_method=None,
        n_jobs=1,
        show_progress_bar=False,
    )
    stacked = {
        key: result[key].sparse.to_dense().stack([0, 1], future_stack=True)
        for key in ("means", "pvalues")
    }
    long = pd.DataFrame({"mean": stacked["means"], "pval": stacked["pvalues"]}).reset_index()
    long.columns = ["source", "target", "sender", "receiver", "mean", "pval"]
    long = resolved.merge(long.dropna(subset=["pval"]), on=["source", "target"])
    long.insert(0, "pair", long["ligand"] + "^" + long["receptor"])
    long = long.drop(columns=["source", "target"]).reset_index(drop=True)
    family = long.groupby(["sender", "receiver"]).ngroup().to_numpy()
    sizes = np.bincount(family) if len(family) else np.zeros(0, dtype=int)
    long["padj"] = _bh_grouped(long["pval"].to_numpy(), family, sizes)
    return long


def top_pairs(table: pd.DataFrame, *, n: int = 5, alpha: float = 0.05) -> pd.DataFrame:
    """The ``n`` pairs of each domain with the largest z-score among those with ``padj < alpha``.

    ``table`` is ``uns["lr_pairs"]`` of :func:`lr_scores` (or ``cci/pairs.tsv``).
    """
    hits = table[(table["padj"] < alpha) & (table["mean_score"] > 0)]
    hits = hits.sort_values(["domain", "zscore", "mean_score"], ascending=[True, False, False])
    return hits.groupby("domain", sort=False, observed=True).head(n).reset_index(drop=True)
