"""Spatially variable genes: Wilcoxon and fold changes, FDR, Moran's I, filters, errors, plot."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats
from statsmodels.stats.multitest import multipletests

import spaseg
from spaseg import InputError
from spaseg.pl._svg import svg as plot_svg
from spaseg.tl._moran import morans_i, spatial_knn_graph
from spaseg.tl._svg import TABLE_COLUMNS, svg


def _section(values, domains, xy=None) -> ad.AnnData:
    """AnnData from log1p-normalised values, domain labels and (default: a line of) spots."""
    values = np.asarray(values, dtype=np.float32)
    n = values.shape[0]
    obs = pd.DataFrame({"domain": pd.Categorical(domains)}, index=[f"s{i}" for i in range(n)])
    adata = ad.AnnData(sparse.csr_matrix(values), obs=obs)
    adata.var_names = [f"g{j}" for j in range(values.shape[1])]
    adata.obsm["spatial"] = np.column_stack([np.arange(n), np.zeros(n)]) if xy is None else xy
    return adata


def _random_section(n=240, n_genes=30, n_domains=3, seed=0) -> ad.AnnData:
    """Sparse, heavily tied values (Poisson counts, log1p) on a square grid."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    xy = np.column_stack(np.divmod(np.arange(n), side)).astype(float)
    domains = rng.integers(0, n_domains, n).astype(str)
    boost = 1 + (domains[:, None] == "0") * (np.arange(n_genes) % 3)  # some genes up in "0"
    lam = rng.uniform(0.05, 2.0, n_genes) * boost
    return _section(np.log1p(rng.poisson(lam)), domains, xy)


def _planted(seed=0, n_domains=4):
    """Simulated tissue with strong planted markers and nothing else spatial."""
    adata = spaseg.datasets.simulate_tissue(
        n_domains, n_rows=30, n_genes=300, n_markers=10, marker_fold_change=(6.0, 12.0),
        mean_counts=4000.0, domain_lfc_sd=0.0, seed=seed,
    )  # fmt: skip
    spaseg.pp.normalize_pca(adata, n_comps=5)
    adata.obs["domain"] = adata.obs["domain_truth"]
    return adata


def _is_planted(table, adata) -> pd.Series:
    """Rows of the table that pair a planted marker with its own domain."""
    return table["gene"].map(adata.var["marker_domain"]).astype(str) == table["domain"].astype(str)


def _row(table, gene, domain):
    return table[(table["gene"] == gene) & (table["domain"] == domain)].iloc[0]


def test_log2fc_on_normalised_scale_hand_example():
    # Normalised values: domain A 3 and 5 (mean 4), domain B 0, 1, 1, 0 (mean 0.5).
    counts = np.array([[3.0], [5.0], [0.0], [1.0], [1.0], [0.0]])
    adata = _section(np.log1p(counts), ["A", "A", "B", "B", "B", "B"])
    table = svg(adata, pseudocount=0.01, copy=True)
    a = _row(table, "g0", "A")
    assert a["mean_in"] == pytest.approx(4.0) and a["mean_out"] == pytest.approx(0.5)
    assert a["log2fc"] == pytest.approx(np.log2(4.01 / 0.51))
    assert _row(table, "g0", "B")["log2fc"] == pytest.approx(np.log2(0.51 / 4.01))
    assert a["in_frac"] == 1.0 and a["out_frac"] == 0.5
    # Not the mean of the log values (geometric-type mean) nor the reference's exp-of-exp.
    assert a["log2fc"] != pytest.approx(np.log2(np.expm1(np.log1p([3, 5]).mean()) / 0.5), abs=0.01)


@pytest.mark.parametrize(
    ("dtype", "dense"), [(np.float32, False), (np.float64, False), (np.float32, True)]
)
def test_wilcoxon_matches_scipy_with_ties(dtype, dense):
    adata = _random_section()
    x = adata.X.toarray().astype(dtype)
    adata.X = x if dense else sparse.csr_matrix(x)
    table = svg(adata, copy=True)
    labels = adata.obs["domain"].to_numpy()
    for gene in (0, 4, 7, 29):
        for domain in ("0", "1", "2"):
            inside = labels == domain
            expected = stats.mannwhitneyu(
                x[inside, gene], x[~inside, gene], method="asymptotic", use_continuity=False
            ).pvalue
            assert _row(table, f"g{gene}", domain)["pval"] == pytest.approx(expected, rel=1e-6)


def test_fdr_is_benjamini_hochberg_and_monotone():
    table = svg(_random_section(n_genes=60, seed=3), copy=True)
    for _, part in table.groupby("domain", observed=True):
        part = part.dropna(subset=["pval"]).sort_values("pval")
        assert np.all(np.diff(part["padj"].to_numpy()) >= 0)
        assert np.all(part["padj"] >= part["pval"]) and np.all(part["padj"] <= 1)
        expected = multipletests(part["pval"], method="fdr_bh")[1]
        np.testing.assert_allclose(part["padj"], expected)


def test_planted_markers_recovered():
    adata = _planted()
    table = svg(adata, copy=True)
    planted = _is_planted(table, adata)
    hits = table["passes"] & planted
    assert ((table["fails"] == "") == table["passes"]).all()
    assert hits.sum() / planted.sum() >= 0.9  # recall
    assert hits.sum() / table["passes"].sum() >= 0.9  # precision
    markers = table[planted]
    assert markers["log2fc"].between(1.0, 5.0).all()  # plausible, not ~98
    assert (markers["morans_padj"] < 0.05).mean() >= 0.9


def test_gradient_is_global_not_domain_specific():
    adata = _planted(seed=1)
    rng = np.random.default_rng(0)
    x = adata.obsm["spatial"][:, 0]
    gradient = np.log1p(rng.poisson(20 * np.exp(1.2 * (x - x.mean()) / np.ptp(x))))
    values = sparse.hstack([adata.X, sparse.csr_matrix(gradient[:, None])], format="csr")
    var = pd.concat([adata.var, pd.DataFrame({"marker_domain": [""]}, index=["gradient"])])
    adata = ad.AnnData(values, obs=adata.obs, var=var, obsm={"spatial": adata.obsm["spatial"]})
    table = svg(adata, copy=True)
    rows = table[table["gene"] == "gradient"]
    assert rows["morans_padj"].iloc[0] < 1e-6 and rows["morans_i"].iloc[0] > 0.3
    assert not rows["passes"].any()


def test_single_spot_domain_and_zero_count_gene():
    adata = _random_section(seed=5)
    adata.obs["domain"] = adata.obs["domain"].cat.add_categories("lonely")
    adata.obs.iloc[0, adata.obs.columns.get_loc("domain")] = "lonely"
    x = adata.X.toarray()
    x[:, 2] = 0.0
    adata.X = sparse.csr_matrix(x)
    table = svg(adata, copy=True)
    lonely = table[table["domain"] == "lonely"]
    assert lonely["in_frac"].isin([0.0, 1.0]).all() and np.isfinite(lonely["log2fc"]).all()
    assert lonely["pval"].isna().all() and not lonely["passes"].any()  # too small to test
    # One spot is still a valid rank-sum test when asked for; it just proves nothing.
    single = svg(adata, min_spots=1, copy=True)
    assert single.loc[single["domain"] == "lonely", "pval"].notna().any()
    zero = table[table["gene"] == "g2"]
    assert zero[["pval", "padj", "morans_i", "morans_padj"]].isna().all().all()
    assert not zero["passes"].any() and (zero["in_frac"] == 0).all()
    assert zero["fails"].str.contains("padj").all()
    # Untestable genes are not counted in the FDR correction.
    part = table[(table["domain"] == "0") & table["pval"].notna()]
    np.testing.assert_allclose(part["padj"], multipletests(part["pval"], method="fdr_bh")[1])


def test_unlabelled_spots_are_left_out_of_domain_tests():
    adata = _random_section(seed=6)
    full = svg(adata[10:].copy(), copy=True).set_index(["gene", "domain"])
    adata.obs["domain"] = adata.obs["domain"].astype(object)
    adata.obs.iloc[:10, adata.obs.columns.get_loc("domain")] = np.nan
    part = svg(adata, copy=True).set_index(["gene", "domain"])
    np.testing.assert_allclose(part["pval"], full.loc[part.index, "pval"])


def test_errors_name_the_problem():
    adata = _random_section()
    with pytest.raises(InputError, match="spaseg.tl.spaseg") as err:
        svg(adata, groupby="spaseg_domain")
    assert err.value.field == "spaseg_domain"
    adata.obs["one"] = pd.Categorical(["a"] * adata.n_obs)
    with pytest.raises(InputError, match="at least two domains"):
        svg(adata, groupby="one")
    scaled = adata.copy()
    scaled.X = sparse.csr_matrix(scaled.X.toarray() - 1.0)
    with pytest.raises(InputError, match="negative"):
        svg(scaled)
    scaled.X = sparse.csr_matrix(np.full(adata.shape, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        svg(scaled)
    with pytest.raises(InputError, match="obsp has no graph"):
        svg(adata, spatial_graph="spatial_connectivities")


def test_outputs_are_stored_unless_copy(tmp_path):
    adata = _random_section()
    adata.var["gene_symbols"] = ["SYM1", np.nan] + [f"S{j}" for j in range(2, adata.n_vars)]
    table = svg(adata, copy=True)
    assert "svg" not in adata.uns and "morans_i" not in adata.var
    assert list(table.columns) == TABLE_COLUMNS and TABLE_COLUMNS[:11] == [
        "gene", "symbol", "domain", "log2fc", "pval", "padj", "in_frac", "out_frac",
        "morans_i", "morans_padj", "passes",
    ]  # fmt: skip
    assert len(table) == adata.n_vars * 3
    svg(adata)
    pd.testing.assert_frame_equal(adata.uns["svg"], table)
    assert adata.uns["svg_params"]["min_in_frac"] == 0.75
    assert set(table.loc[table["gene"].isin(["g0", "g1"]), "symbol"]) == {"SYM1", ""}
    adata.write_h5ad(tmp_path / "svg.h5ad")  # the table and its parameters can be saved
    back = ad.read_h5ad(tmp_path / "svg.h5ad").uns["svg"]
    assert len(back) == len(table) and back["passes"].dtype == bool
    np.testing.assert_allclose(
        adata.var["morans_i"], table.drop_duplicates("gene").set_index("gene")["morans_i"].loc[
            adata.var_names
        ],
    )  # fmt: skip


def test_morans_i_matches_squidpy():
    sq = pytest.importorskip("squidpy")
    adata = _planted(seed=2)
    adata.obsp["spatial_connectivities"] = spatial_knn_graph(adata)
    ours = morans_i(adata, spatial_graph="spatial_connectivities")
    ref = sq.gr.spatial_autocorr(adata, mode="moran", n_perms=None, copy=True).loc[ours.index]
    np.testing.assert_allclose(ours["morans_i"], ref["I"], atol=1e-6)
    positive = ref["I"] > 0
    np.testing.assert_allclose(ours["morans_pval"][positive], ref["pval_norm"][positive], atol=1e-6)


def test_knn_graph_is_row_standardised_without_self_loops():
    adata = _random_section(n=50)
    adata.obsm["spatial"][1] = adata.obsm["spatial"][0]  # a duplicated position
    graph = spatial_knn_graph(adata, n_neighbors=4)
    np.testing.assert_allclose(np.asarray(graph.sum(axis=1)).ravel(), 1.0)
    assert graph.diagonal().sum() == 0 and (graph.getnnz(axis=1) >= 4).all()
    assert graph[0, 1] > 0 and graph[1, 0] > 0  # the spot at the same place is a neighbour


def _square_section(seed=1) -> ad.AnnData:
    adata = spaseg.datasets.simulate_tissue(
        3, grid="square", n_rows=24, n_genes=60, n_markers=5, seed=seed
    )
    adata.X = np.log1p(adata.X)
    return adata


def _off_grid(adata: ad.AnnData) -> ad.AnnData:
    """The same spots with coordinates only (grid indices dropped)."""
    out = adata.copy()
    out.obs = out.obs.drop(columns=["array_row", "array_col"])
    return out


def test_graph_follows_the_grid():
    """On a grid: Visium's ring of six, the four edge neighbours of a square bin. Off a grid
    on square coordinates the 5th and 6th nearest are two of four tied corners: all four
    are taken, not two picked by the order of the bins."""
    square = _square_section()
    assert np.bincount(spatial_knn_graph(square).getnnz(axis=1)).argmax() == 4
    assert np.bincount(spatial_knn_graph(_off_grid(square)).getnnz(axis=1)).argmax() == 8
    hexagonal = spaseg.datasets.simulate_tissue(3, n_rows=20, n_genes=40, n_markers=2, seed=1)
    assert np.bincount(spatial_knn_graph(hexagonal).getnnz(axis=1)).argmax() == 6
    assert (spatial_knn_graph(hexagonal) != spatial_knn_graph(_off_grid(hexagonal))).nnz > 0


@pytest.mark.parametrize("on_grid", [True, False])
@pytest.mark.parametrize("change", ["shuffled", "rotated 90", "rotated 30 and shifted"])
def test_morans_i_does_not_depend_on_spot_order_or_rotation(change, on_grid):
    adata = _square_section() if on_grid else _off_grid(_square_section())
    expected = morans_i(adata)["morans_i"].to_numpy()
    other = adata[np.random.default_rng(0).permutation(adata.n_obs)].copy()
    xy = other.obsm["spatial"].astype(np.float64)
    if change != "shuffled":
        angle = np.deg2rad(90 if change == "rotated 90" else 30)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        other.obsm["spatial"] = xy @ rot.T + (0 if change == "rotated 90" else 1e4)
    np.testing.assert_allclose(morans_i(other)["morans_i"].to_numpy(), expected, rtol=1e-9)


def test_h5ad_without_spatial_gets_the_hexagonal_neighbours(tmp_path):
    """Visium grid indices are converted to centre distances: the graph and Moran's I are
    those of the true geometry (in index units the 5th and 6th neighbours would be wrong)."""
    truth = spaseg.datasets.simulate_tissue(3, n_rows=20, n_genes=40, n_markers=2, seed=2)
    bare = truth.copy()
    del bare.obsm["spatial"]
    bare.write_h5ad(tmp_path / "bare.h5ad")
    read = spaseg.io.read_h5ad(tmp_path / "bare.h5ad", sample="bare")
    # The coordinates alone (no grid indices) give the true geometry's neighbours.
    truth, read = _off_grid(truth), _off_grid(read)
    assert (spatial_knn_graph(read) != spatial_knn_graph(truth)).nnz == 0
    for adata in (truth, read):
        adata.X = np.log1p(adata.X)
    np.testing.assert_allclose(morans_i(read)["morans_i"], morans_i(truth)["morans_i"], rtol=1e-9)


def test_group_mode_links_and_centres_within_sections():
    sections = spaseg.datasets.simulate_sections(2, n_domains=3, n_rows=20, n_genes=120,
                                                 n_markers=10, seed=0)  # fmt: skip
    joint = ad.concat(sections, label="sample", keys=["a", "b"], index_unique="-", merge="same")
    spaseg.pp.normalize_pca(joint, n_comps=5)
    joint.obs["domain"] = joint.obs["domain_truth"]
    # A gene that only differs between sections: spatial autocorrelation within neither.
    rng = np.random.default_rng(0)
    offset = np.where(joint.obs["sample"] == "a", 3.0, 0.5) + rng.uniform(0, 0.5, joint.n_obs)
    x = joint.X.toarray()
    x[:, 0] = offset
    joint.X = sparse.csr_matrix(x)
    graph = spatial_knn_graph(joint, batch_key="sample")
    sample = joint.obs["sample"].to_numpy()
    rows, cols = graph.nonzero()
    assert (sample[rows] == sample[cols]).all()
    table = svg(joint, batch_key="sample", copy=True)
    gene0 = table[table["gene"] == joint.var_names[0]].iloc[0]
    assert abs(gene0["morans_i"]) < 0.1 and gene0["morans_padj"] > 0.05
    assert table.loc[_is_planted(table, joint), "score"].median() > 5


def _joint(n_sections=2, seed=0, shuffle=True):
    """Serial sections in one AnnData (same grid, so their coordinates overlap), spots of the
    sections interleaved when ``shuffle``; log-normalised, true domains as labels."""
    sections = spaseg.datasets.simulate_sections(
        n_sections, n_domains=3, n_rows=16, n_genes=120, n_markers=10,
        marker_fold_change=(6.0, 12.0), seed=seed,
    )  # fmt: skip
    keys = [f"sec{k}" for k in range(n_sections)]
    joint = ad.concat(sections, label="sample", keys=keys, index_unique="-", merge="same")
    if shuffle:
        joint = joint[np.random.default_rng(seed).permutation(joint.n_obs)].copy()
    spaseg.pp.normalize_pca(joint, n_comps=5)
    joint.obs["domain"] = joint.obs["domain_truth"]
    return joint


def test_group_graph_never_links_sections():
    joint = _joint(n_sections=3)
    sample = joint.obs["sample"].to_numpy()
    # The sections lie on one another: a graph over all spots links them (the test can fail).
    rows, cols = spatial_knn_graph(joint).nonzero()
    assert (sample[rows] != sample[cols]).mean() > 0.3
    graph = spatial_knn_graph(joint, batch_key="sample")
    rows, cols = graph.nonzero()
    assert (sample[rows] == sample[cols]).all()
    assert np.bincount(graph.getnnz(axis=1)).argmax() == 6  # the hexagonal ring
    np.testing.assert_allclose(np.asarray(graph.sum(axis=1)).ravel(), 1.0)
    for name in ("sec0", "sec1", "sec2"):
        inside = np.flatnonzero(sample == name)
        alone = spatial_knn_graph(joint[inside].copy())
        assert (graph[inside][:, inside] != alone).nnz == 0  # each block: the section alone
    # A spot alone in its section has no neighbour (and links to no other section).
    joint.obs["sample"] = joint.obs["sample"].cat.add_categories("single")
    joint.obs.iloc[0, joint.obs.columns.get_loc("sample")] = "single"
    lonely = spatial_knn_graph(joint, batch_key="sample")
    assert lonely[0].nnz == 0 and lonely[:, 0].nnz == 0


def test_group_mode_rejects_a_given_graph_across_sections():
    joint = _joint()
    joint.obsp["across"] = spatial_knn_graph(joint)
    with pytest.raises(InputError, match="links spots of different sections"):
        svg(joint, batch_key="sample", spatial_graph="across", copy=True)
    joint.obsp["within"] = spatial_knn_graph(joint, batch_key="sample")
    given = svg(joint, batch_key="sample", spatial_graph="within", copy=True)
    built = svg(joint, batch_key="sample", copy=True)
    np.testing.assert_allclose(given["morans_i"], built["morans_i"])


def _van_elteren_p(values, inside, sample) -> float:
    """Stratified rank-sum p-value written out from its definition (weights 1 / (n + 1))."""
    deviation = variance = 0.0
    for name in np.unique(sample):
        here = sample == name
        x, mine = values[here], inside[here]
        n, n1 = here.sum(), mine.sum()
        if n1 in (0, n):
            continue
        ranks = stats.rankdata(x)
        _, tied = np.unique(x, return_counts=True)
        ties = (tied**3 - tied).sum()
        deviation += (ranks[mine].sum() - n1 * (n + 1) / 2) / (n + 1)
        variance += n1 * (n - n1) / 12 * ((n + 1) - ties / (n * (n - 1))) / (n + 1) ** 2
    return 2 * stats.norm.sf(abs(deviation) / np.sqrt(variance))


def test_group_mode_stratifies_domains_and_pools_morans_i_per_section():
    joint = _joint(n_sections=2, seed=4)
    table = svg(joint, batch_key="sample", copy=True)
    assert list(table.columns) == TABLE_COLUMNS
    # Domain tests: van Elteren's stratified rank-sum test over the sections.
    x = joint.X.toarray().astype(np.float64)
    labels = joint.obs["domain"].astype(str).to_numpy()
    sample = joint.obs["sample"].to_numpy()
    for gene in (0, 5, 50):
        for domain in np.unique(labels):
            expected = _van_elteren_p(x[:, gene], labels == domain, sample)
            row = _row(table, joint.var_names[gene], domain)
            assert row["pval"] == pytest.approx(expected, rel=1e-6)
    # One section: the plain rank-sum test.
    one = joint[sample == "sec0"].copy()
    alone = svg(one, copy=True)
    first = np.unique(labels)[0]
    inside = one.obs["domain"].astype(str).to_numpy() == first
    expected = stats.mannwhitneyu(
        x[sample == "sec0"][inside, 5], x[sample == "sec0"][~inside, 5],
        method="asymptotic", use_continuity=False,
    ).pvalue  # fmt: skip
    assert _row(alone, one.var_names[5], first)["pval"] == pytest.approx(expected, rel=1e-6)
    # Moran's I: sum over sections of z' W z over sum of z' z, each section centred and
    # its graph built on it alone.
    num, den, n, s0 = np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0, 0.0
    for name in ("sec0", "sec1"):
        inside = sample == name
        w = spatial_knn_graph(joint[inside].copy()).toarray()
        z = x[inside] - x[inside].mean(axis=0)
        num += np.einsum("ij,ij->j", z, w @ z)
        den += np.einsum("ij,ij->j", z, z)
        n, s0 = n + inside.sum(), s0 + w.sum()
    expected = pd.Series((n / s0) * num / den, index=joint.var_names)
    per_gene = table.drop_duplicates("gene").set_index("gene")["morans_i"]
    np.testing.assert_allclose(per_gene, expected.loc[per_gene.index], rtol=1e-6)
    # Planted markers are found in the group as they are in one section.
    planted = _is_planted(table, joint)
    hits = table["passes"] & planted
    assert hits.sum() / planted.sum() >= 0.9 and hits.sum() / table["passes"].sum() >= 0.9
    assert (table.loc[planted, "morans_padj"] < 0.05).mean() >= 0.9


def test_group_mode_a_deeper_section_does_not_make_markers():
    """Two sections of different depth and domain make-up: a gene that is only higher in the
    deeper section (where domain "A" is 80 % of the spots, against 20 % in the other) is a
    strong "marker" of A when the spots are pooled, and not when the test is stratified; a
    real marker of A stays significant."""
    rng = np.random.default_rng(0)
    n = 600
    sample = np.repeat(["deep", "shallow"], n)
    domain = np.where(rng.random(2 * n) < np.where(sample == "deep", 0.8, 0.2), "A", "B")
    depth_only = rng.poisson(np.where(sample == "deep", 6.0, 1.0))
    marker = rng.poisson(np.where(domain == "A", 3.0, 1.0) * np.where(sample == "deep", 3, 1))
    noise = rng.poisson(2.0, 2 * n)
    joint = _section(np.log1p(np.column_stack([depth_only, marker, noise])), domain)
    joint.obs["sample"] = sample
    joint.obsm["spatial"] = np.column_stack([np.arange(2 * n) % n, np.zeros(2 * n)])
    pooled = svg(joint, copy=True)
    stratified = svg(joint, batch_key="sample", copy=True)
    assert _row(pooled, "g0", "A")["pval"] < 1e-20  # the confounded test (it can fail)
    assert _row(stratified, "g0", "A")["pval"] > 0.01
    assert _row(stratified, "g1", "A")["pval"] < 1e-20
    assert _row(stratified, "g2", "A")["pval"] > 0.01


def test_plot(tmp_path):
    adata = _planted()
    assert svg(adata) is None  # copy=False: written to adata, nothing returned
    table = adata.uns["svg"]
    assert list(adata.var["morans_i"]) == list(
        table.drop_duplicates("gene").set_index("gene").loc[adata.var_names, "morans_i"]
    )
    fig = plot_svg(adata, table, n_top=2, title="planted")
    assert len(fig.axes) >= 4 * 2 + 1
    fig.savefig(tmp_path / "svg.png", dpi=50)
    assert (tmp_path / "svg.png").stat().st_size > 0


@pytest.mark.realdata
def test_dlpfc_white_matter_markers(shared_data):
    adata = spaseg.io.read_h5ad(shared_data / "dlpfc" / "151673.h5ad", sample="151673")
    spaseg.pp.qc(adata, sample="151673")
    spaseg.pp.normalize_pca(adata, n_comps=5)
    adata.obs["domain"] = adata.obs["layer_guess"].astype(str).replace("NA", np.nan)
    table = svg(adata, copy=True)
    wm = table[(table["domain"] == "WM") & table["symbol"].isin(["MOBP", "MBP", "PLP1"])]
    assert wm["passes"].all() and wm["log2fc"].between(1.5, 6.0).all()
    assert (wm.index - table.index[table["domain"] == "WM"].min() < 50).all()  # rank < 50


def test_plot_without_gene_symbols():
    """Sections without var["gene_symbols"] (e.g. cell tables) label genes by their name."""
    import spaseg

    adata = spaseg.datasets.simulate_tissue(3, grid="square", n_rows=12, n_genes=120, seed=0)
    del adata.var["gene_symbols"]
    adata.obs["domain"] = adata.obs["domain_truth"]
    spaseg.pp.normalize_pca(adata, n_comps=5)
    table = spaseg.tl.svg(adata, groupby="domain", copy=True)
    fig = spaseg.pl.svg(adata, table, n_top=2)
    assert fig.axes
