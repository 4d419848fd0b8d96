"""cell2location wrapper (spaseg.tl.cell2location_*): a few epochs on a tiny simulation, offline.

Checks the plumbing (keys, shapes, fractions, entropy, gene matching, errors), not accuracy:
benchmarks/cci.py measures that with full training.
"""

from __future__ import annotations

import numpy as np
import pytest

from spaseg import InputError
from spaseg.datasets._sim_cci import simulate_cci

cell2location = pytest.importorskip("cell2location")  # the optional 'cci' extra

from spaseg.tl import cell2location_map, cell2location_signatures  # noqa: E402

TINY = dict(max_epochs=3, num_samples=5, device="cpu", seed=0)


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def sim():
    return simulate_cci(
        n_cell_types=3, n_genes=50, n_markers=6, n_cells_per_type=20, n_rows=10, seed=0
    )


@pytest.fixture(scope="module")
def signatures(sim):
    return cell2location_signatures(sim.reference, "cell_type", **TINY)


def test_signatures_are_genes_by_cell_types(signatures, sim):
    assert list(signatures.columns) == ["type_0", "type_1", "type_2"]
    assert set(signatures.index) <= set(sim.reference.var_names)
    assert np.isfinite(signatures.to_numpy()).all() and (signatures.to_numpy() > 0).all()
    assert len(signatures.attrs["elbo_train"]) == TINY["max_epochs"]


def test_map_writes_abundances_fractions_and_entropy(signatures, sim, tmp_path):
    adata = sim.spatial.copy()
    # Ensembl-like var_names: the reference's genes are found through var["gene_symbols"].
    adata.var["gene_symbols"] = adata.var_names
    adata.var_names = [f"ENSG{i:05d}" for i in range(adata.n_vars)]
    cell2location_map(adata, signatures, n_cells_per_location=8, **TINY)
    abundance = adata.obsm["q05_cell_abundance_w_sf"]
    assert list(abundance.columns) == list(signatures.columns)
    assert (abundance.index == adata.obs_names).all() and (abundance.to_numpy() >= 0).all()
    fractions = adata.obsm["cell_type_fractions"].to_numpy()
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-5)
    entropy = adata.obs["cell_type_entropy"].to_numpy()
    assert ((entropy >= 0) & (entropy <= np.log2(3) + 1e-9)).all()
    assert adata.uns["cell2location"]["n_genes"] == len(signatures)  # no L-R genes there
    assert set(adata.obs["cell_type"].cat.categories) == set(signatures.columns)
    adata.write_h5ad(tmp_path / "c2l.h5ad")  # the obsm data frames survive h5ad


def test_errors_name_the_problem(signatures, sim):
    adata = sim.spatial.copy()
    adata.X = adata.X * 0.5
    with pytest.raises(InputError, match="raw counts"):
        cell2location_map(adata, signatures, sample="s1", **TINY)
    adata = sim.spatial.copy()
    adata.var_names = [f"X{i}" for i in range(adata.n_vars)]
    with pytest.raises(InputError, match="genes shared"):
        cell2location_map(adata, signatures, **TINY)
    with pytest.raises(InputError, match="field 'celltype'"):
        cell2location_signatures(sim.reference, "celltype", **TINY)


def test_quantile_posterior_agrees_with_samples(signatures, sim):
    """q05 read from the guide, not from samples: same keys, close to the sampled q05."""
    sampled, read = sim.spatial.copy(), sim.spatial.copy()
    settings = dict(TINY, max_epochs=300, num_samples=400)
    cell2location_map(sampled, signatures, n_cells_per_location=8, posterior="samples", **settings)
    cell2location_map(read, signatures, n_cells_per_location=8, posterior="quantiles", **settings)
    a = sampled.obsm["cell_type_fractions"].to_numpy()
    b = read.obsm["cell_type_fractions"].to_numpy()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    assert read.uns["cell2location"]["posterior"] == "quantiles"
    assert read.uns["cell2location"]["num_samples"] == 0
    with pytest.raises(InputError, match="quantiles or samples"):
        cell2location_map(read, signatures, posterior="mean", **TINY)


def test_plateau_stops_training_and_progress_is_logged(signatures, sim, caplog):
    adata = sim.spatial.copy()
    # tol 1: any window that improves the loss by less than 100 % stops: the first check.
    settings = dict(TINY, max_epochs=200, tol=1.0, window=10)
    with caplog.at_level("INFO", logger="spaseg"):
        cell2location_map(adata, signatures, n_cells_per_location=8, sample="s1", **settings)
    info = adata.uns["cell2location"]
    assert info["epochs"] == 20 and len(info["elbo_train"]) == 20
    assert "cell2location s1: ELBO plateau at epoch 20" in caplog.text
    assert "cell2location s1: epoch 20 / 200" in caplog.text


def test_relative_gain_of_windows():
    from spaseg.tl._elbo_watch import relative_gain

    assert relative_gain(np.ones(5), 3) == np.inf  # fewer than two windows
    losses = np.r_[np.full(4, 110.0), np.full(4, 100.0)]
    assert relative_gain(losses, 4) == pytest.approx(0.1)
    assert relative_gain(losses[::-1], 4) == pytest.approx(-10 / 110)


def test_fractions_recover_a_known_mixture(sim):
    """A short but real training recovers the simulated cell-type fractions of each spot."""
    signatures = cell2location_signatures(
        sim.reference, "cell_type", max_epochs=100, num_samples=50, device="cpu"
    )
    adata = sim.spatial.copy()
    cell2location_map(
        adata, signatures, n_cells_per_location=8, max_epochs=1500, posterior="quantiles",
        device="cpu",
    )  # fmt: skip
    estimated = adata.obsm["cell_type_fractions"]
    true = sim.spatial.obsm["true_fractions"][estimated.columns]
    r = np.corrcoef(estimated.to_numpy().ravel(), true.to_numpy().ravel())[0, 1]
    assert r > 0.8, r


def test_plateau_check_runs_every_tenth_of_a_window():
    """The stop comes at the first check (every window // 10 epochs) where the last window's
    mean loss improved on the one before by less than tol, not at the next multiple of the
    window."""
    from types import SimpleNamespace

    from spaseg.tl._elbo_watch import relative_gain, training_watch

    window, tol = 100, 0.01
    losses = 1000.0 * np.exp(-np.arange(2000) / 150.0) + 100.0  # flattens smoothly
    watch = training_watch("test", len(losses), tol=tol, window=window)
    trainer = SimpleNamespace(should_stop=False)
    for loss in losses:
        watch.on_train_batch_end(trainer, None, {"loss": loss}, None, 0)
        watch.on_train_epoch_end(trainer, None)
        if trainer.should_stop:
            break
    gains = [relative_gain(losses[:n], window) for n in range(1, len(losses) + 1)]
    first = next(n for n in range(2 * window, len(losses) + 1, 10) if gains[n - 1] < tol)
    assert watch.stopped_at == first and first % window != 0
