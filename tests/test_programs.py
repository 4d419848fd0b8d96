"""Narrow gene programmes (pca.min_program_genes): found by ICA, removed before the PCs are kept."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

import spaseg


def with_planted_programme(seed=0):
    """A simulated section plus two genes that are very high in a scattered third of the spots,
    independently of the domains: a narrow programme, as haemoglobin in vessels."""
    base = spaseg.datasets.simulate_tissue(4, pattern="layers", n_rows=30, n_genes=2000, seed=seed)
    rng = np.random.default_rng(seed)
    counts = np.asarray(base.X.todense() if sparse.issparse(base.X) else base.X)
    depth = counts.sum(axis=1) / counts.sum(axis=1).mean()
    hot = rng.random(base.n_obs) < 0.3
    planted = rng.poisson(np.outer(depth * np.where(hot, 300.0, 1.0), [1.0, 0.6]))
    var = pd.concat(
        [
            base.var[["gene_symbols"]],
            pd.DataFrame({"gene_symbols": ["HBX1", "HBX2"]}, index=["p1", "p2"]),
        ]
    )
    adata = ad.AnnData(
        sparse.csr_matrix(np.hstack([counts, planted]).astype(np.float32)), obs=base.obs, var=var
    )
    adata.obsm["spatial"] = base.obsm["spatial"]
    adata.obs["planted"] = hot
    return adata


def explained(pcs, y):
    """Share of the variance of ``y`` (spots x columns) that the PCs explain (least squares)."""
    y = np.asarray(y, dtype=float).reshape(len(pcs), -1)
    y = y - y.mean(axis=0)
    fitted = pcs @ np.linalg.lstsq(pcs, y, rcond=None)[0]
    return float((fitted**2).sum() / (y**2).sum())


def test_participation_ratio_counts_the_genes_that_carry_a_component():
    loadings = np.zeros((100, 3))
    loadings[:10, 0] = 1.0
    loadings[7, 1] = -2.0
    loadings[:, 2] = 0.5
    np.testing.assert_allclose(spaseg.pp.participation_ratio(loadings), [10, 1, 100])


def test_a_narrow_programme_is_removed_from_the_pcs():
    adata = with_planted_programme()
    plain = spaseg.pp.normalize_pca(adata, n_comps=8, min_program_genes=0, copy=True)
    assert explained(plain.obsm["X_pca"], adata.obs["planted"]) > 0.9  # it takes a PC
    assert "narrow_programs" not in plain.uns["pca"]

    out = spaseg.pp.normalize_pca(adata, n_comps=8, min_program_genes=15, copy=True)
    found = out.uns["pca"]["narrow_programs"]
    assert found["min_genes"] == 15  # at most 1 % of the genes: 2 000 allow 15
    assert len(found["leading_genes"]) >= 1 and found["leading_genes"][0].startswith("HBX")
    assert (found["participation_ratio"] < found["min_genes"]).all()
    assert (
        explained(out.obsm["X_pca"], adata.obs["planted"]) < 0.4
    )  # ICA separates it, not perfectly
    assert out.obsm["X_pca"].shape == (adata.n_obs, 8) and out.varm["PCs"].shape[1] == 8
    assert out.obsm["X_pca"].dtype == np.float32
    ratio = out.uns["pca"]["variance_ratio"]
    assert len(ratio) == 8 and (np.diff(ratio) <= 1e-9).all() and ratio.sum() < 1
    # The domains stay in the kept PCs.
    truth = pd.get_dummies(adata.obs["domain_truth"]).to_numpy(float)
    before, after = explained(plain.obsm["X_pca"], truth), explained(out.obsm["X_pca"], truth)
    assert after > before - 0.05, (before, after)


def test_without_a_narrow_programme_the_pcs_are_the_plain_pca():
    adata = spaseg.datasets.simulate_tissue(4, pattern="blobs", n_rows=24, seed=3)
    out = spaseg.pp.normalize_pca(adata, n_comps=6, min_program_genes=15, copy=True)
    plain = spaseg.pp.normalize_pca(adata, n_comps=6, min_program_genes=None, copy=True)
    assert len(out.uns["pca"]["narrow_programs"]["leading_genes"]) == 0
    for k in range(6):
        r = np.corrcoef(out.obsm["X_pca"][:, k], plain.obsm["X_pca"][:, k])[0, 1]
        assert abs(r) > 0.999, (k, r)
    assert out.uns["pca"]["params"]["min_program_genes"] == 15
    assert plain.uns["pca"]["params"]["min_program_genes"] == 0


def test_joint_pca_removes_narrow_programmes_too():
    sections = {f"s{i}": with_planted_programme(seed=i) for i in range(2)}
    joint = spaseg.pp.joint_normalize_pca(sections, n_comps=6, min_program_genes=15)
    assert joint.uns["pca"]["narrow_programs"]["leading_genes"][0].startswith(("p1", "p2"))
    assert explained(joint.obsm["X_pca"], joint.obs["planted"].astype(float)) < 0.4


def test_large_sections_are_searched_on_a_subset_and_projected(monkeypatch):
    """Above FIT_SPOTS spots the wide PCA is fitted on a random subset; every spot is projected
    onto it, so the programme leaves all spots' PCs."""
    from spaseg.pp import _programs

    monkeypatch.setattr(_programs, "FIT_SPOTS", 300)  # the section has ~600
    adata = with_planted_programme()
    assert adata.n_obs > 300
    out = spaseg.pp.normalize_pca(adata, n_comps=8, min_program_genes=15, copy=True)
    assert out.uns["pca"]["narrow_programs"]["leading_genes"][0].startswith("HBX")
    assert out.obsm["X_pca"].shape == (adata.n_obs, 8)
    assert explained(out.obsm["X_pca"], adata.obs["planted"]) < 0.4


def test_pcs_beyond_what_the_programmes_leave_are_exact_zeros():
    """Two dimensions of signal left, four PCs asked: PCs 3-4 are zeros, not rounding noise,
    and the first two span the signal."""
    from spaseg.pp._programs import _repca

    rng = np.random.default_rng(0)
    rest = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6))  # rank 2 in 6 wide PCs
    rest -= rest.mean(axis=0)
    adata = ad.AnnData(np.zeros((200, 10), dtype=np.float32))
    adata.varm["PCs"] = np.zeros((10, 4))
    adata.uns["pca"] = {}
    loadings = np.linalg.qr(rng.normal(size=(10, 6)))[0]
    _repca(adata, rest, loadings, slice(None), total=float(rest.var(axis=0).sum()), n_comps=4)
    pcs = adata.obsm["X_pca"]
    assert (pcs[:, 2:] == 0).all() and (adata.varm["PCs"][:, 2:] == 0).all()
    assert (adata.uns["pca"]["variance"][2:] == 0).all()
    assert pcs[:, :2].std(axis=0).min() > 0.1
    assert np.allclose(np.linalg.lstsq(pcs[:, :2], rest, rcond=None)[1], 0, atol=1e-3)


def test_off_by_default_so_a_domain_of_few_genes_is_kept():
    """The default PCA removes nothing: a domain marked by two strongly expressed genes (as a
    choroid plexus by Ttr) is as narrow as a contaminant, so the PCs keep what marks it; with
    the option on, the same programme leaves the PCs."""
    adata = with_planted_programme(seed=4)
    default = spaseg.pp.normalize_pca(adata, n_comps=8, copy=True)
    assert default.uns["pca"]["params"]["min_program_genes"] == 0
    assert "narrow_programs" not in default.uns["pca"]
    on = spaseg.pp.normalize_pca(adata, n_comps=8, min_program_genes=15, copy=True)
    region = adata.obs["planted"].to_numpy(float)
    assert explained(default.obsm["X_pca"], region) > 0.5
    assert explained(on.obsm["X_pca"], region) < 0.2
