"""Ligand-receptor scores (spaseg.tl.lr_scores): the formula, entropy, complexes, resources,
significance, squidpy's ligrec between domains. Offline: any network connection fails."""

from __future__ import annotations

import logging
import socket

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from statsmodels.stats.multitest import fdrcorrection

from spaseg import InputError
from spaseg.datasets._sim_cci import simulate_cci
from spaseg.tl import cell_type_entropy, ligrec_domains, load_resource, lr_scores, top_pairs
from spaseg.tl._lr import neighbour_graph
from spaseg.tl._lr_null import _bh_grouped, _count_at_least

pytestmark = pytest.mark.usefixtures("no_network")


def line_section(x: np.ndarray, genes: list[str], domains: str = "aabbb") -> ad.AnnData:
    """Spots in one row of a square lattice (neighbours: left and right)."""
    n = x.shape[0]
    obs = pd.DataFrame(
        {"array_row": 0, "array_col": np.arange(n), "domain": list(domains)},
        index=[f"s{i}" for i in range(n)],
    )
    adata = ad.AnnData(np.asarray(x, dtype=np.float32), obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["spatial"] = np.column_stack([np.arange(n) * 10.0, np.zeros(n)])
    return adata


# L, R, and a third gene; spots 0-4 in a row.
X5 = np.array([[4, 0, 1], [1, 1, 0], [0, 4, 2], [9, 1, 0], [0, 0, 3]], dtype=float)
PAIR = pd.DataFrame({"ligand": ["L"], "receptor": ["R"]})
KW = dict(rings=1, min_spots=1, n_background=20, n_bins=2)


def by_hand(x: np.ndarray, neighbours: list[list[int]], h=None) -> np.ndarray:
    """The reference formula, spot by spot."""
    h = np.ones(len(x)) if h is None else h
    out = []
    for i, nbrs in enumerate(neighbours):
        s1 = np.mean([np.sqrt(x[i, 0] * x[j, 1]) for j in nbrs])
        s2 = np.mean([np.sqrt(x[i, 1] * x[j, 0]) for j in nbrs])
        out.append((s1 + s2) / 2 * h[i])
    return np.array(out)


def test_score_formula_on_five_spots():
    lr = lr_scores(line_section(X5, ["L", "R", "G"]), PAIR, **KW)
    expected = by_hand(X5, [[1], [0, 2], [1, 3], [2, 4], [3]])
    np.testing.assert_allclose(lr.X.toarray().ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [1, 1, 2, 1.5, 0])  # the hand sums, for the reader
    assert lr.var_names.tolist() == ["L^R"] and sparse.issparse(lr.X)
    # Domain x domain: mean over directed edges of sqrt(L_i R_j), ligand domain first.
    edges = lr.uns["lr_domain_pairs"].set_index(["sender", "receiver"])
    assert edges.loc[("a", "b"), "score"] == pytest.approx(2.0)  # 1 -> 2: sqrt(1 * 4)
    assert edges.loc[("b", "a"), "score"] == pytest.approx(0.0)  # 2 -> 1: sqrt(0 * 1)
    assert edges.loc[("b", "b"), "score"] == pytest.approx(1.5)  # sqrt(9 * 4) over 4 edges
    assert edges.loc[("a", "b"), "n_edges"] == 1


def test_rings_and_radius_graphs():
    adata = line_section(np.ones((5, 1)), ["G"])
    two = neighbour_graph(adata, rings=2).toarray()
    np.testing.assert_array_equal(two[0], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(two[2], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(neighbour_graph(adata, radius=25.0).toarray(), two)
    lr = lr_scores(line_section(X5, ["L", "R", "G"]), PAIR, **{**KW, "rings": 2})
    expected = by_hand(X5, [[1, 2], [0, 2, 3], [0, 1, 3, 4], [1, 2, 4], [2, 3]])
    np.testing.assert_allclose(lr.X.toarray().ravel(), expected, rtol=1e-6)


def test_entropy_of_pure_and_mixed_spots():
    fractions = np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25] * 4, [3, 1, 0, 0], [0, 0, 0, 0]])
    h = cell_type_entropy(fractions)
    p = np.array([0.75, 0.25])
    np.testing.assert_allclose(h, [0, 1, 2, -(p * np.log2(p)).sum(), 0])
    # Scores are weighted by H: a pure spot scores 0, an even mix of two types 1x.
    adata = line_section(X5, ["L", "R", "G"])
    adata.obsm["fractions"] = np.array([[1, 0], [0.5, 0.5], [1, 0], [0.5, 0.5], [0.5, 0.5]])
    lr = lr_scores(adata, PAIR, fractions_key="fractions", **KW)
    expected = by_hand(X5, [[1], [0, 2], [1, 3], [2, 4], [3]], h=np.array([0, 1, 0, 1, 1]))
    np.testing.assert_allclose(lr.X.toarray().ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(lr.obs["cell_type_entropy"], [0, 1, 0, 1, 1])


def test_homotypic_signalling_needs_weight_none():
    """cci.weight: entropy scores a section of one cell type 0 everywhere (no spot mixes
    types); weight none (no fractions) keeps its co-expression, as cci.weight: none does."""
    adata = line_section(X5, ["L", "R", "G"])
    adata.obsm["fractions"] = np.tile([1.0, 0.0], (5, 1))  # every spot the same single type
    entropy = lr_scores(adata, PAIR, fractions_key="fractions", **KW)
    unweighted = lr_scores(adata, PAIR, **KW)
    assert entropy.X.nnz == 0 and (entropy.var["mean_score"] == 0).all()
    expected = by_hand(X5, [[1], [0, 2], [1, 3], [2, 4], [3]])
    np.testing.assert_allclose(unweighted.X.toarray().ravel(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("policy", "complex_at"),
    [("min", lambda a, b: np.minimum(a, b)), ("gmean", lambda a, b: np.sqrt(a * b))],
)
def test_complex_receptor(policy, complex_at):
    """A receptor complex R1_R2 is expressed as the min (or geometric mean) of its subunits."""
    x = np.array([[4, 0, 0], [0, 1, 4], [2, 9, 1], [1, 4, 4], [0, 2, 0]], dtype=float)
    adata = line_section(x, ["L", "R1", "R2"])
    pair = pd.DataFrame({"ligand": ["L"], "receptor": ["R1_R2"]})
    lr = lr_scores(adata, pair, complex_policy=policy, **KW)
    folded = np.column_stack([x[:, 0], complex_at(x[:, 1], x[:, 2])])
    expected = by_hand(folded, [[1], [0, 2], [1, 3], [2, 4], [3]])
    np.testing.assert_allclose(lr.X.toarray().ravel(), expected, rtol=1e-5)
    assert lr.var.loc["L^R1_R2", "receptor_genes"] == "R1_R2"


def test_symbols_from_var_and_case_insensitive_matching():
    """IDs as var_names: symbols come from var['gene_symbols']; a human table finds mouse genes."""
    adata = line_section(X5, ["ENSG1", "ENSG2", "ENSG3"])
    adata.var["gene_symbols"] = ["Cxcl12", "Cxcr4", "Actb"]
    pair = pd.DataFrame({"ligand": ["CXCL12"], "receptor": ["CXCR4"]})
    lr = lr_scores(adata, pair, **KW)
    assert lr.var_names.tolist() == ["CXCL12^CXCR4"]
    assert lr.var.loc["CXCL12^CXCR4", "ligand_genes"] == "CXCL12"


def test_missing_genes_are_skipped_with_a_warning(caplog):
    pairs = pd.DataFrame({"ligand": ["L", "L", "NOPE"], "receptor": ["R", "ABSENT_R", "R"]})
    with caplog.at_level(logging.WARNING, logger="spaseg"):
        lr = lr_scores(line_section(X5, ["L", "R", "G"]), pairs, **KW)
    assert lr.var_names.tolist() == ["L^R"]
    message = caplog.text
    assert "2 of 3 pairs skipped" in message and "ABSENT" in message and "NOPE" in message


def test_resource_without_any_pair_in_the_data_is_a_clear_error():
    pairs = pd.DataFrame({"ligand": ["CXCL12"], "receptor": ["CXCR4"]})
    with pytest.raises(InputError) as err:
        lr_scores(line_section(X5, ["L", "R", "G"]), pairs, sample="s1", **KW)
    message = str(err.value)
    assert "sample 's1'" in message and "field 'resource'" in message
    assert "none of the 1 pairs" in message and "gene_symbols" in message


def test_bad_inputs_name_the_field():
    adata = line_section(X5, ["L", "R", "G"])
    with pytest.raises(InputError, match="field 'domain_key'"):
        lr_scores(adata, PAIR, domain_key="missing", **KW)
    with pytest.raises(InputError, match="field 'fractions_key'"):
        lr_scores(adata, PAIR, fractions_key="missing", **KW)
    with pytest.raises(InputError, match="field 'min_spots'"):
        lr_scores(adata, PAIR, **{**KW, "min_spots": 9})
    adata.X[0, 0] = -1.0
    with pytest.raises(InputError, match="negative"):
        lr_scores(adata, PAIR, **KW)


def test_resources_load_offline(tmp_path):
    consensus = load_resource("consensus")
    assert list(consensus.columns) == ["ligand", "receptor"] and len(consensus) > 1000
    assert consensus["receptor"].str.contains("_").any()  # complexes
    mouse = load_resource("consensus", organism="mouse")
    assert mouse["ligand"].str.match(r"^[A-Z][a-z0-9]").mean() > 0.9  # Cxcl12-style symbols
    csv = tmp_path / "pairs.csv"
    csv.write_text("ligand,receptor,source\nCXCL12,CXCR4,x\nCXCL12,CXCR4,y\n")
    assert load_resource(csv).values.tolist() == [["CXCL12", "CXCR4"]]
    (tmp_path / "bad.tsv").write_text("a\tb\nX\tY\n")
    with pytest.raises(InputError, match="ligand and receptor"):
        load_resource(tmp_path / "bad.tsv")
    with pytest.raises(InputError, match="unknown L-R resource"):
        load_resource("no_such_table")


def test_bh_and_empirical_counts_match_the_textbook():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 50)
    group = rng.integers(0, 3, 50)
    adjusted = _bh_grouped(p, group, 40)  # 10 untested (p = 1) per group
    for g in range(3):
        full = np.r_[p[group == g], np.ones(40 - (group == g).sum())]
        np.testing.assert_allclose(
            adjusted[group == g], fdrcorrection(full)[1][: (group == g).sum()]
        )
    background = np.sort(rng.exponential(size=(2, 7, 5)).astype(np.float32), axis=1)
    cell, spot = rng.integers(0, 2, 30), rng.integers(0, 5, 30)
    value = rng.exponential(size=30).astype(np.float32)
    value[:3] = background[cell[:3], 2, spot[:3]]  # ties count as >=
    brute = (background[cell, :, spot] >= value[:, None]).sum(axis=1)
    np.testing.assert_array_equal(_count_at_least(background, cell, spot, value), brute)


@pytest.fixture(scope="module")
def simulated():
    sim = simulate_cci(n_genes=120, n_rows=16, n_planted=4, n_controls=8, seed=3)
    adata = sim.spatial
    counts = adata.X.toarray()
    adata.X = sparse.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e3))
    return adata, sim.pairs


def test_planted_pairs_outrank_controls(simulated):
    adata, pairs = simulated
    lr = lr_scores(adata, pairs, n_background=200, min_spots=3)
    kind = pairs.assign(pair=pairs["ligand"] + "^" + pairs["receptor"]).set_index("pair")["kind"]
    z = lr.var["zscore"]
    assert z[kind[z.index] == "planted"].min() > z[kind[z.index] != "planted"].max()
    table = lr.uns["lr_pairs"]
    assert set(table["domain"]) == {"D0", "D1", "D2", "all"}
    assert table["pval"].between(1 / 201, 1).all() and (table["padj"] >= table["pval"]).all()
    # Across the boundary, a planted pair's sender -> receiver edges dominate, and are tested.
    first = pairs.iloc[1]
    edges = lr.uns["lr_domain_pairs"].query("pair == @first.ligand + '^' + @first.receptor")
    for column in ("score", "zscore"):
        best = edges.loc[edges[column].idxmax()]
        assert (best["sender"], best["receiver"]) == (first["sender"], first["receiver"])
    tested = (edges["sender"] != edges["receiver"]) & (edges["n_edges"] > 0)
    assert edges.loc[~tested, "pval"].isna().all() and edges.loc[tested, "pval"].notna().all()
    neglog = lr.layers["neglog10_pval"]
    assert neglog.max() <= np.log10(201) + 1e-6 and (lr.X.nnz >= neglog.nnz)
    assert set(top_pairs(table, n=2, alpha=1.0)["domain"]) == {"D0", "D1", "D2", "all"}


def test_ligrec_between_domains_is_offline_and_named_like_the_resource(simulated):
    adata, pairs = simulated
    table = ligrec_domains(adata, pairs, n_perms=50)
    assert {"pair", "ligand", "receptor", "sender", "receiver", "mean", "pval", "padj"} <= set(
        table.columns
    )
    assert set(table["pair"]) <= set(pairs["ligand"] + "^" + pairs["receptor"])
    assert "LIG1^REC1A_REC1B" in set(table["pair"])  # the complex keeps its resource name


def test_ligrec_means_and_pvalues_are_cellphonedb_s(simulated):
    """The mean of a (pair, sender, receiver) row is the mean of the ligand's domain mean in
    the sender and the receptor's in the receiver; the planted pair's own boundary is where
    its permutation p-value is smallest."""
    adata, pairs = simulated
    table = ligrec_domains(adata, pairs, n_perms=100).set_index(["pair", "sender", "receiver"])
    planted = pairs[(pairs["kind"] == "planted") & ~pairs["receptor"].str.contains("_")].iloc[0]
    name = f"{planted['ligand']}^{planted['receptor']}"
    x = pd.DataFrame(adata.X.toarray(), columns=adata.var_names, index=adata.obs_names)
    by_domain = x.groupby(adata.obs["domain"].to_numpy()).mean()
    rows = table.loc[name]
    for (sender, receiver), row in rows.iterrows():
        expected = (
            by_domain.loc[sender, planted["ligand"]] + by_domain.loc[receiver, planted["receptor"]]
        ) / 2
        assert row["mean"] == pytest.approx(expected, rel=1e-4)
    own = (planted["sender"], planted["receiver"])
    assert rows.loc[own, "pval"] <= 0.02 and rows.loc[own, "pval"] == rows["pval"].min()


def test_plots_draw(simulated):
    import matplotlib.pyplot as plt

    from spaseg.pl._cci import domain_heatmap, lr_spatial

    adata, pairs = simulated
    lr = lr_scores(adata, pairs, n_background=50, min_spots=3)
    figure = lr_spatial(lr, n_top=1)
    assert len(figure.axes) >= 2  # domains, then at least one pair
    # The title says when no pair passes, and only then (at alpha 0 none can); for each test.
    for test in ("permutation", "random_pairs", "both"):
        figure = lr_spatial(lr, n_top=1, test=test)
        said = "no pair passes" in (figure._suptitle.get_text() if figure._suptitle else "")
        assert said == top_pairs(lr.uns["lr_pairs"], n=1, alpha=0.05, test=test).empty
    assert not top_pairs(lr.uns["lr_pairs"], n=1, test="permutation").empty  # planted pairs
    none_pass = lr_spatial(lr, n_top=1, alpha=0.0, title="s1")
    assert none_pass._suptitle.get_text().startswith("s1: no pair passes the permutation test")
    ligrec = pd.DataFrame({"sender": ["D0"], "receiver": ["D1"], "padj": [0.01]})
    assert len(domain_heatmap(lr.uns["lr_domain_pairs"], ligrec).axes) == 6  # 3 maps + bars
    plt.close("all")


def test_network_guard_is_active():
    """The no_network fixture (conftest.py) really refuses connections (so the tests are offline)."""
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))


def grid_section(seed: int = 0, side: int = 12) -> ad.AnnData:
    """A square lattice of 3 vertical bands, random sparse expression and cell-type fractions
    (a third of the spots pure), for brute-force checks."""
    rng = np.random.default_rng(seed)
    n = side * side
    row, col = np.divmod(np.arange(n), side)
    x = rng.gamma(1.0, 2.0, (n, 4)) * (rng.random((n, 4)) < 0.6)
    fractions = rng.dirichlet(np.ones(3), n)
    pure = rng.random(n) < 1 / 3
    fractions[pure] = np.eye(3)[rng.integers(0, 3, pure.sum())]
    obs = pd.DataFrame(
        {"array_row": row, "array_col": col, "domain": [f"d{c * 3 // side}" for c in col]},
        index=[f"s{i}" for i in range(n)],
    )
    adata = ad.AnnData(x.astype(np.float32), obs=obs, var=pd.DataFrame(index=["A", "B", "C", "D"]))
    adata.obsm["spatial"] = np.column_stack([col, row]).astype(float)
    adata.obsm["fractions"] = fractions
    return adata


GRID_PAIRS = pd.DataFrame({"ligand": ["A", "B", "C"], "receptor": ["B", "C_D", "A"]})


def test_domain_summaries_match_brute_force_and_do_not_depend_on_chunking(monkeypatch):
    """Per-domain means and domain x domain edge means against loops over spots and edges, on
    a 2-D lattice with entropy weights and a complex; then the same call with chunks of 64
    spots (3 chunks) gives identical scores, p-values and tables."""
    import spaseg.tl._lr_data as lr_data

    adata = grid_section()
    kw = dict(fractions_key="fractions", rings=2, min_spots=1, n_background=30, n_bins=2)
    lr = lr_scores(adata, GRID_PAIRS, **kw)
    x = np.asarray(adata.X, dtype=np.float64)
    expr = {"A": x[:, 0], "B": x[:, 1], "C": x[:, 2], "C_D": np.minimum(x[:, 2], x[:, 3])}
    h = cell_type_entropy(adata.obsm["fractions"])
    adjacency = neighbour_graph(adata, rings=2).toarray() > 0
    domain = adata.obs["domain"].to_numpy()
    for lig, rec in GRID_PAIRS.itertuples(index=False):
        a, b = expr[lig], expr[rec]
        score = np.array(
            [
                (np.sqrt(a[i] * b[adjacency[i]]).mean() + np.sqrt(b[i] * a[adjacency[i]]).mean())
                / 2
                * h[i]
                for i in range(adata.n_obs)
            ]
        )
        name = f"{lig}^{rec}"
        np.testing.assert_allclose(lr[:, name].X.toarray().ravel(), score, rtol=1e-5, atol=1e-6)
        table = lr.uns["lr_pairs"].query("pair == @name").set_index("domain")
        for d in ("d0", "d1", "d2"):
            inside = domain == d
            assert table.loc[d, "mean_score"] == pytest.approx(score[inside].mean(), rel=1e-5)
            assert table.loc[d, "n_spots"] == (score[inside] > 0).sum()
        assert table.loc["all", "mean_score"] == pytest.approx(score.mean(), rel=1e-5)
        edges = lr.uns["lr_domain_pairs"].query("pair == @name").set_index(["sender", "receiver"])
        i, j = np.nonzero(adjacency)
        edge_score = np.sqrt(a[i] * b[j]) * (h[i] + h[j]) / 2
        for (sender, receiver), row in edges.iterrows():
            on = (domain[i] == sender) & (domain[j] == receiver)
            assert row["n_edges"] == on.sum()
            expected = edge_score[on].mean() if on.any() else 0.0
            assert row["score"] == pytest.approx(expected, rel=1e-5, abs=1e-7)

    monkeypatch.setattr(lr_data, "_CHUNK_ENTRIES", 1)  # 64 spots per chunk
    chunked = lr_scores(adata, GRID_PAIRS, **kw)
    for layer in (None, "neglog10_pval", "neglog10_padj"):
        one = lr.X if layer is None else lr.layers[layer]
        many = chunked.X if layer is None else chunked.layers[layer]
        np.testing.assert_allclose(many.toarray(), one.toarray(), rtol=1e-5, atol=1e-6)
    for key in ("lr_pairs", "lr_domain_pairs"):
        pd.testing.assert_frame_equal(chunked.uns[key], lr.uns[key], rtol=1e-5)


def _pvalue_tables(lr: ad.AnnData) -> list[pd.DataFrame]:
    """The p-value columns of both summary tables, sorted by their keys (row order free)."""
    out = []
    for key, by in (
        ("lr_pairs", ["pair", "domain"]),
        ("lr_domain_pairs", ["pair", "sender", "receiver"]),
    ):
        table = lr.uns[key].sort_values(by).reset_index(drop=True)
        out.append(table[by + [c for c in ("pval", "padj") if c in table]])
    return out


@pytest.mark.parametrize(
    "variant", ["chunks_50", "chunks_97", "permuted", "threads_1", "threads_2"]
)
def test_pvalues_do_not_depend_on_summation_order(monkeypatch, variant):
    """p-values are exactly equal (not only close) under other chunk sizes, a permuted spot
    order and 1 or 2 BLAS threads: sums are float64 and near-ties count as ties. The 30
    background draws from two expression bins repeat the observed gene pairs, so ties occur."""
    from threadpoolctl import threadpool_limits

    import spaseg.tl._lr as lr_module

    adata = grid_section(seed=3)
    kw = dict(fractions_key="fractions", rings=2, min_spots=1, n_background=30, n_bins=2)
    with threadpool_limits(limits=1):
        reference = lr_scores(adata, GRID_PAIRS, **kw)
    if variant.startswith("chunks"):
        rows = int(variant.split("_")[1])
        monkeypatch.setattr(lr_module, "_chunk_rows", lambda width, n_spots: rows)
        other = lr_scores(adata, GRID_PAIRS, **kw)
    elif variant == "permuted":
        order = np.random.default_rng(1).permutation(adata.n_obs)
        other = lr_scores(adata[order].copy(), GRID_PAIRS, **kw)
        other = other[adata.obs_names].copy()
    else:
        with threadpool_limits(limits=int(variant[-1])):
            other = lr_scores(adata, GRID_PAIRS, **kw)
    for mine, theirs in zip(_pvalue_tables(other), _pvalue_tables(reference), strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    for layer in ("neglog10_pval", "neglog10_padj"):
        np.testing.assert_array_equal(
            other.layers[layer].toarray(), reference.layers[layer].toarray()
        )
    ties = reference.uns["lr_pairs"]["pval"].to_numpy()
    assert (ties < 1).any(), "the check needs some p-values below 1"


# --- p-values beyond the background draws (spaseg.tl._tail) -------------------------------------


def _tail_p(observed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    from spaseg.tl._tail import tail_pvalues

    draws = np.sort(draws, axis=1)
    which = np.arange(len(observed))
    count = (draws >= observed[:, None]).sum(axis=1)
    return tail_pvalues(observed, draws, which, count)


@pytest.mark.parametrize("shape", [-0.2, 0.0, 0.1, 0.5, 1.0])
def test_tail_fit_is_the_maximum_likelihood_fit(shape):
    """The profile-likelihood search finds the likelihood's maximum over shape >= 0 (scipy's
    Nelder-Mead fit, an exponential where that fit's shape is negative), or better."""
    from scipy import stats

    from spaseg.tl._tail import gpd_fit

    rng = np.random.default_rng(4)
    for _ in range(10):
        x = stats.genpareto.rvs(shape, scale=2.0, size=100, random_state=rng)
        ours = gpd_fit(x)
        c, _, scale = stats.genpareto.fit(x, floc=0)
        theirs = (c, scale) if c >= 0 else (0.0, x.mean())
        assert ours[0] >= 0
        ll = [stats.genpareto.logpdf(x, k, scale=s).sum() for k, s in (ours, theirs)]
        assert ll[0] >= ll[1] - 1e-6, (ours, theirs, ll)


@pytest.mark.parametrize(
    ("draw", "x", "truth", "bounds"),
    [
        (lambda rng, size: rng.exponential(size=size), 12.0, np.exp(-12.0), (0.2, 5)),
        # A light tail is fitted as exponential at most: conservative (p too large), not bold.
        (lambda rng, size: rng.normal(size=size), 5.0, 2.87e-7, (1, 1000)),
    ],
    ids=["exponential", "normal"],
)
def test_tail_reaches_far_below_one_over_n(draw, x, truth, bounds):
    """1 000 draws, a value no draw reaches: the fitted tail gives p far below 1/1001, all the
    empirical p can say."""
    rng = np.random.default_rng(0)
    p = _tail_p(np.full(20, x), draw(rng, (20, 1000)))
    assert np.all(p < 1e-3)
    ratio = np.exp(np.mean(np.log(p / truth)))  # geometric mean over 20 backgrounds
    assert bounds[0] < ratio < bounds[1]


def test_tail_p_values_are_uniform_under_the_null():
    """Observed values drawn like their backgrounds: p uniform, 5 % below 0.05."""
    from scipy import stats

    rng = np.random.default_rng(1)
    draws = rng.gamma(2.0, size=(600, 1000))
    observed = rng.gamma(2.0, size=600)
    p = _tail_p(observed, draws)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.02 < np.mean(p < 0.05) < 0.08


def test_empirical_p_kept_where_the_draws_cover_it():
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(50, 1000))
    observed = np.quantile(draws, 0.9, axis=1)  # about 100 draws reach it
    count = (draws >= observed[:, None]).sum(axis=1)
    np.testing.assert_allclose(_tail_p(observed, draws), (1 + count) / 1001)


def test_a_tail_of_repeated_values_is_not_extrapolated():
    """Means over a handful of edges take few values (most draws 0): no smooth tail to fit,
    so a value past every draw keeps the empirical p, 1 / (n + 1), not a p of 1e-20."""
    rng = np.random.default_rng(3)
    draws = np.where(rng.random((5, 1000)) < 0.9, 0.0, rng.integers(1, 4, (5, 1000)) / 2)
    p = _tail_p(np.full(5, 10.0), draws)
    np.testing.assert_allclose(p, 1 / 1001)


def test_boundaries_of_a_few_edges_are_not_tested(simulated):
    from spaseg.tl._lr_tables import MIN_EDGES

    adata, pairs = simulated
    edges = lr_scores(adata, pairs, n_background=50, min_spots=3).uns["lr_domain_pairs"]
    across = edges[edges["sender"] != edges["receiver"]]
    assert across.loc[across["n_edges"] < MIN_EDGES, "padj"].isna().all()
    assert across.loc[across["n_edges"] >= MIN_EDGES, "padj"].notna().all()


def test_spot_level_padj_is_one_family_over_spots_and_pairs(simulated):
    """frac_spots_significant counts spots that pass BH over every spot and pair at once."""
    adata, pairs = simulated
    lr = lr_scores(adata, pairs, n_background=50, min_spots=3, alpha=0.99)
    p = sparse.csr_matrix(lr.layers["neglog10_pval"])
    p_all = np.ones(lr.shape)
    p_all[p.nonzero()] = 10.0**-p.data  # absent entries: score 0, p = 1
    expected = fdrcorrection(p_all.ravel())[1].reshape(lr.shape)
    padj = sparse.csr_matrix(lr.layers["neglog10_padj"])
    found = np.ones(lr.shape)
    found[padj.nonzero()] = 10.0**-padj.data
    np.testing.assert_allclose(found, expected, rtol=1e-3)
    # frac_spots_significant: the share of each domain's spots whose padj < alpha.
    table = lr.uns["lr_pairs"].set_index(["domain", "pair"])["frac_spots_significant"]
    section = table.loc["all"].loc[lr.var_names].to_numpy()
    np.testing.assert_allclose(section, (expected < 0.99).mean(axis=0), atol=1e-9)
    assert section.max() > 0
    for domain in lr.obs["domain"].cat.categories:
        rows = (lr.obs["domain"] == domain).to_numpy()
        share = (expected[rows] < 0.99).mean(axis=0)
        np.testing.assert_allclose(table.loc[domain].loc[lr.var_names].to_numpy(), share)


def test_no_spatial_association_gives_uniform_domain_pvalues_at_the_top_of_a_bin():
    """Expression with no spatial structure, and a resource made of the most expressed gene of
    each expression bin: a pair's score then beats most random pairs of its bins on expression
    alone. The tests compare scores relative to their genes' expression (``_Expected``), so
    the p-values stay near uniform instead of piling up below 0.05."""
    rng = np.random.default_rng(7)
    side, n_genes = 30, 300
    rows, cols = np.divmod(np.arange(side * side), side)
    rate = rng.gamma(0.6, 1.0, n_genes)  # gene means spread over two orders of magnitude
    counts = rng.poisson(rate, (side * side, n_genes)).astype(np.float32)
    adata = ad.AnnData(
        sparse.csr_matrix(np.log1p(counts)),
        obs=pd.DataFrame(
            {"array_row": rows, "array_col": cols, "domain": (rows * 3 // side).astype(str)},
            index=[f"s{i}" for i in range(side * side)],
        ),
        var=pd.DataFrame(index=[f"G{g}" for g in range(n_genes)]),
    )
    means = np.asarray(np.sqrt(adata.X).mean(axis=0)).ravel()
    edges = np.quantile(means, np.linspace(0, 1, 11)[1:-1])
    top = [np.flatnonzero(np.searchsorted(edges, means, side="right") == b) for b in range(10)]
    top = [g[np.argsort(means[g])[-3:]] for g in top]  # three most expressed of each bin
    genes = np.concatenate(top)
    pairs = pd.DataFrame(
        [(f"G{a}", f"G{b}") for a in genes for b in genes if a != b][::7],
        columns=["ligand", "receptor"],
    )
    lr = lr_scores(adata, pairs, n_background=200, min_spots=1, seed=1)
    p = lr.uns["lr_pairs"]["pval"].to_numpy()
    assert len(p) > 100
    assert np.mean(p < 0.05) < 0.1 and 0.35 < np.median(p) < 0.65, (np.mean(p < 0.05), np.median(p))


@pytest.mark.parametrize("top_count", [3, 4], ids=["every-entry-kept", "p-of-1-dropped"])
def test_neglog10_layer_keeps_the_scores_structure_without_p_of_one(top_count):
    """The spot-level p layer holds -log10 p of every stored score, looked up by its
    background count, and no explicit zeros (p = 1, count = n); with none such it shares the
    scores' index arrays instead of copying them."""
    from spaseg.tl._lr import _neglog10_layer

    n = 4
    scores = sparse.csr_matrix(np.array([[0.5, 0, 0.2], [0, 0, 0], [0.1, 0.3, 0]], np.float32))
    count = np.array([0, 2, 1, top_count], dtype=np.uint16)  # aligned with scores.data
    p_of_count = ((1.0 + np.arange(n + 1)) / (n + 1.0)).astype(np.float32)
    layer = _neglog10_layer(scores, count, p_of_count)
    dense = np.zeros(scores.shape)
    dense[scores.nonzero()] = -np.log10(p_of_count[count])
    np.testing.assert_allclose(layer.toarray(), dense, rtol=1e-6)
    assert (layer.data > 0).all()
    assert layer.nnz == scores.nnz - (top_count == n)
    assert np.shares_memory(layer.indices, scores.indices) == (top_count < n)
