"""Cell-type deconvolution with cell2location: reference signatures, then spot abundances.

cell2location (Kleshchevnikov et al. 2022) first learns a negative-binomial regression of a
single-cell reference (``RegressionModel``): the mean expression of each gene in each cell type,
corrected for batch and technology. ``Cell2location`` then explains each spot's counts as a sum
of those signatures times per-spot cell-type abundances. We keep the 5 % posterior quantile
(``q05``: the abundance the model is confident is present), turn it into fractions per spot and
into their base-2 Shannon entropy, the ``H_i`` weight of :func:`spaseg.tl.lr_scores`.

cell2location, scvi-tools and pyro (1.8.6; 1.9 breaks cell2location 0.1.5) are optional
dependencies (``pip install 'spaseg[cci]'``), imported only here, inside the functions.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._errors import InputError
from ._elbo_watch import training_watch
from ._lr import cell_type_entropy

log = logging.getLogger("spaseg")

#: Keys written by :func:`cell2location_map`.
ABUNDANCE_KEY = "q05_cell_abundance_w_sf"
FRACTIONS_KEY = "cell_type_fractions"
ENTROPY_KEY = "cell_type_entropy"


def _import_cell2location():
    try:
        import cell2location.models as models
        import scvi
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise InputError(
            f"cell2location is not installed ({err}): pip install 'spaseg[cci]'.",
            field="cell2location",
        ) from None
    return models, scvi


def _accelerator(device: str) -> str:
    """``auto``/``cpu``/``cuda`` (the spaseg.device words) as a Lightning accelerator."""
    if device not in ("auto", "cpu", "cuda", "gpu"):
        raise InputError(f"must be auto, cpu or cuda, not {device!r}.", field="device")
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if device in ("cuda", "gpu") else "cpu"


def _counts(adata: AnnData, layer: str | None, *, what: str, sample=None) -> sparse.csr_matrix:
    """Raw counts: ``layers[layer]``, else ``layers["counts"]`` when present, else ``X``."""
    if layer is None:
        layer = "counts" if "counts" in adata.layers else None
    x = adata.layers[layer] if layer is not None else adata.X
    x = sparse.csr_matrix(x, dtype=np.float32)
    data = x.data
    if data.size and (data.min() < 0 or not np.allclose(data, np.round(data))):
        raise InputError(
            f"{what} needs raw counts (non-negative integers); found other values.",
            sample=sample,
            field=layer or "X",
        )
    return x


def cell2location_signatures(
    reference: AnnData,
    labels_key: str,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
    max_epochs: int = 250,
    batch_size: int = 2500,
    lr: float = 0.002,
    posterior: str = "quantiles",
    num_samples: int = 1000,
    min_cells_per_type: int = 5,
    device: str = "auto",
    seed: int = 0,
) -> pd.DataFrame:
    """Cell-type expression signatures of a single-cell reference (cell2location's
    ``RegressionModel``).

    Parameters
    ----------
    reference
        Single cells x genes with raw counts (``layer``, ``layers["counts"]`` or ``X``).
    labels_key
        ``obs`` column of cell-type labels.
    batch_key
        ``obs`` column of batches (samples, technologies) to correct for; ``None``: one batch.
    layer
        Counts layer; ``None``: ``layers["counts"]`` when present, else ``X``.
    max_epochs, batch_size, lr
        Training (cell2location's defaults: 250 epochs, minibatches of 2500 cells).
    posterior
        ``"quantiles"`` summarises each signature by its posterior median, read from the guide
        (seconds, little memory); ``"samples"`` by the mean of ``num_samples`` posterior samples
        (cell2location's default; the samples of every cell's parameters are held at once, which
        grows faster than the reference: 2.2 GB at 960 cells x 1 500 genes, RESULTS.md).
    num_samples
        Posterior samples for ``posterior="samples"``.
    min_cells_per_type
        Cell types with fewer cells are dropped (with a warning).
    device
        ``auto`` (a GPU when visible), ``cpu`` or ``cuda``.
    seed
        scvi-tools seed.

    Returns
    -------
    Genes x cell types: the posterior median (``"quantiles"``) or mean (``"samples"``) expression
    of each gene per cell of each type (``per_cluster_mu_fg``).
    """
    _check_posterior(posterior)
    models, scvi = _import_cell2location()
    for key in (labels_key, batch_key):
        if key is not None and key not in reference.obs:
            raise InputError(f"obs has no column {key!r}.", field=key)
    labels = reference.obs[labels_key].astype(str)
    sizes = labels.value_counts()
    small = sizes.index[sizes < min_cells_per_type]
    if len(small):
        log.warning("cell types with < %d cells dropped: %s", min_cells_per_type, list(small))
    keep = ~labels.isin(small).to_numpy()
    if len(sizes) - len(small) < 2:
        raise InputError(
            f"needs at least 2 cell types with >= {min_cells_per_type} cells.", field=labels_key
        )
    counts = _counts(reference, layer, what="the cell2location reference")
    obs = pd.DataFrame({"label": pd.Categorical(labels[keep])}, index=reference.obs_names[keep])
    if batch_key is not None:
        obs["batch"] = reference.obs.loc[keep, batch_key].astype(str).to_numpy()
    ref = AnnData(X=counts[keep], obs=obs, var=pd.DataFrame(index=reference.var_names))
    expressed = np.asarray((ref.X > 0).sum(axis=0)).ravel() > 0
    ref = ref[:, expressed].copy()

    scvi.settings.seed = seed
    models.RegressionModel.setup_anndata(
        ref, labels_key="label", batch_key="batch" if batch_key is not None else None
    )
    model = models.RegressionModel(ref)
    watch = training_watch("cell2location reference", max_epochs)
    accelerator = _accelerator(device)
    log.info("cell2location reference: %d cells x %d genes on %s", *ref.shape, accelerator)
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        accelerator=accelerator,
        enable_progress_bar=False,
        callbacks=[watch],
    )
    summary = "q50" if posterior == "quantiles" else "means"
    ref = model.export_posterior(
        ref,
        sample_kwargs=_sample_kwargs(
            posterior, num_samples, batch_size, accelerator, "cell2location reference"
        ),
        add_to_varm=[summary],
        use_quantiles=posterior == "quantiles",
    )
    names = list(ref.uns["mod"]["factor_names"])
    columns = [f"{summary}_per_cluster_mu_fg_{name}" for name in names]
    signatures = ref.varm[f"{summary}_per_cluster_mu_fg"][columns].copy()
    signatures.columns = names
    signatures.attrs["elbo_train"] = watch.losses
    return signatures


def _check_posterior(posterior: str) -> None:
    if posterior not in ("quantiles", "samples"):
        raise InputError(f"must be quantiles or samples, not {posterior!r}.", field="posterior")


def _sample_kwargs(
    posterior: str, num_samples: int, batch_size: int, accelerator: str, what: str
) -> dict:
    """``export_posterior``'s ``sample_kwargs``: posterior samples only with ``"samples"``
    (``"quantiles"`` reads the guide and needs no draws)."""
    kwargs = {"batch_size": batch_size, "accelerator": accelerator}
    if posterior == "samples":
        log.info("%s: %d posterior samples", what, num_samples)
        kwargs.update(num_samples=num_samples, show_progress=False)
    return kwargs


def _shared_genes(adata: AnnData, signatures: pd.DataFrame, gene_symbols: str | None):
    """Data genes matching the signatures' genes, by ``var_names`` or by the symbol column,
    whichever matches more."""
    names = pd.Index(adata.var_names)
    by_name = names.isin(signatures.index)
    key = gene_symbols or ("gene_symbols" if "gene_symbols" in adata.var else None)
    if key is not None:
        if key not in adata.var:
            raise InputError(f"var has no column {key!r}.", field="gene_symbols")
        symbols = pd.Index(adata.var[key].astype(str))
        by_symbol = symbols.isin(signatures.index) & ~symbols.duplicated()
        if by_symbol.sum() > by_name.sum():
            return np.flatnonzero(by_symbol), symbols[by_symbol]
    return np.flatnonzero(by_name), names[by_name]


def cell2location_map(
    adata: AnnData,
    signatures: pd.DataFrame,
    *,
    layer: str | None = None,
    gene_symbols: str | None = None,
    n_cells_per_location: float = 30.0,
    detection_alpha: float = 20.0,
    max_epochs: int = 30000,
    tol: float = 5e-4,
    window: int = 500,
    lr: float = 0.016,
    posterior: str = "quantiles",
    num_samples: int = 1000,
    min_genes: int = 10,
    device: str = "auto",
    seed: int = 0,
    sample: str | None = None,
    callbacks: list | None = None,
) -> None:
    """Cell-type abundances per spot (cell2location's ``Cell2location`` model), in place.

    Parameters
    ----------
    adata
        A section with raw counts (``layer``, ``layers["counts"]`` or ``X``).
    signatures
        Genes x cell types, from :func:`cell2location_signatures`.
    layer
        Counts layer; ``None``: ``layers["counts"]`` when present, else ``X``.
    gene_symbols
        ``var`` column to match the signatures' genes with; ``None``: ``var_names`` or
        ``var["gene_symbols"]``, whichever matches more genes.
    n_cells_per_location
        Expected cells per spot (prior; cell2location's tutorial uses 30 for Visium).
    detection_alpha
        Regularisation of the per-spot detection efficiency (20: high technical variability,
        200: low).
    max_epochs
        Training epochs over all spots (at most; cell2location recommends 30000).
    tol, window
        Stop training once the mean loss of the last ``window`` epochs is less than ``tol``
        (relative) below that of the ``window`` before; 0 trains ``max_epochs`` epochs (5e-4:
        fractions within r 0.97 of cell2location's 30 000 epochs on a simulated section in a
        sixth of the epochs at ``lr`` 0.002, r 0.999 in a tenth at 0.016,
        ``benchmarks/c2l_cpu.py``).
    lr
        Learning rate of the optimiser (cell2location's ``ClippedAdam``). cell2location's
        default 0.002 reaches the plateau later and further from its 30 000-epoch result: on a
        simulated section 4 500 epochs and r 0.967 with it, 3 000 epochs and r 0.999 with
        0.016; 0.064 diverged (``benchmarks/c2l_cpu.py --map-lrs``).
    posterior
        How the q05 abundances are summarised: ``"quantiles"`` reads them from the fitted
        guide (seconds), ``"samples"`` draws ``num_samples`` posterior samples (cell2location's
        default; minutes on a CPU, and memory for every sample).
    num_samples
        Posterior samples for the q05 summary (``posterior="samples"``).
    min_genes
        Fewest shared genes accepted.
    device, seed
        As for :func:`cell2location_signatures`.
    sample
        Sample name for messages.
    callbacks
        More Lightning callbacks for the training (e.g. to record it).

    Returns
    -------
    Nothing; sets ``obsm["q05_cell_abundance_w_sf"]`` (spots x cell types, data frame),
    ``obsm["cell_type_fractions"]`` (the same, each row divided by its sum),
    ``obs["cell_type_entropy"]`` (base-2 entropy of the fractions), ``obs["cell_type"]``
    (the most abundant type) and ``uns["cell2location"]`` (parameters, genes used, ELBO).
    """
    _check_posterior(posterior)
    models, scvi = _import_cell2location()
    columns, genes = _shared_genes(adata, signatures, gene_symbols)
    if len(genes) < min_genes:
        raise InputError(
            f"only {len(genes)} genes shared with the reference signatures (need {min_genes}); "
            f"data genes look like {list(adata.var_names[:3])}, reference genes like "
            f"{list(signatures.index[:3])}.",
            sample=sample,
            field="gene_symbols",
        )
    counts = _counts(adata, layer, what="cell2location", sample=sample)
    spots = AnnData(
        X=counts[:, columns], obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=genes)
    )
    scvi.settings.seed = seed
    models.Cell2location.setup_anndata(spots)
    model = models.Cell2location(
        spots,
        cell_state_df=signatures.loc[genes],
        N_cells_per_location=n_cells_per_location,
        detection_alpha=detection_alpha,
    )
    accelerator = _accelerator(device)
    log.info(
        "cell2location: %d spots x %d genes, %d cell types, %d epochs on %s",
        *spots.shape,
        signatures.shape[1],
        max_epochs,
        accelerator,
    )
    what = f"cell2location {sample}" if sample else "cell2location"
    watch = training_watch(what, max_epochs, tol=tol, window=window)
    model.train(
        max_epochs=max_epochs,
        batch_size=None,
        lr=lr,
        accelerator=accelerator,
        enable_progress_bar=False,
        callbacks=[watch, *(callbacks or [])],
    )
    spots = model.export_posterior(
        spots,
        sample_kwargs=_sample_kwargs(posterior, num_samples, spots.n_obs, accelerator, what),
        add_to_obsm=["q05"],
        use_quantiles=posterior == "quantiles",
    )
    abundance = spots.obsm[ABUNDANCE_KEY]
    abundance.columns = [str(c).removeprefix("q05cell_abundance_w_sf_") for c in abundance.columns]
    abundance = abundance.loc[adata.obs_names]
    total = abundance.sum(axis=1).to_numpy()[:, None]
    fractions = abundance / np.where(total > 0, total, 1.0)
    adata.obsm[ABUNDANCE_KEY] = abundance
    adata.obsm[FRACTIONS_KEY] = fractions
    adata.obs[ENTROPY_KEY] = cell_type_entropy(fractions)
    adata.obs["cell_type"] = pd.Categorical(
        fractions.columns[fractions.to_numpy().argmax(axis=1)], categories=fractions.columns
    )
    adata.uns["cell2location"] = {
        "n_cells_per_location": n_cells_per_location,
        "detection_alpha": detection_alpha,
        "max_epochs": max_epochs,
        "epochs": len(watch.losses),
        "tol": tol,
        "lr": lr,
        "posterior": posterior,
        "num_samples": num_samples if posterior == "samples" else 0,
        "seed": seed,
        "device": accelerator,
        "n_genes": len(genes),
        "cell_types": list(map(str, fractions.columns)),
        "elbo_train": np.asarray(watch.losses, dtype=float),
    }
