"""SpaSEG: unsupervised segmentation of a section's PCA image with a small CNN.

Each run trains a fresh network on the section image: a warm-up that reconstructs the input,
then self-training in which the current argmax is the target of a cross-entropy loss and an
L1 continuity loss pulls neighbouring spots' logits together. Unlike the reference:

- the losses and the label count use tissue pixels only (never background);
- continuity runs over the true spot neighbours (6 on Visium's hexagonal grid);
- the result has exactly ``n_domains`` domains: a run that stops with a different label count
  is clustered into ``n_domains`` with KMeans on its logits;
- several seeded runs are combined by co-association consensus, which removes most of the
  seed-to-seed variance of single runs. The same seed on the same device gives the same labels.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from .._errors import InputError
from ..pp._image import Grid, SpotImage, spot_image
from ._consensus import consensus_labels
from ._model import SpaSEGNet

log = logging.getLogger("spaseg")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is visible.", field="device")
    return torch.device(device)


@contextmanager
def _deterministic():
    """Deterministic kernels for the duration of a call (CUDA needs them asked for)."""
    previous = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class _SectionBatch:
    """Section images padded to one size, and where every spot lands in the batch."""

    image: np.ndarray  # (S, C, H, W) float32, background 0
    mask: np.ndarray  # (S, 1, H, W) float32, 1 on tissue
    pixels: np.ndarray  # flat indices of occupied pixels in S * H * W
    edges: np.ndarray  # (n_edges, 2) neighbouring positions in ``pixels``
    spot_pixel: np.ndarray  # for each spot (in adata order), its position in ``pixels``
    samples: list[str]  # section names, in batch order
    layouts: list[SpotImage]

    @property
    def n_pixels(self) -> int:
        return len(self.pixels)


def _sections(adata: AnnData, sample_key: str | None) -> tuple[list[str], list[np.ndarray]]:
    """Section names and their spot indices (one section when ``sample_key`` is None)."""
    if sample_key is None:
        return [""], [np.arange(adata.n_obs)]
    column = adata.obs[sample_key]
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = [c for c in column.cat.categories if (column == c).any()]
    else:
        names = list(pd.unique(column))
    return [str(n) for n in names], [np.flatnonzero(column == n) for n in names]


def _section_batch(
    adata: AnnData, rep: np.ndarray, grid: Grid, sample_key: str | None
) -> _SectionBatch:
    """Standardise each section's PCs, lay each out as an image, pad them to one size."""
    samples, members = _sections(adata, sample_key)
    layouts, images = [], []
    for spots in members:
        section = adata if sample_key is None else adata[spots]
        layout = spot_image(section, grid=grid)
        layouts.append(layout)
        images.append(layout.to_image(_standardise(rep[spots])))
    height = max(lay.shape[0] for lay in layouts)
    width = max(lay.shape[1] for lay in layouts)
    image = np.zeros((len(layouts), rep.shape[1], height, width), dtype=np.float32)
    mask = np.zeros((len(layouts), 1, height, width), dtype=np.float32)
    pixels, edges = [], []
    spot_pixel = np.empty(adata.n_obs, dtype=np.int64)
    offset = 0
    for s, (layout, img, spots) in enumerate(zip(layouts, images, members, strict=True)):
        h, w = layout.shape
        image[s, :, :h, :w] = img
        mask[s, 0, :h, :w] = layout.mask()
        row, col = np.divmod(layout.pixel_index, w)
        pixels.append((s * height + row) * width + col)
        edges.append(layout.edges + offset)
        spot_pixel[spots] = layout.spot_pixel + offset
        offset += layout.n_pixels
    return _SectionBatch(
        image=image,
        mask=mask,
        pixels=np.concatenate(pixels),
        edges=np.concatenate(edges),
        spot_pixel=spot_pixel,
        samples=samples,
        layouts=layouts,
    )


def _tissue(batch: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """``(S, C, H, W)`` -> ``(n_pixels, C)``: the channels at the occupied pixels."""
    return batch.transpose(0, 1).flatten(1)[:, pixels].T


def _train_run(
    image: torch.Tensor,
    mask: torch.Tensor,
    pixels: torch.Tensor,
    edges: torch.Tensor,
    *,
    n_domains: int,
    seed: int,
    hidden: int,
    max_iter: int,
    warmup_iter: int,
    lr: float,
    weight_decay: float,
    alpha: float,
    beta: float,
    stop_labels: int,
    log_every: int,
    run_name: str,
) -> tuple[np.ndarray, int, int]:
    """Train one network; return the tissue logits, the iterations used and the label count.

    ``image`` is a batch of section images ``(S, C, H, W)`` padded to one size, ``mask`` marks
    their tissue ``(S, 1, H, W)``, ``pixels`` holds the flat indices of the occupied pixels in
    the ``S * H * W`` positions and ``edges`` pairs positions in ``pixels``. One network sees
    all sections, and its normalisation pools their tissue pixels.
    """
    torch.manual_seed(seed)
    n_in = image.shape[1]
    model = SpaSEGNet(n_in, hidden, max(n_in, n_domains)).to(image.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    target_in = _tissue(image, pixels)  # (n_pixels, n_in)
    n_labels = -1
    for it in range(max_iter):
        logits = _tissue(model(image, mask), pixels)  # (n_pixels, K)
        if it < warmup_iter:
            loss = F.mse_loss(logits[:, :n_in], target_in)
        else:
            target = logits.argmax(dim=1)
            n_labels = int(torch.unique(target).numel())
            if n_labels <= stop_labels:
                break
            smooth = (logits[edges[:, 0]] - logits[edges[:, 1]]).abs().mean()
            loss = alpha * F.cross_entropy(logits, target) + beta * smooth
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (it + 1) % log_every == 0:
            phase = "warm-up" if it < warmup_iter else f"{n_labels} labels"
            log.info("%s iter %d loss %.4f (%s)", run_name, it + 1, loss.item(), phase)
    with torch.no_grad():
        logits = _tissue(model(image, mask), pixels)
    n_labels = int(torch.unique(logits.argmax(dim=1)).numel())
    return logits.cpu().numpy().astype(np.float64), it + 1, n_labels


def _stop_labels(n_domains: int, *, n_out: int, margin: int) -> int:
    """Label count at which a run stops (see ``stop_margin`` in :func:`spaseg`)."""
    return max(n_domains, min(n_domains + margin, n_out - margin))


def _run_labels(logits: np.ndarray, n_domains: int, seed: int) -> np.ndarray:
    """Exactly ``n_domains`` labels from one run's logits."""
    labels = np.unique(logits.argmax(axis=1), return_inverse=True)[1]
    if labels.max() + 1 == n_domains:
        return labels
    return KMeans(n_domains, n_init=10, random_state=seed).fit_predict(logits)


def _check_inputs(adata: AnnData, use_rep: str, n_domains: int, sample: str | None) -> None:
    if use_rep not in adata.obsm:
        raise InputError(
            f"obsm[{use_rep!r}] is missing; run spaseg.pp.normalize_pca first.",
            sample=sample,
            field=f"obsm['{use_rep}']",
        )
    if "spatial" not in adata.obsm and "array_row" not in adata.obs:
        raise InputError("no coordinates found.", sample=sample, field="obsm['spatial']")
    if "spatial" in adata.obsm:
        bad = ~np.isfinite(np.asarray(adata.obsm["spatial"], dtype=float)).all(axis=1)
        if bad.any():
            raise InputError(
                f"{int(bad.sum())} spots have NaN or infinite coordinates.",
                sample=sample,
                field="obsm['spatial']",
            )
    if not isinstance(n_domains, int | np.integer) or n_domains < 2:
        raise InputError(
            f"n_domains must be an integer >= 2, got {n_domains!r}.",
            sample=sample,
            field="n_domains",
        )
    if n_domains > adata.n_obs:
        raise InputError(
            f"n_domains={n_domains} is larger than the number of spots ({adata.n_obs}).",
            sample=sample,
            field="n_domains",
        )


def spaseg(
    adata: AnnData,
    *,
    n_domains: int = 7,
    seed: int = 0,
    device: str = "auto",
    n_runs: int = 4,
    max_iter: int = 1000,
    warmup_iter: int = 400,
    lr: float = 0.005,
    weight_decay: float = 1e-5,
    alpha: float = 0.4,
    beta: float = 0.7,
    hidden: int | None = None,
    stop_margin: int = 3,
    grid: Grid = "auto",
    use_rep: str = "X_pca",
    n_pcs: int | None = None,
    key_added: str = "domain",
    sample_key: str | None = None,
    log_every: int = 100,
    sample: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Find spatial domains with SpaSEG, in one section or jointly in several.

    Parameters
    ----------
    adata
        A section with principal components in ``obsm[use_rep]`` and coordinates
        (``obs["array_row"]``/``obs["array_col"]`` or ``obsm["spatial"]``); with
        ``sample_key``, several sections (e.g. from :func:`spaseg.pp.joint_normalize_pca`).
    n_domains
        Number of domains in the result.
    seed
        Master seed; each run gets its own seed drawn from it (``numpy.random.SeedSequence``),
        so different master seeds share no runs. Same seed, device and thread count give the
        same labels.
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    n_runs
        Independent runs combined by co-association consensus (1 = a single run).
    max_iter, warmup_iter
        Iteration budget of a run, and how many of them reconstruct the input first.
    lr, weight_decay
        Adam settings.
    alpha, beta
        Weights of the cross-entropy and the spatial-continuity loss.
    hidden
        Convolution channels (default: number of PCs).
    stop_margin
        A run stops once its argmax uses at most ``n_domains + stop_margin`` labels and the
        self-training has merged away at least ``stop_margin`` of the network's output
        channels (so with few channels it runs down to ``n_domains``); KMeans on the logits
        then makes exactly ``n_domains``. With background masked out the self-training
        stalls a few labels above ``n_domains``, and stopping there beats training on
        (``benchmarks/RESULTS.md``).
    grid
        Spot layout, see :func:`spaseg.pp.spot_image`.
    use_rep, n_pcs
        Representation to segment, and how many of its leading columns to use.
    key_added
        ``obs`` column for the labels.
    sample_key
        ``obs`` column naming each spot's section. The sections are segmented jointly, as
        in the reference's multi-slice mode: each section's PCs are standardised on their
        own, the section images are padded to one size and one network is trained on the
        batch, so all sections share one set of labels. ``None``: ``adata`` is one section.
    log_every
        Log loss and label count every this many iterations (0: quiet).
    sample
        Sample id for error messages.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    Sets ``obs[key_added]`` (categorical, ``n_domains`` categories), ``obsm["spaseg_embedding"]``
    (logits of the run closest to the consensus), ``obsm["spaseg_runs"]`` (labels of each run)
    and ``uns["spaseg"]`` (parameters, seed, iterations, device, timing; with ``sample_key``
    also ``samples`` and ``section_shapes``, and ``image_shape`` is the padded size).
    """
    _check_inputs(adata, use_rep, n_domains, sample)
    if sample_key is not None and sample_key not in adata.obs:
        raise InputError(
            f"obs[{sample_key!r}] is missing; it must name each spot's section.",
            sample=sample,
            field=f"obs['{sample_key}']",
        )
    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    dev = resolve_device(device)

    rep = np.asarray(adata.obsm[use_rep], dtype=np.float64)[:, :n_pcs]
    batch = _section_batch(adata, rep, grid, sample_key)
    if n_domains > batch.n_pixels:
        raise InputError(
            f"n_domains={n_domains} is larger than the number of image pixels ({batch.n_pixels}).",
            sample=sample,
            field="n_domains",
        )
    image = torch.from_numpy(batch.image).to(dev)
    mask = torch.from_numpy(batch.mask).to(dev)
    pixels = torch.from_numpy(batch.pixels).to(dev)
    edges = torch.from_numpy(batch.edges).to(dev)

    settings = dict(
        n_domains=n_domains,
        hidden=hidden or rep.shape[1],
        max_iter=max_iter,
        warmup_iter=warmup_iter,
        lr=lr,
        weight_decay=weight_decay,
        alpha=alpha,
        beta=beta,
        stop_labels=_stop_labels(n_domains, n_out=max(rep.shape[1], n_domains), margin=stop_margin),
        log_every=log_every,
    )
    run_seeds = np.random.SeedSequence(seed).generate_state(n_runs) % 2**31
    run_logits, run_labels, iterations, stop_counts = [], [], [], []
    with _deterministic():
        for r, run_seed in enumerate(run_seeds.tolist()):
            logits, n_iter, n_lab = _train_run(
                image,
                mask,
                pixels,
                edges,
                seed=run_seed,
                run_name=f"run {r + 1}/{n_runs}",
                **settings,
            )
            run_logits.append(logits)
            run_labels.append(_run_labels(logits, n_domains, run_seed))
            iterations.append(n_iter)
            stop_counts.append(n_lab)
            log.info("run %d/%d: %d iterations, %d argmax labels", r + 1, n_runs, n_iter, n_lab)

    runs = np.stack(run_labels)
    labels = consensus_labels(runs, n_domains, seed=seed) if n_runs > 1 else runs[0]
    best = int(np.argmax([adjusted_rand_score(labels, lab) for lab in runs]))
    n_found = int(labels.max()) + 1
    if n_found != n_domains:
        log.warning(
            "found %d domains instead of %d: the runs do not separate more.", n_found, n_domains
        )

    spot = batch.spot_pixel
    adata.obs[key_added] = pd.Categorical(
        labels[spot].astype(str), categories=[str(k) for k in range(n_found)]
    )
    adata.obsm["spaseg_embedding"] = run_logits[best][spot].astype(np.float32)
    adata.obsm["spaseg_runs"] = runs.T[spot].astype(np.int16)
    adata.uns["spaseg"] = {
        "params": {
            **{k: v for k, v in settings.items() if k != "log_every"},
            "n_runs": n_runs,
            "grid": "+".join(dict.fromkeys(lay.grid for lay in batch.layouts)),
            "use_rep": use_rep,
            "n_pcs": rep.shape[1],
            "sample_key": sample_key or "",
        },
        "seed": seed,
        "run_seeds": run_seeds.astype(np.int64),
        "device": str(dev),
        "iterations": np.asarray(iterations),
        "labels_at_stop": np.asarray(stop_counts),
        "image_shape": np.asarray(batch.image.shape[2:]),
        "n_pixels": batch.n_pixels,
        "time_s": time.perf_counter() - start,
    }
    if sample_key is not None:
        adata.uns["spaseg"]["samples"] = np.asarray(batch.samples)
        adata.uns["spaseg"]["section_shapes"] = np.asarray([lay.shape for lay in batch.layouts])
    return adata if copy else None
