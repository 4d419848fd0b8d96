"""SpaSEG: unsupervised segmentation of a section's PCA image with a small CNN.

Each run trains a fresh network on the section image: a warm-up that reconstructs the input,
then self-training in which the current argmax is the target of a cross-entropy loss and an
L1 continuity loss pulls neighbouring spots' logits together. Unlike the reference:

- the losses and the label count use tissue pixels only (never background);
- continuity runs over the true spot neighbours (6 on Visium's hexagonal grid);
- the result has exactly ``n_domains`` domains: a run that stops with a different label count
  is clustered into ``n_domains`` with KMeans on its logits, and a consensus of runs with
  ``n_domains`` labels each has ``n_domains`` (only spots too alike for KMeans to split, fewer
  distinct than ``n_domains``, give fewer: logged, and ``uns["spaseg"]["n_domains_found"]``);
- several seeded runs are combined by co-association consensus, which removes most of the
  seed-to-seed variance of single runs. The same seed on the same device gives the same labels.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from anndata import AnnData
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score

from .._errors import InputError
from .._sections import sections
from ..pp._image import Grid, SpotImage, spot_image
from ._consensus import agreement, centroid_margin, consensus_labels
from ._model import SpaSEGNet
from ._refine import majority_refine

log = logging.getLogger("spaseg")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is visible.", field="device")
    return torch.device(device)


# cuBLAS reads its workspace setting when its first handle is made, so it is set on import,
# before any GPU work; without it, deterministic mode refuses cuBLAS calls on CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextmanager
def _deterministic(enabled: bool = True):
    """Deterministic kernels for the duration of a call; the caller's settings come back after.

    On a GPU the same seed gives the same labels only with all three: cuDNN's deterministic
    convolutions without autotuning, PyTorch's deterministic mode (sorted rather than atomic
    scatter-adds in the backward of the edge gathers) and the fixed cuBLAS workspace above.
    """
    previous = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )
    if enabled:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[:2]
        torch.use_deterministic_algorithms(previous[2])


def _environment(dev: torch.device, deterministic: bool) -> dict:
    """What the labels depend on besides the inputs and the seed: device, threads, versions."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    cuda = dev.type == "cuda"
    return {
        "deterministic": deterministic,
        "device_name": torch.cuda.get_device_name(dev) if cuda else platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "spaseg": installed("spaseg"),
            "torch": str(torch.__version__),  # a TorchVersion, which h5ad cannot store
            "cuda": (torch.version.cuda or "") if cuda else "",
            "cudnn": str(torch.backends.cudnn.version() or "") if cuda else "",
            "numpy": np.__version__,
            "scikit-learn": installed("scikit-learn"),
            "python": platform.python_version(),
        },
    }


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


def _section_batch(
    adata: AnnData, pcs: np.ndarray, grid: Grid, sample_key: str | None
) -> _SectionBatch:
    """Standardise each section's PCs, lay each out as an image, pad them to one size."""
    samples, members = sections(adata, sample_key)
    layouts, images = [], []
    for spots in members:
        section = adata if sample_key is None else adata[spots]
        layout = spot_image(section, grid=grid)
        layouts.append(layout)
        images.append(layout.to_image(_standardise(pcs[spots])))
    height = max(lay.shape[0] for lay in layouts)
    width = max(lay.shape[1] for lay in layouts)
    image = np.zeros((len(layouts), pcs.shape[1], height, width), dtype=np.float32)
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
    # Contiguous rows: argmax, log-softmax and the edge gathers read rows, not strided columns.
    return batch.transpose(0, 1).flatten(1)[:, pixels].T.contiguous()


@dataclass(frozen=True)
class _Stop:
    """When a run stops (see :func:`spaseg`)."""

    max_iter: int
    warmup_iter: int
    warmup_tol: float
    warmup_tile: int  # 0: whole image
    stop_labels: int
    n_domains: int
    stable_window: int
    stable_tol: float


@dataclass(frozen=True)
class _Training:
    """How every run of one call trains (all but its seed): network width, optimiser, loss
    weights, when to stop, and how often to log."""

    hidden: int
    lr: float
    weight_decay: float
    alpha: float  # cross-entropy weight
    beta: float  # spatial-continuity weight
    stop: _Stop
    log_every: int

    def params(self) -> dict:
        """The settings as ``uns["spaseg"]["params"]`` records them."""
        network = ("hidden", "lr", "weight_decay", "alpha", "beta")
        return {**{k: getattr(self, k) for k in network}, **vars(self.stop)}


@dataclass
class _RunResult:
    logits: np.ndarray  # (n_pixels, K) float64
    iterations: int
    warmup_iterations: int
    n_labels: int
    reason: str  # why the run stopped


class _Progress:
    """Per-iteration progress lines: time per iteration, loss, labels, share of labels changed."""

    def __init__(self, run_name: str, every: int):
        self.run_name, self.every = run_name, every
        self.clock = time.perf_counter()

    def __call__(self, it: int, loss: float, phase: str) -> None:
        if not self.every or (it + 1) % self.every:
            return
        now = time.perf_counter()
        per_iter, self.clock = (now - self.clock) / self.every, now
        log.info(
            "%s iter %d: %.3f s/iter, loss %.4f, %s", self.run_name, it + 1, per_iter, loss, phase
        )


def _train_run(
    image: torch.Tensor,
    mask: torch.Tensor,
    pixels: torch.Tensor,
    edges: torch.Tensor,
    *,
    seed: int,
    training: _Training,
    run_name: str,
) -> _RunResult:
    """Train one network; return its tissue logits and how it stopped.

    ``image`` is a batch of section images ``(S, C, H, W)`` padded to one size, ``mask`` marks
    their tissue ``(S, 1, H, W)``, ``pixels`` holds the flat indices of the occupied pixels in
    the ``S * H * W`` positions and ``edges`` pairs positions in ``pixels``. One network sees
    all sections, and its normalisation pools their tissue pixels.

    Warm-up reconstructs the (standardised) input until its mean squared error, the share of
    the input's variance not yet reconstructed, falls below ``stop.warmup_tol`` (at most
    ``stop.warmup_iter`` iterations). Self-training then runs until the argmax uses at most
    ``stop.stop_labels`` labels, or until the labels have settled (at most ``stop.stable_tol``
    of the pixels changed label over the last ``stop.stable_window`` iterations, with at least
    ``n_domains`` labels left for KMeans), or until ``stop.max_iter`` iterations in all.
    """
    stop, alpha, beta = training.stop, training.alpha, training.beta
    torch.manual_seed(seed)
    n_in = image.shape[1]
    n_out = max(n_in, stop.n_domains)
    if n_out > 255:
        raise InputError(f"at most 255 output channels, got {n_out}.", field="n_domains")
    model = SpaSEGNet(n_in, training.hidden, n_out).to(image.device)
    opt = torch.optim.Adam(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    target_in = _tissue(image, pixels)  # (n_pixels, n_in)
    progress = _Progress(run_name, training.log_every)
    n_labels, reason = -1, "max_iter"
    warmup_done = 0 if stop.warmup_iter == 0 else None
    window: list[torch.Tensor] = []  # the argmax of the last stable_window iterations
    tiled = 0 < stop.warmup_tile < max(image.shape[2:])
    for it in range(stop.max_iter):
        if warmup_done is None and tiled:
            logits = None  # the warm-up step sees one tile, not the image
        else:
            logits = _tissue(model(image, mask), pixels)  # (n_pixels, K)
        if warmup_done is None:
            if tiled:
                loss = _tile_reconstruction_loss(model, image, mask, stop.warmup_tile)
            else:
                loss = F.mse_loss(logits[:, :n_in], target_in)
            if loss.item() < stop.warmup_tol or it + 1 >= stop.warmup_iter:
                warmup_done = it + 1
            phase = "warm-up (reconstruction)"
        else:
            target = logits.argmax(dim=1)
            # bincount, not unique: a count pass instead of a sort of every pixel's label
            n_labels = int(torch.bincount(target, minlength=logits.shape[1]).count_nonzero())
            window.append(target.to(torch.uint8))  # <= 255 channels; 8x less to keep
            changed = (window[-1] != window[0]).float().mean().item() if len(window) > 1 else 1.0
            phase = f"{n_labels} labels, {changed:.2%} changed in {len(window) - 1} iterations"
            if n_labels <= stop.stop_labels:
                reason = "label count"
                break
            if (
                len(window) > stop.stable_window
                and changed <= stop.stable_tol
                and n_labels >= stop.n_domains
            ):
                reason = "labels stable"
                break
            if len(window) > stop.stable_window:
                window.pop(0)
            smooth = (logits[edges[:, 0]] - logits[edges[:, 1]]).abs().mean()
            loss = alpha * F.cross_entropy(logits, target) + beta * smooth
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress(it, loss.item(), phase)
    with torch.no_grad():
        logits = _tissue(model(image, mask), pixels)
    n_labels = int(torch.unique(logits.argmax(dim=1)).numel())
    return _RunResult(
        logits.cpu().numpy().astype(np.float64), it + 1, warmup_done or it + 1, n_labels, reason
    )


def _tile_reconstruction_loss(
    model: SpaSEGNet, image: torch.Tensor, mask: torch.Tensor, tile: int
) -> torch.Tensor:
    """Warm-up loss on one random ``tile`` x ``tile`` window of the image (same window in
    every section of a batch) that holds tissue: mean squared reconstruction error over its
    tissue pixels. The network is three layers of 3x3 (5x5 receptive field) convolutions, so
    learning to reconstruct its input is a local task, and windows teach it as well as the
    whole image at a fraction of the cost on a whole chip."""
    height, width = image.shape[2:]
    th, tw = min(tile, height), min(tile, width)
    for _ in range(20):  # windows of background only carry no signal: draw again
        y0 = int(torch.randint(0, height - th + 1, ()).item())
        x0 = int(torch.randint(0, width - tw + 1, ()).item())
        m = mask[:, :, y0 : y0 + th, x0 : x0 + tw]
        if m.sum() >= 0.05 * th * tw:
            break
    x = image[:, :, y0 : y0 + th, x0 : x0 + tw]
    out = model(x, m)[:, : x.shape[1]]
    return ((out - x) ** 2 * m).sum() / (m.sum().clamp_min(1.0) * x.shape[1])


def _n_runs(n_runs: int, n_pixels: int, consensus_pixels: int | None) -> int:
    """Runs for a section of ``n_pixels``: all ``n_runs`` while their pixels together stay
    within ``consensus_pixels``, fewer (at least one) for larger sections."""
    if not consensus_pixels:
        return n_runs
    return int(np.clip(consensus_pixels // max(n_pixels, 1), 1, n_runs))


def _stop_labels(n_domains: int, *, n_out: int, margin: int) -> int:
    """Label count at which a run stops (see ``stop_margin`` in :func:`spaseg`)."""
    return max(n_domains, min(n_domains + margin, n_out - margin))


def _run_labels(
    logits: np.ndarray, n_domains: int, seed: int, *, argmax: bool = True
) -> np.ndarray:
    """Exactly ``n_domains`` labels from one run's logits: its argmax when that has as many
    labels (and ``argmax``), else KMeans of the logits."""
    labels = np.unique(logits.argmax(axis=1), return_inverse=True)[1]
    if argmax and labels.max() + 1 == n_domains:
        return labels
    return KMeans(n_domains, n_init=10, random_state=seed).fit_predict(logits)


def _check_k_range(
    n_domains: str, k_range: tuple[int, int], n_obs: int, sample: str | None
) -> tuple[int, int]:
    if n_domains != "auto":
        raise InputError(
            f"n_domains must be an integer >= 2 or 'auto', got {n_domains!r}.",
            sample=sample,
            field="n_domains",
        )
    lo, hi = (int(k) for k in k_range)
    if not 2 <= lo < hi:
        raise InputError(
            f"k_range must be two integers 2 <= low < high, got {k_range!r}.",
            sample=sample,
            field="k_range",
        )
    return lo, min(hi, n_obs)


def _choose_k(
    logits: list[np.ndarray], k_range: tuple[int, int], seeds: np.ndarray
) -> tuple[int, pd.DataFrame, np.ndarray]:
    """The number of domains whose clusters the runs' outputs separate best.

    Each run's logits are clustered into ``k`` groups (KMeans) for every ``k`` in the range.
    The chosen ``k`` has the largest separation, the runs' mean Calinski-Harabasz index
    (between- over within-cluster variance of the logits; ties: the smaller ``k``). The
    stability of each ``k``, the mean ARI between the runs' clusterings, is reported beside
    it: it was the criterion before, but a merge of two thin layers is as stable as the real
    split (every run makes the same merge), and on DLPFC it swung from 3 to 12; separation
    chose better on both simulated and DLPFC sections, and better than the two ranks summed
    (``benchmarks/auto_k.py``, ``benchmarks/RESULTS.md``). Every ``k`` is clustered the same
    way, KMeans: a run's argmax at the ``k`` of its own label count would score higher merely
    for being another method. Returns the chosen ``k``, the scores per ``k`` (``n_domains``,
    ``stability``, ``calinski_harabasz``) and the runs' labels at the chosen ``k`` (runs x
    items).
    """
    ks = list(range(k_range[0], k_range[1] + 1))
    stability, separation, labels = [], [], {}
    for k in ks:
        labels[k] = np.stack(
            [_run_labels(lg, k, int(s), argmax=False) for lg, s in zip(logits, seeds, strict=True)]
        )
        pairs = [
            adjusted_rand_score(labels[k][i], labels[k][j])
            for i in range(len(logits))
            for j in range(i + 1, len(logits))
        ]
        stability.append(round(float(np.mean(pairs)), 4))
        per_run = [_calinski_harabasz(lg, lab) for lg, lab in zip(logits, labels[k], strict=True)]
        separation.append(float(np.mean(per_run)))
    scores = pd.DataFrame(
        {"n_domains": ks, "stability": stability, "calinski_harabasz": np.round(separation, 2)}
    )
    chosen = ks[int(np.argmax(separation))]  # the first maximum: ties go to the smaller k
    return chosen, scores, labels[chosen]


def _curve(scores: pd.DataFrame, column: str, digits: int) -> str:
    """``"3:0.41 4:0.62 ..."``: one score per number of domains, for the log."""
    return " ".join(
        f"{k}:{v:.{digits}f}" for k, v in zip(scores["n_domains"], scores[column], strict=True)
    )


def _calinski_harabasz(points: np.ndarray, labels: np.ndarray) -> float:
    """Calinski-Harabasz index; 0 where the clustering has a single label (no separation)."""
    if np.unique(labels).size < 2:
        return 0.0
    return float(calinski_harabasz_score(points, labels))


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


def _refine(
    adata: AnnData,
    batch: _SectionBatch,
    labels: np.ndarray,
    n_domains: int,
    n_neighbors: int,
    sample_key: str | None,
) -> np.ndarray:
    """Neighbour-majority refinement of the spots' labels, within each section, on
    ``obsm["spatial"]`` (else the image's pixel grid); a domain it would empty keeps its
    spots (the result has as many domains as the model found).

    The neighbourhood must stay small against a domain, or refinement erodes the domains
    themselves: at most a sixth of the mean domain size of the smallest section (a Visium
    section with 7 domains allows ~85, so 18 stands; an 86-spot section with 3 bands, 4). Less
    than one ring of neighbours (6) is no majority worth following: no refinement then.
    """
    members = sections(adata, sample_key)[1]
    n_neighbors = min(n_neighbors, min(len(m) for m in members) // (6 * n_domains))
    if n_neighbors < 6:
        return labels
    if "spatial" in adata.obsm:
        xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    else:
        _, row, col = np.unravel_index(
            batch.pixels[batch.spot_pixel], (len(batch.layouts), *batch.image.shape[2:])
        )
        xy = np.column_stack([col, row]).astype(np.float64)
    refined = majority_refine(xy, labels, sections=members, n_neighbors=n_neighbors)
    for lost in np.setdiff1d(labels, refined):
        refined[labels == lost] = lost
    return refined


def _training_runs(
    batch: _SectionBatch, training: _Training, run_seeds: np.ndarray, dev: torch.device
) -> list[_RunResult]:
    """Step 2 of :func:`spaseg`: one training run per seed on the section image."""
    image = torch.from_numpy(batch.image).to(dev)
    mask = torch.from_numpy(batch.mask).to(dev)
    pixels = torch.from_numpy(batch.pixels).to(dev)
    edges = torch.from_numpy(batch.edges).to(dev)
    results = []
    for r, run_seed in enumerate(run_seeds.tolist()):
        name = f"run {r + 1}/{len(run_seeds)}"
        result = _train_run(
            image, mask, pixels, edges, seed=run_seed, training=training, run_name=name
        )
        results.append(result)
        log.info(
            "%s: %d iterations (%d warm-up), stopped on %s with %d argmax labels",
            name,
            result.iterations,
            result.warmup_iterations,
            result.reason,
            result.n_labels,
        )
    return results


@dataclass
class _Consensus:
    """What the runs agree on, per image pixel."""

    labels: np.ndarray  # the consensus label of each pixel
    runs: np.ndarray  # (runs, pixels) each run's labels, matched to n_domains
    n_domains: int  # asked for, or chosen by "auto"
    n_found: int  # distinct labels of the consensus (fewer only for too alike spots)
    best: int  # the run closest to the consensus
    k_scores: pd.DataFrame | None  # scores of each k ("auto" only)


def _consensus(
    logits: list[np.ndarray],
    n_domains: int | None,
    k_range: tuple[int, int],
    run_seeds: np.ndarray,
    seed: int,
) -> _Consensus:
    """Step 3 of :func:`spaseg`: each run's labels at ``n_domains`` (``None``: the number in
    ``k_range`` whose domains the runs separate best), then their co-association consensus."""
    k_scores = None
    if n_domains is None:
        n_domains, k_scores, runs = _choose_k(logits, k_range, run_seeds)
        log.info(
            "n_domains auto: %d (per k: stability %s; Calinski-Harabasz %s)",
            n_domains,
            _curve(k_scores, "stability", 2),
            _curve(k_scores, "calinski_harabasz", 0),
        )
    else:
        runs = np.stack(
            [_run_labels(lg, n_domains, int(rs)) for lg, rs in zip(logits, run_seeds, strict=True)]
        )
    labels = consensus_labels(runs, n_domains, seed=seed) if len(runs) > 1 else runs[0]
    best = int(np.argmax([adjusted_rand_score(labels, lab) for lab in runs]))
    n_found = int(labels.max()) + 1
    if n_found != n_domains:
        log.warning(
            "found %d domains instead of %d: fewer distinct spot profiles than domains, "
            "KMeans could not split them.",
            n_found,
            n_domains,
        )
    return _Consensus(labels, runs, n_domains, n_found, best, k_scores)


def _spot_domains(
    adata: AnnData,
    batch: _SectionBatch,
    found: _Consensus,
    refine_neighbors: int,
    sample_key: str | None,
    logits: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4 of :func:`spaseg`: each spot's domain (its pixel's, refined by the majority of
    its neighbours) and confidence: the share of runs that agree with it; with one run, how far
    the spot's logits sit from the boundary between its cluster and the next (centroid
    margin)."""
    spot = batch.spot_pixel
    spot_labels = found.labels[spot]
    if refine_neighbors:
        spot_labels = _refine(
            adata, batch, spot_labels, found.n_found, refine_neighbors, sample_key
        )
    if len(found.runs) > 1:
        confidence = agreement(found.runs[:, spot], spot_labels)
    else:
        confidence = centroid_margin(logits[0][spot], spot_labels)
    return spot_labels, confidence


def spaseg(
    adata: AnnData,
    *,
    n_domains: int | Literal["auto"] = 7,
    k_range: tuple[int, int] = (3, 12),
    seed: int = 0,
    device: str = "auto",
    n_runs: int = 4,
    max_iter: int = 1000,
    warmup_iter: int = 400,
    warmup_tol: float = 0.0,
    warmup_tile: int | None = 256,
    stable_window: int = 50,
    stable_tol: float = 0.005,
    consensus_pixels: int | None = 1_200_000,
    lr: float = 0.005,
    weight_decay: float = 1e-5,
    alpha: float = 0.4,
    beta: float = 0.7,
    hidden: int | None = None,
    stop_margin: int = 3,
    refine_neighbors: int = 18,
    grid: Grid = "auto",
    use_rep: str = "X_pca",
    n_pcs: int | None = None,
    key_added: str = "domain",
    embedding_key: str = "spaseg",
    sample_key: str | None = None,
    deterministic: bool = True,
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
        Number of domains in the result, or ``"auto"``: the number in ``k_range`` whose
        domains separate best (the runs train for ``k_range[1]`` domains; each run's logits
        are then clustered for every ``k``, and the largest mean Calinski-Harabasz index over
        the runs wins; the runs' agreement, mean pairwise ARI, is reported beside it; at least
        two runs). Scores per ``k`` go to ``uns["spaseg"]["k_scores"]``.
    k_range
        Smallest and largest number of domains ``"auto"`` considers.
    seed
        Master seed; each run gets its own seed drawn from it (``numpy.random.SeedSequence``),
        so different master seeds share no runs. Same seed, device and thread count give the
        same labels (with ``deterministic``).
    deterministic
        Deterministic kernels (cuDNN, cuBLAS and PyTorch's deterministic mode) during training,
        so the same seed reproduces the labels bit for bit on a GPU too. ``False`` allows
        faster non-deterministic GPU kernels; on CPU it changes nothing measurable.
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    n_runs
        Independent runs combined by co-association consensus (1 = a single run).
    max_iter, warmup_iter
        Most iterations of a run, and most of them that reconstruct the input first.
    warmup_tol
        The warm-up ends early once its mean squared error (the share of the standardised
        input's variance not yet reconstructed) is below this (0: always ``warmup_iter``).
    warmup_tile
        On images larger than this (pixels per side), each warm-up iteration reconstructs one
        random ``warmup_tile`` x ``warmup_tile`` window with tissue instead of the whole image:
        the same lesson for a whole chip at a fraction of the cost. Smaller images (Visium,
        ~80 x 130 pixels) train on the whole image. ``None`` or 0: always the whole image.
    stable_window, stable_tol
        Self-training also stops once at most ``stable_tol`` of the pixels changed label over
        the last ``stable_window`` iterations (labels settled above the stop count; KMeans then
        makes ``n_domains``), so a stalled run does not spend ``max_iter``.
    consensus_pixels
        Large sections get fewer runs: as many of ``n_runs`` as fit ``consensus_pixels`` pixels
        in all, at least one. ``None``: always ``n_runs``.
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
    refine_neighbors
        Last step: a spot whose this many nearest spots (in its own section) hold a strict
        majority of another domain joins it, once (:func:`spaseg.tl._refine.majority_refine`):
        specks and ragged edges go, boundaries stay; no domain is removed. Fewer on small
        sections (at most a sixth of the mean domain size; below 6, none). 0: off.
    grid
        Spot layout, see :func:`spaseg.pp.spot_image`.
    use_rep, n_pcs
        Representation to segment, and how many of its leading columns to use.
    key_added
        ``obs`` column for the labels (and ``key_added + "_confidence"``).
    embedding_key
        Where the rest goes: ``obsm[embedding_key + "_embedding"]``,
        ``obsm[embedding_key + "_runs"]`` and ``uns[embedding_key]``, so that a second call with
        other settings (and another ``key_added``) can sit beside the first.
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
    Sets ``obs[key_added]`` (categorical, ``n_domains`` categories),
    ``obs[key_added + "_confidence"]`` (in [0, 1]: the share of runs whose matched label agrees
    with the consensus; with a single run the centroid margin of its logits, 0 midway between
    two domains) and, named by ``embedding_key`` (here the default), ``obsm["spaseg_embedding"]``
    (logits of the run closest to the consensus), ``obsm["spaseg_runs"]`` (labels of each run)
    and ``uns["spaseg"]`` (parameters, seed, iterations, device and its name, threads, library
    versions, timing; with ``sample_key`` also ``samples`` and ``section_shapes``, and
    ``image_shape`` is the padded size).
    """
    auto = isinstance(n_domains, str)
    if auto:
        k_range = _check_k_range(n_domains, k_range, adata.n_obs, sample)
    n_train = k_range[1] if auto else n_domains  # network size and stop count
    _check_inputs(adata, use_rep, n_train, sample)
    if sample_key is not None and sample_key not in adata.obs:
        raise InputError(
            f"obs[{sample_key!r}] is missing; it must name each spot's section.",
            sample=sample,
            field=f"obs['{sample_key}']",
        )
    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    dev = resolve_device(device)

    # 1. The image: each section's PCs as channels, one pixel per spot.
    pcs = np.asarray(adata.obsm[use_rep], dtype=np.float64)[:, :n_pcs]
    batch = _section_batch(adata, pcs, grid, sample_key)
    if n_train > batch.n_pixels:
        raise InputError(
            f"n_domains={n_train} is larger than the number of image pixels ({batch.n_pixels}).",
            sample=sample,
            field="n_domains",
        )
    # 2. Independent training runs, each from its own seed.
    stop = _Stop(
        max_iter=max_iter,
        warmup_iter=warmup_iter,
        warmup_tol=warmup_tol,
        warmup_tile=warmup_tile or 0,
        stop_labels=_stop_labels(n_train, n_out=max(pcs.shape[1], n_train), margin=stop_margin),
        n_domains=n_train,
        stable_window=stable_window,
        stable_tol=stable_tol,
    )
    training = _Training(
        hidden or pcs.shape[1], lr, weight_decay, alpha, beta, stop=stop, log_every=log_every
    )
    runs_used = _n_runs(n_runs, batch.n_pixels, consensus_pixels)
    if auto:
        runs_used = max(runs_used, 2)  # choosing k compares runs: it needs two
    if runs_used < n_runs:
        log.info(
            "%d pixels: %d run(s) instead of %d (consensus_pixels=%d)",
            batch.n_pixels,
            runs_used,
            n_runs,
            consensus_pixels,
        )
    run_seeds = np.random.SeedSequence(seed).generate_state(runs_used) % 2**31
    with _deterministic(deterministic):
        results = _training_runs(batch, training, run_seeds, dev)
    logits = [r.logits for r in results]
    # 3. Their consensus: n_domains labels (or the number chosen from k_range).
    found = _consensus(logits, n_domains if not auto else None, k_range, run_seeds, seed)
    # 4. Back to the spots: neighbour-majority refinement, and each spot's confidence.
    spot_labels, confidence = _spot_domains(
        adata, batch, found, refine_neighbors, sample_key, logits
    )
    # 5. Into the AnnData.
    adata.obs[key_added] = pd.Categorical(
        spot_labels.astype(str), categories=[str(k) for k in range(found.n_found)]
    )
    adata.obs[f"{key_added}_confidence"] = confidence.astype(np.float32)
    spot = batch.spot_pixel
    adata.obsm[f"{embedding_key}_embedding"] = logits[found.best][spot].astype(np.float32)
    adata.obsm[f"{embedding_key}_runs"] = found.runs.T[spot].astype(np.int16)
    info = adata.uns[embedding_key] = {
        "params": {
            **training.params(),
            "n_domains": found.n_domains,
            "n_runs": n_runs,
            "refine_neighbors": refine_neighbors,
            "consensus_pixels": consensus_pixels or 0,
            "grid": "+".join(dict.fromkeys(lay.grid for lay in batch.layouts)),
            "use_rep": use_rep,
            "n_pcs": pcs.shape[1],
            "sample_key": sample_key or "",
        },
        "seed": seed,
        "run_seeds": run_seeds.astype(np.int64),
        "device": str(dev),
        **_environment(dev, deterministic),
        "n_runs_used": runs_used,
        "n_domains_found": found.n_found,
        "iterations": np.asarray([r.iterations for r in results]),
        "warmup_iterations": np.asarray([r.warmup_iterations for r in results]),
        "labels_at_stop": np.asarray([r.n_labels for r in results]),
        "stop_reasons": np.asarray([r.reason for r in results]),
        "image_shape": np.asarray(batch.image.shape[2:]),
        "n_pixels": batch.n_pixels,
        "time_s": time.perf_counter() - start,
    }
    if found.k_scores is not None:
        info["k_scores"] = found.k_scores
        info["params"]["k_range"] = np.asarray(k_range)
        info["params"]["n_domains_auto"] = True
    if sample_key is not None:
        info["samples"] = np.asarray(batch.samples)
        info["section_shapes"] = np.asarray([lay.shape for lay in batch.layouts])
    return adata if copy else None
