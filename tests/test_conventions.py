"""scverse conventions, the same in every function: ``copy=False`` writes into the object and
returns None, ``copy=True`` returns a new object (or, for a table, the table) and leaves the input
as it was; ``key_added`` (and ``embedding_key``) name what a function writes."""

from __future__ import annotations

import numpy as np
import pytest

import spaseg
from spaseg.datasets import simulate_tissue
from spaseg.datasets._sim_serial import simulate_serial_sections

SPASEG = dict(n_domains=3, n_runs=2, max_iter=60, warmup_iter=20, device="cpu")


@pytest.fixture(scope="module")
def raw():
    adata = simulate_tissue(3, n_rows=14, n_genes=80, n_markers=10, seed=0)
    adata.var_names = [f"g{k}" for k in range(adata.n_vars)]
    adata.X[:, :3] = 0  # three genes QC removes
    return adata


def test_qc_filters_in_place_or_returns_a_filtered_copy(raw):
    before = raw.shape
    filtered = spaseg.pp.qc(raw, min_spots_per_gene=1, copy=True)
    assert raw.shape == before and "qc" not in raw.uns  # the input is untouched
    assert filtered.n_vars == before[1] - 3 and "n_genes_by_counts" in filtered.obs

    adata = raw.copy()
    assert spaseg.pp.qc(adata, min_spots_per_gene=1) is None
    assert adata.shape == filtered.shape and list(adata.var_names) == list(filtered.var_names)
    np.testing.assert_array_equal(adata.X.toarray(), filtered.X.toarray())


def test_normalize_pca_writes_in_place_or_returns_a_copy(raw):
    adata = spaseg.pp.qc(raw, copy=True)
    other = spaseg.pp.normalize_pca(adata, n_comps=5, copy=True)
    assert "X_pca" not in adata.obsm and other.obsm["X_pca"].shape == (adata.n_obs, 5)
    assert spaseg.pp.normalize_pca(adata, n_comps=5) is None
    np.testing.assert_array_equal(adata.obsm["X_pca"], other.obsm["X_pca"])


def test_spaseg_keys_and_copy(raw):
    adata = spaseg.pp.qc(raw, copy=True)
    spaseg.pp.normalize_pca(adata, n_comps=5)
    first = spaseg.tl.spaseg(adata, **SPASEG, copy=True)
    assert "domain" not in adata.obs and "spaseg" not in adata.uns  # copy: input untouched
    assert spaseg.tl.spaseg(adata, **SPASEG) is None
    np.testing.assert_array_equal(adata.obs["domain"], first.obs["domain"])

    spaseg.tl.spaseg(adata, **{**SPASEG, "n_domains": 4}, key_added="k4", embedding_key="k4")
    assert adata.obs["k4"].nunique() == 4 and "k4_confidence" in adata.obs
    assert adata.obsm["k4_embedding"].shape[0] == adata.n_obs and "k4_runs" in adata.obsm
    assert adata.uns["k4"]["params"]["n_domains"] == 4
    # The first result is still there beside the second.
    assert adata.uns["spaseg"]["params"]["n_domains"] == 3 and adata.obs["domain"].nunique() == 3


def test_align_key_added():
    sections = simulate_serial_sections(
        2, n_rows=14, n_domains=3, n_genes=80, n_markers=10, n_noise_genes=5, seed=1
    )
    joint = spaseg.pp.joint_normalize_pca({s.obs["sample"].iloc[0]: s for s in sections}, n_comps=5)
    spaseg.tl.align(joint)
    spaseg.tl.align(joint, key_added="again", angle_step=12.0)
    assert joint.uns["align"]["params"]["key_added"] == "again"
    for prefix in ("spatial", "again"):
        assert joint.obsm[f"{prefix}_aligned"].shape == (joint.n_obs, 2)
        assert joint.obsm[f"{prefix}_3d"].shape == (joint.n_obs, 3)
