"""SpaSEG training: determinism, n_domains, masking, errors."""

import numpy as np
import pytest
import torch
from conftest import hex_section
from sklearn.metrics import adjusted_rand_score

import spaseg
from spaseg import InputError
from spaseg.tl import consensus_labels
from spaseg.tl._model import SpaSEGNet

FAST = dict(max_iter=120, warmup_iter=40, n_runs=1, log_every=0)


def test_recovers_bands(hex_adata):
    spaseg.tl.spaseg(hex_adata, n_domains=3, seed=0, **FAST)
    assert adjusted_rand_score(hex_adata.obs["truth"], hex_adata.obs["domain"]) > 0.8


def test_outputs_contract(hex_adata):
    spaseg.tl.spaseg(hex_adata, n_domains=3, seed=0, **FAST)
    assert hex_adata.obs["domain"].dtype.name == "category"
    assert list(hex_adata.obs["domain"].cat.categories) == ["0", "1", "2"]
    assert hex_adata.obsm["spaseg_embedding"].shape[0] == hex_adata.n_obs
    info = hex_adata.uns["spaseg"]
    assert info["seed"] == 0 and info["device"] == "cpu"
    assert info["params"]["n_domains"] == 3 and info["params"]["grid"] == "hex"
    assert len(info["iterations"]) == 1 and info["time_s"] > 0


def test_same_seed_same_labels_different_seed_differs():
    adata = hex_section(seed=3)
    a = spaseg.tl.spaseg(adata, n_domains=4, seed=7, copy=True, **FAST)
    b = spaseg.tl.spaseg(adata, n_domains=4, seed=7, copy=True, **FAST)
    c = spaseg.tl.spaseg(adata, n_domains=4, seed=8, copy=True, **FAST)
    assert (a.obs["domain"] == b.obs["domain"]).all()
    np.testing.assert_array_equal(a.obsm["spaseg_embedding"], b.obsm["spaseg_embedding"])
    assert not np.array_equal(a.obsm["spaseg_embedding"], c.obsm["spaseg_embedding"])


@pytest.mark.parametrize("n_domains", [2, 5, 9])
def test_exactly_n_domains(n_domains):
    adata = hex_section(seed=1)
    spaseg.tl.spaseg(adata, n_domains=n_domains, seed=0, **FAST)
    assert adata.obs["domain"].nunique() == n_domains


def test_consensus_of_runs(hex_adata):
    spaseg.tl.spaseg(hex_adata, n_domains=3, seed=0, **{**FAST, "n_runs": 3})
    assert hex_adata.obsm["spaseg_runs"].shape == (hex_adata.n_obs, 3)
    assert hex_adata.obs["domain"].nunique() == 3
    assert adjusted_rand_score(hex_adata.obs["truth"], hex_adata.obs["domain"]) > 0.8


def test_background_pixels_do_not_reach_tissue_outputs():
    """Whatever sits in background pixels, the network's output on tissue is the same."""
    adata = hex_section(n_rows=18, seed=2)
    adata = adata[(adata.obs["array_row"] < 8) | (adata.obs["array_row"] > 10)].copy()
    layout = spaseg.pp.spot_image(adata)
    image = torch.from_numpy(layout.to_image(adata.obsm["X_pca"]))[None]
    mask = torch.from_numpy(layout.mask().astype(np.float32))[None, None]
    garbage = image + 50 * torch.randn_like(image) * (1 - mask)
    torch.manual_seed(0)
    net = SpaSEGNet(5, 8, 5)
    with torch.no_grad():
        clean, dirty = net(image, mask), net(garbage, mask)
    tissue = mask.bool().expand_as(clean)
    torch.testing.assert_close(clean[tissue], dirty[tissue])
    assert (clean[~tissue] == 0).all()


def test_gap_in_tissue_is_masked():
    """A hole in the tissue adds background pixels; they must not count as a label."""
    adata = hex_section(n_rows=18, seed=2)
    adata = adata[(adata.obs["array_row"] < 8) | (adata.obs["array_row"] > 10)].copy()
    spaseg.tl.spaseg(adata, n_domains=3, seed=0, **FAST)
    assert adata.uns["spaseg"]["n_pixels"] == adata.n_obs
    assert adata.obs["domain"].nunique() == 3


@pytest.mark.parametrize("n_domains", [1, 0, 10_000])
def test_bad_n_domains(hex_adata, n_domains):
    with pytest.raises(InputError, match=r"sample 'S1'.*n_domains"):
        spaseg.tl.spaseg(hex_adata, n_domains=n_domains, sample="S1", **FAST)


def test_nan_coordinates(hex_adata):
    hex_adata.obsm["spatial"][3] = np.nan
    with pytest.raises(InputError, match=r"sample 'S1'.*spatial.*1 spots"):
        spaseg.tl.spaseg(hex_adata, n_domains=3, sample="S1", **FAST)


def test_missing_pca(hex_adata):
    del hex_adata.obsm["X_pca"]
    with pytest.raises(InputError, match="X_pca"):
        spaseg.tl.spaseg(hex_adata, n_domains=3, **FAST)


def test_consensus_labels_agree_with_unanimous_runs():
    truth = np.repeat([0, 1, 2], 50)
    runs = np.stack([truth, (truth + 1) % 3, truth])  # relabelled copies
    noisy = runs.copy()
    noisy[1, :5] = 2  # one run disagrees on a few items
    labels = consensus_labels(noisy, 3)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_consensus_labels_many_patterns_uses_kmeans_path():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 2000)
    runs = np.stack(
        [np.where(rng.random(8000) < 0.1, rng.integers(0, 9, 8000), truth) for _ in range(8)]
    )
    labels = consensus_labels(runs, 4)
    assert adjusted_rand_score(truth, labels) > 0.95


def test_import_does_not_load_torch():
    """Jobs that never train (QC, PCA, plots) should not pay for importing torch."""
    import subprocess
    import sys

    code = (
        "import sys, spaseg; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
        "from spaseg.tl import spaseg as f; assert 'torch' in sys.modules and callable(f)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
