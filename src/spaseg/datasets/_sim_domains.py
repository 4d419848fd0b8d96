"""Ground-truth spatial domains: cortex-like layers, Voronoi-like patches, or both.

Labels are assigned to every spot of the full grid, so that serial sections with different
tissue outlines share one domain geometry. Domain sizes are planned on a *reference* set of
spots (the reference tissue), which is how every domain is guaranteed a fair share of spots.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .._errors import InputError
from ._sim_geometry import Outline, smooth_field

PATTERNS = ("layers", "blobs", "mixed")
MAX_DOMAINS = 20


def min_domain_fraction(n_domains: int) -> float:
    """Smallest share of the tissue any domain gets (2% at the maximum of 20 domains)."""
    return 0.4 / n_domains


def assign_domains(
    uv: np.ndarray,
    reference: np.ndarray,
    n_domains: int,
    pattern: str,
    rng: np.random.Generator,
    max_tries: int = 50,
) -> np.ndarray:
    """Integer domain labels ``0..n_domains-1`` for all spots.

    Parameters
    ----------
    uv
        Unit coordinates of all grid spots, shape ``(n_spots, 2)``.
    reference
        Boolean mask of the spots on which domain sizes are planned and checked.
    n_domains
        Number of domains.
    pattern
        ``"layers"``, ``"blobs"`` or ``"mixed"``.
    rng
        Random generator (consumed).
    max_tries
        Random geometries to try until each domain holds at least
        :func:`min_domain_fraction` of the reference spots.
    """
    make = {"layers": _layers, "blobs": _blobs, "mixed": _mixed}[pattern]
    floor = min_domain_fraction(n_domains)
    if reference.sum() < 5 * n_domains:
        raise InputError(
            f"{reference.sum()} tissue spots are too few for {n_domains} domains; "
            "use a larger grid or fewer domains",
            field="n_domains",
        )
    for _ in range(max_tries):
        labels = make(uv, reference, n_domains, rng)
        shares = np.bincount(labels[reference], minlength=n_domains) / reference.sum()
        if shares.min() >= floor:
            return labels
    raise InputError(
        f"could not place {n_domains} domains of at least {floor:.1%} each on "
        f"{reference.sum()} tissue spots; use a larger grid or fewer domains",
        field="n_domains",
    )


def _planned_shares(n: int, floor: float, rng: np.random.Generator) -> np.ndarray:
    """Unequal shares (summing to 1) for ``n`` domains, each at least ``floor``."""
    return floor + (1.0 - n * floor) * rng.dirichlet(np.full(n, 2.0))


def _planned_floor(n_domains: int) -> float:
    """Planning a little above :func:`min_domain_fraction` leaves room for rounding."""
    return 1.25 * min_domain_fraction(n_domains)


def _cut_by_quantiles(value: np.ndarray, reference: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Cut ``value`` into bands holding ``shares`` (relative) of the reference spots."""
    edges = np.quantile(value[reference], np.cumsum(shares)[:-1] / shares.sum())
    return np.searchsorted(edges, value, side="right")


def _layer_depth(uv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Depth below a curved 'pial surface': distance to a centre outside the tissue.

    Concentric arcs give parallel curved bands; a smooth field added to the depth shifts all
    bands together locally, bending them like cortical layers without making them cross.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi)
    centre = rng.uniform(1.6, 3.0) * np.array([np.cos(angle), np.sin(angle)])
    return np.hypot(*(uv - centre).T) + smooth_field(uv, rng, sd=0.08)


def _layers(uv: np.ndarray, reference: np.ndarray, n_domains: int, rng) -> np.ndarray:
    shares = _planned_shares(n_domains, _planned_floor(n_domains), rng)
    return _cut_by_quantiles(_layer_depth(uv, rng), reference, shares)


def _blobs(uv: np.ndarray, reference: np.ndarray, n_domains: int, rng) -> np.ndarray:
    """Voronoi-like patches: two seeds per domain, boundaries bent by a smooth warp."""
    seeds = _relaxed_seeds(uv[reference], 2 * n_domains, rng)
    seed_domain = rng.permutation(np.arange(2 * n_domains) % n_domains)
    warp = np.column_stack([smooth_field(uv, rng, sd=0.08), smooth_field(uv, rng, sd=0.08)])
    _, nearest = cKDTree(seeds).query(uv + warp)
    return seed_domain[nearest]


def _relaxed_seeds(points: np.ndarray, n_seeds: int, rng, n_steps: int = 3) -> np.ndarray:
    """Random seed points moved a few Lloyd steps towards their cell centroids.

    A few steps even out the cell sizes (no vanishing domains) while keeping them irregular.
    """
    seeds = points[rng.choice(points.shape[0], n_seeds, replace=False)]
    for _ in range(n_steps):
        _, cell = cKDTree(seeds).query(points)
        size = np.bincount(cell, minlength=n_seeds)
        sums = np.stack([np.bincount(cell, points[:, d], n_seeds) for d in (0, 1)], axis=1)
        seeds = np.where(size[:, None] > 0, sums / np.maximum(size, 1)[:, None], seeds)
    return seeds


def _mixed(uv: np.ndarray, reference: np.ndarray, n_domains: int, rng) -> np.ndarray:
    """Layers with one or two blob domains embedded (the last domain labels)."""
    n_blobs = 1 if n_domains < 5 else 2
    n_layers = n_domains - n_blobs
    labels = np.full(uv.shape[0], -1)
    for b in range(n_blobs):
        free = reference & (labels < 0)
        centre = _blob_centre(uv, free, reference & (labels >= 0), rng)
        n_spots = int(round(rng.uniform(0.7, 1.0) / n_domains * reference.sum()))
        blob = _blob_mask(uv, free, centre, n_spots, rng)
        labels[blob & (labels < 0)] = n_layers + b
    free = reference & (labels < 0)
    # shares of the spots left free, so that every layer still gets its floor of the tissue
    floor = _planned_floor(n_domains) * reference.sum() / free.sum()
    shares = _planned_shares(n_layers, floor, rng)
    layer = _cut_by_quantiles(_layer_depth(uv, rng), free, shares)
    return np.where(labels < 0, layer, labels)


def _blob_centre(uv: np.ndarray, free: np.ndarray, placed: np.ndarray, rng) -> np.ndarray:
    """A random free spot near the middle, at least 0.4 unit lengths from earlier blobs."""
    candidates = free & (np.hypot(*uv.T) < 0.55)
    if placed.any():
        gap, _ = cKDTree(uv[placed]).query(uv)
        candidates &= gap > 0.4
    pool = np.flatnonzero(candidates if candidates.any() else free)
    return uv[rng.choice(pool)]


def _blob_mask(
    uv: np.ndarray, free: np.ndarray, centre: np.ndarray, n_spots: int, rng
) -> np.ndarray:
    """A wobbly round blob around ``centre`` holding ``n_spots`` of the ``free`` spots."""
    outline = Outline.random(rng, centre=centre, radius=1.0, wobble=0.25, n_harmonics=3)
    distance = outline.scaled_distance(uv)
    kth = min(n_spots, free.sum()) - 1
    cutoff = np.partition(distance[free], kth)[kth]
    return distance <= cutoff
