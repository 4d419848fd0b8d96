"""The tissue simulators: contracts, determinism, truth that is really in the counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from spaseg import InputError
from spaseg.datasets._simulate import simulate_sections, simulate_tissue

SMALL = {"n_rows": 24, "n_genes": 200, "n_markers": 10}


@pytest.fixture(scope="module")
def tissue():
    return simulate_tissue(5, seed=3, **SMALL)


def _same(a, b) -> bool:
    return (
        a.shape == b.shape
        and (a.X != b.X).nnz == 0
        and a.obs.equals(b.obs)
        and a.var.equals(b.var)
        and np.array_equal(a.obsm["spatial"], b.obsm["spatial"])
    )


def test_same_seed_same_data_other_seed_other_data(tissue):
    assert _same(tissue, simulate_tissue(5, seed=3, **SMALL))
    other = simulate_tissue(5, seed=4, **SMALL)
    assert not _same(tissue, other)


def test_anndata_contract(tissue, tmp_path):
    adata = tissue
    assert sparse.issparse(adata.X) and adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    assert adata.X.data.min() >= 0 and np.array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.obs_names.is_unique and adata.obs_names.str.fullmatch(r"[ACGT]{16}-1").all()
    assert adata.var_names.is_unique and adata.var_names.str.fullmatch(r"ENSSIM\d{11}").all()
    assert {"array_row", "array_col", "domain_truth"} <= set(adata.obs)
    assert {"gene_symbols", "marker_domain", "gene_role"} <= set(adata.var)
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    sim = adata.uns["simulation"]
    assert sim["seed"] == 3 and sim["n_domains"] == 5 and sim["n_genes"] == 200
    assert sim["grid"] == "hex" and sim["n_cols"] > 0 and sim["spacing_um"] == 100.0
    adata.copy().write_h5ad(tmp_path / "sim.h5ad")  # writing turns strings into categoricals
    back = ad.read_h5ad(tmp_path / "sim.h5ad")
    assert back.var.equals(adata.var) and back.obs.equals(adata.obs)
    assert back.uns["simulation"]["marker_fold_change"].tolist() == [2.0, 4.0]


def test_gene_table(tissue):
    var = tissue.var
    mito = var["gene_symbols"].str.startswith("MT-")
    assert mito.sum() == 13 and (var.loc[mito, "gene_role"] == "mito").all()
    assert (var["gene_role"] == "noise").sum() == 20
    markers = var["marker_domain"].value_counts().drop("")
    assert markers.to_dict() == {f"D{k}": 10 for k in range(5)}
    assert (var.loc[var["marker_domain"] == "", "gene_role"] != "marker").all()
    mito_share = tissue.X[:, mito.to_numpy()].sum() / tissue.X.sum()
    assert 0.02 < mito_share < 0.1


def test_hex_grid_follows_visium():
    adata = simulate_tissue(3, grid="hex", n_rows=20, n_cols=30, shape="full", **{"n_genes": 100})
    row, col = adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()
    assert ((row - col) % 2 == 0).all()  # each row holds every second column
    assert row.min() == 0 and row.max() == 19 and col.min() == 0 and col.max() == 29
    assert adata.n_obs == 20 * 15
    xy = adata.obsm["spatial"]
    np.testing.assert_allclose(xy[:, 0], col * 50.0)
    np.testing.assert_allclose(xy[:, 1], row * 100.0 * np.sqrt(3) / 2)
    # all six neighbours 100 µm away
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(d.min(axis=1), 100.0)


def test_square_grid():
    adata = simulate_tissue(4, grid="square", n_rows=20, n_cols=25, shape="full", n_genes=150)
    assert adata.n_obs == 20 * 25 and adata.uns["simulation"]["spacing_um"] == 50.0
    xy, obs = adata.obsm["spatial"], adata.obs
    np.testing.assert_allclose(xy, np.column_stack([obs["array_col"], obs["array_row"]]) * 50.0)


def test_tissue_outline_leaves_background():
    full = simulate_tissue(n_rows=24, n_genes=100, n_markers=5, shape="full")
    blob = simulate_tissue(n_rows=24, n_genes=100, n_markers=5, shape="ellipse")
    assert 0.3 * full.n_obs < blob.n_obs < 0.8 * full.n_obs


@pytest.mark.parametrize("pattern", ["layers", "blobs", "mixed"])
@pytest.mark.parametrize("n_domains", [2, 7])
def test_every_domain_present(pattern, n_domains):
    adata = simulate_tissue(n_domains, pattern=pattern, n_rows=30, n_genes=100, n_markers=5)
    truth = adata.obs["domain_truth"]
    assert list(truth.cat.categories) == [f"D{k}" for k in range(n_domains)]
    assert truth.value_counts(normalize=True).min() >= 0.02


def test_markers_higher_in_their_domain(tissue):
    x = tissue.X.toarray()
    x /= x.sum(axis=1, keepdims=True)
    truth = tissue.obs["domain_truth"].to_numpy()
    marks = tissue.var["marker_domain"].to_numpy()
    inside = truth[:, None] == marks[None, :]  # spots x genes: spot in the gene's domain
    genes = marks != ""
    ratio = (x * inside).sum(0)[genes] / inside.sum(0)[genes]
    ratio /= (x * ~inside).sum(0)[genes] / (~inside).sum(0)[genes]
    assert np.median(ratio) > 1.5 and ratio.min() > 1.0


def test_serial_sections_share_geometry():
    sections = simulate_sections(3, n_domains=4, pattern="mixed", **SMALL)
    assert len(sections) == 3
    assert [s.obs_names[0][-2:] for s in sections] == ["-1", "-2", "-3"]
    assert len({s.n_obs for s in sections}) > 1  # outlines differ
    assert all(s.var_names.equals(sections[0].var_names) for s in sections)
    assert [s.uns["simulation"]["section"] for s in sections] == [0, 1, 2]
    # the same grid position carries the same domain in every section
    key = ["array_row", "array_col"]
    first = sections[0].obs.set_index(key)["domain_truth"]
    for other in sections[1:]:
        shared = other.obs.set_index(key)["domain_truth"]
        common = first.index.intersection(shared.index)
        assert len(common) > 0.8 * len(first)
        assert (first[common] == shared[common]).all()


def test_sections_without_batch_effect_equal_the_tissue(tissue):
    (section,) = simulate_sections(
        1, outline_jitter=0.0, batch_library_sd=0.0, batch_gene_sd=0.0, seed=3, n_domains=5, **SMALL
    )
    assert _same(section, tissue)


def test_bad_parameters_are_named():
    with pytest.raises(InputError, match="pattern"):
        simulate_tissue(pattern="stripes")
    with pytest.raises(InputError, match="n_domains"):
        simulate_tissue(1)
    with pytest.raises(InputError, match="n_genes"):
        simulate_tissue(5, n_genes=50, n_markers=20)
    with pytest.raises(TypeError, match="n_gene"):
        simulate_sections(2, n_gene=10)


def test_large_section_keeps_its_shape_and_depth():
    # How fast is for the benchmarks to say (benchmarks/stereoseq_scale.py), not a unit test.
    adata = simulate_tissue(
        8, grid="square", n_rows=140, n_cols=143, shape="full", n_genes=300, n_markers=10
    )
    assert adata.shape == (20020, 300)
    assert abs(adata.X.sum(axis=1).mean() / 2000 - 1) < 0.05
