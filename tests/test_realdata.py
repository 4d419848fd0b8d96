"""Regression floor on real data: DLPFC 151673 (skipped when ../shared is absent)."""

import pytest
from sklearn.metrics import adjusted_rand_score

import spaseg

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_dlpfc_151673_seed0_ari_floor(shared_data):
    """Seed 0 with the default settings must stay above ARI 0.45 against layer_guess.

    The full accuracy table (5 seeds, 4 sections, baselines) is benchmarks/dlpfc.py.
    """
    adata = spaseg.io.read_h5ad(shared_data / "dlpfc" / "151673.h5ad", sample="151673")
    adata = spaseg.pp.qc(adata, sample="151673")
    spaseg.pp.normalize_pca(adata, n_comps=15, seed=0)
    spaseg.tl.spaseg(adata, n_domains=7, seed=0, log_every=0)

    truth = adata.obs["layer_guess"].astype(str)
    labelled = (truth != "NA").to_numpy()
    ari = adjusted_rand_score(truth[labelled], adata.obs["domain"][labelled])
    assert adata.obs["domain"].nunique() == 7
    assert ari >= 0.45, f"ARI {ari:.3f} fell below the regression floor 0.45"
