"""The spot-permutation test of the L-R tables (spaseg.tl._lr_perm): its moments against
simulation, uniform p where spots carry no spatial association, power at a planted boundary."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats
from scipy.spatial import cKDTree

from spaseg.datasets._sim_cci import simulate_cci
from spaseg.tl import lr_scores
from spaseg.tl._lr_perm import (
    boundary_forms,
    domain_forms,
    domain_moments,
    forms,
    null_draws,
    permutation_test,
    permutations_needed,
    within_domain_permutation,
)
from spaseg.tl._lr_perm import (
    testable as rows_tested,
)

pytestmark = pytest.mark.usefixtures("no_network")


def _random_section(rng, n=240):
    """Random points, a radius graph, three vertical domains, entropy weights, and a
    correlated, sparse, non-negative ligand / receptor."""
    xy = rng.uniform(0, 10, (n, 2))
    i, j = cKDTree(xy).query_pairs(1.3, output_type="ndarray").T
    graph = sparse.csr_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), (n, n))
    degree = np.asarray(graph.sum(axis=1)).ravel()
    mean_op = sparse.diags(np.divide(1, degree, out=np.zeros(n), where=degree > 0)) @ graph
    onehot = np.eye(3)[np.minimum(xy[:, 0] // 3.4, 2).astype(int)].T
    h = rng.uniform(0.2, 1.5, n)
    shared = rng.normal(size=n)
    x = np.clip(shared + 0.5 * rng.normal(size=n), 0, None)
    y = np.clip(0.5 * shared + rng.normal(size=n), 0, None) * (rng.random(n) < 0.6)
    return graph, mean_op.tocsr(), onehot, h, x, y


def _statistics(graph, mean_op, onehot, h, x, y):
    """Domain means of the score (domains, then the section) and boundary edge means, by the
    definitions (not the bilinear weights)."""
    score = h * 0.5 * (x * (mean_op @ y) + y * (mean_op @ x))
    rows = np.r_[onehot, np.ones((1, len(x)))]
    domain = rows @ score / rows.sum(axis=1)
    edge = (sparse.diags(h) @ graph + graph @ sparse.diags(h)) * 0.5
    o = sparse.csr_matrix(onehot)
    total = (o @ sparse.diags(x) @ edge @ sparse.diags(y) @ o.T).toarray()
    n_edges = (o @ graph @ o.T).toarray()
    return np.r_[domain, (total / np.where(n_edges > 0, n_edges, np.nan)).ravel()]


def _boundary_weights(graph, h, labels, a, b):
    """Weights of the mean over edges from domain ``a`` to ``b`` of ``x_i y_j (h_i + h_j) / 2``,
    by hand."""
    g = graph.tocoo()
    keep = (labels[g.row] == a) & (labels[g.col] == b)
    values = (h[g.row] + h[g.col])[keep] / 2 / keep.sum()
    return sparse.csr_matrix((values, (g.row[keep], g.col[keep])), graph.shape)


@pytest.mark.parametrize("n_dom", [3, 1], ids=["within-domains", "whole-section"])
def test_mean_and_variance_match_profiles_permuted_within_domains(n_dom):
    """The profiles permuted among the spots of each domain, 4 000 times: the closed-form mean
    and standard deviation of every domain and boundary statistic match the simulated ones
    (with one domain, every spot exchangeable: SpatialDM's null)."""
    rng = np.random.default_rng(1)
    graph, mean_op, onehot, h, x, y = _random_section(rng)
    labels = onehot.argmax(axis=0)
    x = x + 2.0 * (labels == 0)  # the ligand marks domain 0: the null keeps that
    codes = labels if n_dom == 3 else np.zeros(len(x), dtype=int)
    moments = domain_moments(sparse.csr_matrix(np.c_[x, y]), codes, n_dom, [0], [1])
    members = np.r_[onehot, np.ones((1, len(x)))].astype(bool)
    tested = ((onehot @ graph @ onehot.T) > 0) & ~np.eye(3, dtype=bool)
    boundaries = [
        forms(_boundary_weights(graph, h, labels, a, b), codes, n_dom) if tested[a, b] else None
        for a in range(3)
        for b in range(3)
    ]
    if n_dom == 3:  # the library's boundary weights are the hand-made ones
        for mine, theirs in zip(
            boundary_forms(graph, h, labels, 3, tested), boundaries, strict=True
        ):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                for key, value in vars(mine).items():
                    np.testing.assert_allclose(value, getattr(theirs, key), atol=1e-12)
    statistics = domain_forms(mean_op, h, members, codes, n_dom) + boundaries
    draws = []
    for _ in range(4000):
        pick = np.arange(len(x))
        for g in range(n_dom):
            spots = np.flatnonzero(codes == g)
            pick[spots] = rng.permutation(spots)
        draws.append(_statistics(graph, mean_op, onehot, h, x[pick], y[pick]))
    draws = np.array(draws)
    z0, _ = permutation_test(np.zeros((len(statistics), 1)), moments, statistics)
    z1, _ = permutation_test(np.ones((len(statistics), 1)), moments, statistics)
    sd = 1.0 / (z1 - z0).ravel()
    expected = -z0.ravel() * sd
    ok = np.isfinite(sd)
    assert ok.sum() == 4 + 4  # 3 domains and the section; 2 x 2 boundaries (0-2 do not touch)
    simulated_sd = draws[:, ok].std(axis=0)
    standard_error = simulated_sd / np.sqrt(len(draws))
    assert (np.abs(draws[:, ok].mean(axis=0) - expected[ok]) < 4 * standard_error).all()
    np.testing.assert_allclose(sd[ok], simulated_sd, rtol=0.06)


def _lattice(rng, side=30, n_genes=120):
    rows, cols = np.divmod(np.arange(side * side), side)
    counts = rng.poisson(rng.gamma(0.6, 1.0, n_genes), (side * side, n_genes))
    return ad.AnnData(
        sparse.csr_matrix(np.log1p(counts).astype(np.float32)),
        obs=pd.DataFrame(
            {"array_row": rows, "array_col": cols, "domain": (cols * 3 // side).astype(str)},
            index=[f"s{i}" for i in range(side * side)],
        ),
        var=pd.DataFrame(index=[f"G{g}" for g in range(n_genes)]),
    )


def test_pvalues_are_uniform_without_spatial_association():
    """Genes drawn independently at every spot: every domain and boundary p-value of the
    permutation test is a null p; their distribution is uniform and BH finds nothing."""
    rng = np.random.default_rng(5)
    adata = _lattice(rng)
    pick = rng.choice(adata.n_vars, (400, 2))
    pairs = pd.DataFrame(
        {"ligand": adata.var_names[pick[:, 0]], "receptor": adata.var_names[pick[:, 1]]}
    )[pick[:, 0] != pick[:, 1]].drop_duplicates()
    lr = lr_scores(adata, pairs, n_background=50, min_spots=5)
    table = lr.uns["lr_pairs"]
    p = table["pval_perm"].dropna().to_numpy()
    assert len(p) > 1000
    assert 0.03 <= np.mean(p < 0.05) <= 0.07, np.mean(p < 0.05)
    assert stats.kstest(p, "uniform").pvalue > 0.001
    tested = table["pval_perm"].notna()
    assert (table["padj_perm"] >= table["pval_perm"] - 1e-12)[tested].all()
    assert not (table["padj_perm"] < 0.05).any()
    edges = lr.uns["lr_domain_pairs"]
    assert edges.loc[edges["sender"] == edges["receiver"], "pval_perm"].isna().all()
    p = edges["pval_perm"].dropna()
    assert len(p) > 500 and 0.02 <= np.mean(p < 0.05) <= 0.08


def test_planted_boundary_pairs_are_found_and_controls_are_not():
    """Ligand and receptor strips on the two sides of a band boundary: the spot-permutation
    test finds the pair at its sender -> receiver boundary; the controls (same strips far
    apart, or scattered) are found at no boundary."""
    sim = simulate_cci(n_genes=120, n_rows=16, n_planted=4, n_controls=8, seed=3)
    adata = sim.spatial
    counts = adata.X.toarray()
    adata.X = sparse.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e3))
    lr = lr_scores(adata, sim.pairs, n_background=50, min_spots=3)
    truth = sim.pairs.assign(pair=sim.pairs["ligand"] + "^" + sim.pairs["receptor"])
    edges = lr.uns["lr_domain_pairs"].merge(truth, on="pair", suffixes=("", "_true"))
    hits = edges[edges["padj_perm"] < 0.05]
    right = hits[
        (hits["sender"] == hits["sender_true"]) & (hits["receiver"] == hits["receiver_true"])
    ]
    assert set(right.loc[right["kind"] == "planted", "pair"]) == set(
        truth.loc[truth["kind"] == "planted", "pair"]
    )
    assert (hits["kind"] == "planted").all()


def test_unpermuted_statistics_are_the_tables():
    """The permuted draws are computed apart from the tables: with the identity permutation
    they give the tables' domain means and boundary means."""
    from spaseg.tl._lr import neighbour_graph
    from spaseg.tl._lr_data import _data_symbols

    sim = simulate_cci(n_genes=120, n_rows=16, n_planted=4, n_controls=8, seed=3)
    adata = sim.spatial
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))
    lr = lr_scores(adata, sim.pairs, n_background=20, min_spots=3, n_permutations=0)
    graph = neighbour_graph(adata, rings=2)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    mean_op = (sparse.diags(1.0 / np.maximum(degree, 1)) @ graph).tocsr()
    symbols = pd.Index(_data_symbols(adata, None))
    genes = np.unique(np.r_[lr.var["ligand_genes"], lr.var["receptor_genes"]])
    x = adata.X.toarray()
    entities = sparse.csr_matrix(  # a complex (A_B) is the minimum of its subunits
        np.sqrt(
            np.column_stack([x[:, symbols.get_indexer(g.split("_"))].min(axis=1) for g in genes])
        )
    )
    column = {g: i for i, g in enumerate(genes)}
    ligand = np.array([column[g] for g in lr.var["ligand_genes"]])
    receptor = np.array([column[g] for g in lr.var["receptor_genes"]])
    domains = pd.Categorical(adata.obs["domain"].astype(str))
    codes, n_dom = domains.codes.astype(int), len(domains.categories)
    members = np.r_[np.eye(n_dom, dtype=bool)[codes].T, np.ones((1, adata.n_obs), dtype=bool)]
    draws = null_draws(
        entities, mean_op, graph, np.ones(adata.n_obs), codes, n_dom, members, ligand, receptor
    )
    domain, boundary = draws.statistics(np.arange(adata.n_obs))
    table = lr.uns["lr_pairs"].pivot(index="domain", columns="pair", values="mean_score")
    expected = table.loc[[*domains.categories, "all"], lr.var_names].to_numpy()
    np.testing.assert_allclose(domain, expected, rtol=1e-5)
    edges = lr.uns["lr_domain_pairs"]
    across = edges[edges["sender"] != edges["receiver"]]
    flat = boundary.reshape(n_dom, n_dom, -1)
    a = domains.categories.get_indexer(across["sender"])
    b = domains.categories.get_indexer(across["receiver"])
    p = lr.var_names.get_indexer(across["pair"])
    np.testing.assert_allclose(flat[a, b, p], across["score"], rtol=1e-5, atol=1e-7)


def test_without_domains_every_spot_is_exchangeable():
    """No domains: one row per pair (the section), tested against all spots exchangeable
    (SpatialDM's null); planted pairs (co-expressed across one boundary) stand out."""
    sim = simulate_cci(n_genes=120, n_rows=16, n_planted=4, n_controls=8, seed=3)
    adata = sim.spatial
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))
    lr = lr_scores(adata, sim.pairs, n_background=20, min_spots=3, domain_key=None)
    table = lr.uns["lr_pairs"].set_index("pair")
    assert set(table["domain"]) == {"all"} and lr.uns["lr_domain_pairs"]["pval_perm"].isna().all()
    kind = sim.pairs.assign(pair=sim.pairs["ligand"] + "^" + sim.pairs["receptor"])
    planted = kind.set_index("pair")["kind"].reindex(table.index) == "planted"
    z = table["zscore_perm"]
    assert z[planted].min() > z[~planted].max()
    assert (table.loc[planted, "padj_perm"] < 0.05).all()


def test_rows_tested_do_not_depend_on_where_in_its_domain_a_spot_lies():
    """Which rows are tested is decided by what a within-domain permutation keeps: chosen on
    the detections at the boundary itself, the tested rows would be those whose genes sit
    there by chance, and their p-values would come out too small."""
    rng = np.random.default_rng(2)
    _, _, onehot, _, _, _ = _random_section(rng)
    codes = onehot.argmax(axis=0)
    e = sparse.csr_matrix(rng.random((len(codes), 30)) * (rng.random((len(codes), 30)) < 0.1))
    ligand, receptor = rng.choice(30, (2, 60))
    facing = ~np.eye(3, dtype=bool)  # every boundary tested
    before = rows_tested(e, codes, 3, ligand, receptor, 4, True, facing)
    for seed in range(5):
        perm = within_domain_permutation(codes, np.random.default_rng(seed))
        after = rows_tested(e[perm], codes, 3, ligand, receptor, 4, True, facing)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
    assert 0 < before[1].mean() < 1  # some boundary rows tested, some not


def test_large_tables_draw_fewer_permutations():
    """Permutations stop once every family pools POOLED_DRAWS z-scores; a small table draws
    all it is given, and the table records what was drawn."""
    assert permutations_needed(5, 3440, 3051) == 5  # DLPFC-sized: 7 would be needed
    assert permutations_needed(5, 9000, 14000) == 3  # a chip: 1 000 pairs, 8 bands
    assert permutations_needed(5, 9000, 0) == 3  # no boundary tested
    assert permutations_needed(5, 10**6, 10**6) == 1
    assert permutations_needed(0, 10, 10) == 0 and permutations_needed(5) == 5
    sim = simulate_cci(n_genes=120, n_rows=16, n_planted=4, n_controls=8, seed=3)
    adata = sim.spatial
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))
    lr = lr_scores(adata, sim.pairs, n_background=20, min_spots=3, n_permutations=2)
    assert lr.uns["lr"]["n_permutations_drawn"] == 2 == lr.uns["lr"]["n_permutations"]
