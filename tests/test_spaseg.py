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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_seed_same_labels_on_gpu():
    """Bit for bit on a GPU too (cuDNN, cuBLAS workspace and PyTorch's deterministic mode);
    benchmarks/gpu_check.py does the same on whole sections."""
    adata = hex_section(seed=3)
    a = spaseg.tl.spaseg(adata, n_domains=4, seed=7, device="cuda", copy=True, **FAST)
    b = spaseg.tl.spaseg(adata, n_domains=4, seed=7, device="cuda", copy=True, **FAST)
    np.testing.assert_array_equal(a.obsm["spaseg_embedding"], b.obsm["spaseg_embedding"])
    assert a.uns["spaseg"]["versions"]["cuda"] and a.uns["spaseg"]["device"].startswith("cuda")


def test_deterministic_mode_is_recorded_and_the_callers_setting_restored(tmp_path):
    adata = hex_section(seed=3)
    assert not torch.are_deterministic_algorithms_enabled()
    spaseg.tl.spaseg(adata, n_domains=3, seed=1, **FAST)
    assert not torch.are_deterministic_algorithms_enabled()
    info = adata.uns["spaseg"]
    assert info["deterministic"] is True and info["torch_threads"] >= 1
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["numpy"]
    adata.write_h5ad(tmp_path / "domains.h5ad")  # the record must be storable
    torch.use_deterministic_algorithms(True)
    try:
        spaseg.tl.spaseg(adata, n_domains=3, seed=1, deterministic=False, **FAST)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert adata.uns["spaseg"]["deterministic"] is False


@pytest.mark.parametrize("n_domains", [2, 5, 9])
def test_exactly_n_domains(n_domains):
    """One run and a consensus of runs alike (a three-band section asked for nine)."""
    adata = hex_section(seed=1)
    for n_runs in (1, 3):
        spaseg.tl.spaseg(adata, n_domains=n_domains, seed=0, **{**FAST, "n_runs": n_runs})
        assert adata.obs["domain"].nunique() == n_domains
        assert adata.uns["spaseg"]["n_domains_found"] == n_domains


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
    """Jobs that never train (QC, PCA, plots) should not pay for importing torch; subpackages
    and their heavy libraries load on first use."""
    import subprocess
    import sys

    code = (
        "import sys, spaseg; heavy = {'torch', 'scanpy', 'matplotlib', 'squidpy', 'anndata'}; "
        "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
        "from spaseg.io import read_h5ad; assert 'torch' not in sys.modules; "
        "from spaseg.tl import spaseg as f; assert 'torch' in sys.modules and callable(f); "
        "assert 'squidpy' not in sys.modules and 'matplotlib' not in sys.modules; "
        # the user's matplotlib backend is theirs: the plots module must not change it
        "import matplotlib; matplotlib.use('svg'); import spaseg.pl._plots, spaseg.pl._multi; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def _boundary_spots(adata) -> np.ndarray:
    """Spots with a hexagonal neighbour (centre distance ~1 spacing) of another true domain."""
    from scipy.spatial import cKDTree

    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    spacing = np.sort(cKDTree(xy).query(xy, k=2)[0][:, 1]).mean()
    pairs = cKDTree(xy).query_pairs(1.2 * spacing, output_type="ndarray")
    truth = adata.obs["domain_truth"].to_numpy()
    cross = pairs[truth[pairs[:, 0]] != truth[pairs[:, 1]]]
    out = np.zeros(adata.n_obs, dtype=bool)
    out[cross.ravel()] = True
    return out


@pytest.mark.parametrize("n_runs", [1, 4])
def test_low_confidence_concentrates_at_true_boundaries(n_runs):
    """obs['domain_confidence'] is in [0, 1], and spots on a true domain boundary are less
    confident than interior spots (consensus agreement with 4 runs, centroid margin with 1)."""
    adata = spaseg.datasets.simulate_tissue(4, pattern="layers", n_rows=36, seed=5)
    spaseg.pp.normalize_pca(adata, n_comps=15)
    spaseg.tl.spaseg(adata, n_domains=4, seed=0, **{**FAST, "n_runs": n_runs})
    conf = adata.obs["domain_confidence"].to_numpy()
    assert conf.dtype == np.float32 and conf.min() >= 0 and conf.max() <= 1
    boundary = _boundary_spots(adata)
    assert 0.05 < boundary.mean() < 0.6
    assert conf[boundary].mean() < conf[~boundary].mean() - 0.05
    low = conf < np.quantile(conf, 0.2) if n_runs == 1 else conf < 1  # the least confident
    assert low.any() and boundary[low].mean() > 1.5 * boundary.mean()


def test_tiled_warmup_only_on_images_larger_than_the_tile():
    """Images no larger than warmup_tile train exactly as without tiling (Visium sections keep
    their numerics); a larger image with small tiles still finds the bands."""
    adata = hex_section(seed=4)
    whole = spaseg.tl.spaseg(adata, n_domains=3, seed=1, copy=True, warmup_tile=None, **FAST)
    big = spaseg.tl.spaseg(adata, n_domains=3, seed=1, copy=True, warmup_tile=10_000, **FAST)
    np.testing.assert_array_equal(whole.obsm["spaseg_embedding"], big.obsm["spaseg_embedding"])
    tiled = spaseg.tl.spaseg(adata, n_domains=3, seed=1, copy=True, warmup_tile=8, **FAST)
    assert not np.array_equal(tiled.obsm["spaseg_embedding"], whole.obsm["spaseg_embedding"])
    assert adjusted_rand_score(tiled.obs["truth"], tiled.obs["domain"]) > 0.8
    again = spaseg.tl.spaseg(adata, n_domains=3, seed=1, copy=True, warmup_tile=8, **FAST)
    np.testing.assert_array_equal(tiled.obsm["spaseg_embedding"], again.obsm["spaseg_embedding"])


def test_runs_stop_when_labels_settle_and_log_their_progress(caplog):
    """With the label-count stop out of reach (stop_margin 0 on 2 domains of a 3-band section),
    a run stops once its labels settle, well before max_iter, and says why; every logged
    iteration line has the time per iteration, the label count and the share that changed."""
    adata = hex_section(seed=1)
    with caplog.at_level("INFO", logger="spaseg"):
        spaseg.tl.spaseg(
            adata, n_domains=2, seed=0, n_runs=1, warmup_iter=40, max_iter=2000,
            stop_margin=0, stable_window=20, stable_tol=0.01, log_every=10,
        )  # fmt: skip
    info = adata.uns["spaseg"]
    assert info["stop_reasons"][0] in ("labels stable", "label count")
    assert info["iterations"][0] < 2000 and info["warmup_iterations"][0] == 40
    lines = [r.getMessage() for r in caplog.records if " iter " in r.getMessage()]
    training = [line for line in lines if "labels" in line]
    assert training and all("s/iter" in line and "changed" in line for line in training)
    no_stop = spaseg.tl.spaseg(
        adata, n_domains=2, seed=0, n_runs=1, warmup_iter=40, max_iter=300, stop_margin=0,
        stable_tol=0.0, log_every=0, copy=True,
    )  # fmt: skip
    # stable_tol 0 waits for not a single change: at least as long as the run above
    assert no_stop.uns["spaseg"]["iterations"][0] >= min(info["iterations"][0], 300)


def test_large_sections_get_fewer_runs():
    from spaseg.tl._spaseg import _n_runs

    assert _n_runs(4, 4_000, 1_200_000) == 4
    assert _n_runs(4, 400_000, 1_200_000) == 3
    assert _n_runs(4, 527_000, 1_200_000) == 2
    assert _n_runs(4, 1_050_000, 1_200_000) == 1
    assert _n_runs(4, 5_000_000, 1_200_000) == 1
    assert _n_runs(4, 5_000_000, None) == 4
    adata = hex_section(seed=1)
    spaseg.tl.spaseg(adata, n_domains=3, **{**FAST, "n_runs": 3}, consensus_pixels=10)
    assert adata.uns["spaseg"]["n_runs_used"] == 1 and adata.obsm["spaseg_runs"].shape[1] == 1


def test_auto_n_domains_finds_clear_layers_and_records_scores():
    """n_domains='auto' on a section of 4 clear layers: picks 4 (within one), keeps the scores
    per k, and the domains plot draws them."""
    import matplotlib

    matplotlib.use("Agg")
    adata = spaseg.datasets.simulate_tissue(4, pattern="layers", n_rows=36, seed=2)
    spaseg.pp.normalize_pca(adata, n_comps=15)
    spaseg.tl.spaseg(
        adata, n_domains="auto", k_range=(2, 8), seed=0, n_runs=3, max_iter=160, warmup_iter=60,
        log_every=0,
    )  # fmt: skip
    scores = adata.uns["spaseg"]["k_scores"]
    assert scores["n_domains"].tolist() == list(range(2, 9))
    chosen = adata.obs["domain"].nunique()
    assert abs(chosen - 4) <= 1
    assert scores.set_index("n_domains")["calinski_harabasz"].idxmax() == chosen
    assert scores.set_index("n_domains").loc[chosen, "stability"] > 0.5
    assert adata.uns["spaseg"]["params"]["n_domains"] == chosen
    assert adjusted_rand_score(adata.obs["domain_truth"], adata.obs["domain"]) > 0.6
    fig = spaseg.pl.domains(adata)
    assert len(fig.axes) >= 4  # tissue, confidence (+ colour bar), sizes, k scores


def test_auto_scores_every_k_by_kmeans_even_at_the_runs_label_count():
    """A run's argmax labels stand in for KMeans when a fixed n_domains equals their count,
    but auto-k must score every k the same way: at k = the argmax's label count the score
    is the runs' KMeans agreement, not their argmax agreement."""
    from sklearn.cluster import KMeans

    from spaseg.tl._spaseg import _choose_k

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    logits = []
    for _ in range(3):  # the structure: 3 groups in channel 4, which never wins the argmax
        lg = np.zeros((300, 5))
        lg[:, 4] = -100 + 10.0 * truth + rng.normal(size=300)
        lg[np.arange(300), rng.integers(0, 4, 300)] = 1e-3  # argmax: 4 random labels
        logits.append(lg)
    seeds = np.array([3, 4, 5])
    _, scores, _ = _choose_k(logits, (2, 5), seeds)
    runs = [
        KMeans(4, n_init=10, random_state=int(s)).fit_predict(lg)
        for lg, s in zip(logits, seeds, strict=True)
    ]
    pairs = [adjusted_rand_score(runs[i], runs[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    stability = scores.set_index("n_domains")["stability"]
    assert stability[4] == round(float(np.mean(pairs)), 4) > 0.3  # the random argmax: ~0


def test_auto_keeps_the_split_that_separates_where_a_merge_is_as_stable():
    """Five groups in the runs' logits, two of them close (a thin layer beside its
    neighbour): every run merges the same pairs at 2 and 4, so 2, 4 and 5 are all perfectly
    stable and stability alone would take 2; the separation score keeps the five groups."""
    from spaseg.tl._spaseg import _choose_k

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [13.0, 10.0]])
    truth = np.repeat(np.arange(5), 60)
    logits = [centres[truth] + rng.normal(scale=0.3, size=(300, 2)) for _ in range(3)]
    chosen, scores, labels = _choose_k(logits, (2, 7), np.array([1, 2, 3]))
    stability = scores.set_index("n_domains")["stability"]
    assert stability[5] == 1.0 and stability.max() == 1.0
    assert stability.idxmax() < 5  # the old rule (stability, ties to the smaller k)
    assert chosen == 5
    assert all(adjusted_rand_score(truth, run) == 1.0 for run in labels)


def test_auto_n_domains_errors_name_the_field():
    adata = hex_section(seed=1)
    with pytest.raises(InputError, match="k_range"):
        spaseg.tl.spaseg(adata, n_domains="auto", k_range=(5, 3), **FAST)
    with pytest.raises(InputError, match="'auto'"):
        spaseg.tl.spaseg(adata, n_domains="many", **FAST)


def test_majority_refine_removes_specks_and_keeps_boundaries():
    """Bands on a square grid with 10 % of the spots given a random label: refinement puts
    the specks back; a clean boundary does not move; sections do not see each other."""
    from spaseg.tl._refine import majority_refine

    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    xy = np.column_stack([cols.ravel(), rows.ravel()]).astype(float)
    truth = rows.ravel() // 10
    noisy = truth.copy()
    specks = rng.random(len(truth)) < 0.1
    noisy[specks] = rng.integers(0, 3, specks.sum())
    refined = majority_refine(xy, noisy)
    assert (refined != truth).sum() < 0.2 * (noisy != truth).sum()
    np.testing.assert_array_equal(majority_refine(xy, truth), truth)
    # Two sections stacked on the same coordinates: each keeps its own labels.
    both = majority_refine(
        np.r_[xy, xy], np.r_[truth, 2 - truth], sections=[np.arange(900), np.arange(900, 1800)]
    )
    np.testing.assert_array_equal(both, np.r_[truth, 2 - truth])
