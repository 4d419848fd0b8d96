"""Spot geometry shared by the image builder, registration and the simulators."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def spot_spacing(xy: np.ndarray) -> float:
    """Median distance of a spot to its nearest neighbour (1.0 for fewer than two spots or
    when all spots coincide)."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return 1.0
    dist, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(dist[:, 1])) or 1.0
