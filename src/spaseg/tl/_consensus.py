"""Consensus of several clusterings of the same spots (co-association)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import KMeans

# Exact average linkage is quadratic in the number of distinct label patterns; above this
# many we switch to weighted KMeans on one-hot codes (same distance, cheaper).
_MAX_LINKAGE = 1500


def consensus_labels(runs: np.ndarray, n_clusters: int, *, seed: int = 0) -> np.ndarray:
    """Combine several label vectors into one by co-association.

    Two items are close when many runs put them together: their distance is the fraction of
    runs that disagree (the Hamming distance of their label patterns). Items with identical
    patterns are collapsed first, so the cost grows with the number of distinct patterns,
    not with the number of spots. The patterns are then clustered by average linkage (UPGMA,
    each pattern weighted by how many items share it), or, when there are very many, by
    KMeans on one-hot codes (squared Euclidean distance = 2 x the number of disagreeing runs).

    Parameters
    ----------
    runs
        ``(n_runs, n_items)`` integer labels; label ids need not agree between runs.
    n_clusters
        Number of consensus clusters.
    seed
        Random state of the KMeans path.

    Returns
    -------
    ``(n_items,)`` labels in ``0..n_clusters-1`` (fewer if the runs allow fewer).
    """
    runs = np.asarray(runs)
    patterns, inverse, counts = np.unique(runs.T, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    if len(patterns) <= n_clusters:
        return inverse
    if len(patterns) <= _MAX_LINKAGE:
        labels = _upgma(squareform(pdist(patterns, metric="hamming")), counts, n_clusters)
    else:
        onehot = np.concatenate(
            [np.eye(col.max() + 1, dtype=np.float32)[col] for col in patterns.T], axis=1
        )
        km = KMeans(n_clusters, n_init=10, random_state=seed)
        labels = km.fit_predict(onehot, sample_weight=counts)
    return np.unique(labels, return_inverse=True)[1][inverse]


def _upgma(dist: np.ndarray, sizes: np.ndarray, n_clusters: int) -> np.ndarray:
    """Average linkage on a distance matrix whose items start with the given sizes.

    scipy's ``linkage`` starts every item at size 1; we need patterns to weigh as many spots
    as they stand for, so the Lance-Williams update is applied here directly.
    """
    d = dist.astype(float, copy=True)
    np.fill_diagonal(d, np.inf)
    size = sizes.astype(float)
    owner = np.arange(len(d))
    for _ in range(len(d) - n_clusters):
        i, j = np.unravel_index(np.argmin(d), d.shape)
        merged = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[i], d[:, i] = merged, merged
        d[i, i] = np.inf
        d[j], d[:, j] = np.inf, np.inf
        size[i] += size[j]
        owner[owner == j] = i
    return owner


def match_labels(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``labels`` renamed to the ``reference`` label they overlap most (one-to-one, Hungarian
    on the contingency table); labels left without a partner get ids past the reference's."""
    mine, inverse = np.unique(labels, return_inverse=True)
    theirs = np.unique(reference)
    table = np.zeros((len(mine), len(theirs)))
    np.add.at(table, (inverse, np.searchsorted(theirs, reference)), 1)
    rows, cols = linear_sum_assignment(-table)
    new = np.arange(len(mine)) + theirs.max() + 1
    new[rows] = theirs[cols]
    return new[inverse]


def agreement(runs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per item, the share of runs whose (matched) label equals the consensus label."""
    return np.mean([match_labels(run, labels) == labels for run in runs], axis=0)


def centroid_margin(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per item, ``1 - d1 / d2`` with ``d1`` the distance to its own cluster's centroid and
    ``d2`` to the nearest other one: 0 midway between two clusters, near 1 at a centre."""
    ids = np.unique(labels)
    centres = np.stack([x[labels == k].mean(axis=0) for k in ids])
    dist = np.stack([np.linalg.norm(x - c, axis=1) for c in centres], axis=1)
    own = np.searchsorted(ids, labels)
    d1 = dist[np.arange(len(x)), own]
    dist[np.arange(len(x)), own] = np.inf
    d2 = dist.min(axis=1)
    return np.clip(1.0 - np.divide(d1, d2, out=np.zeros_like(d1), where=d2 > 0), 0.0, 1.0)
