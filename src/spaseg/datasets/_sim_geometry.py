"""Spot grids, tissue outlines and smooth random fields for the tissue simulators.

Everything here works on the *full* grid of a capture area; a tissue outline then picks the
spots that carry tissue. Shapes are drawn in unit coordinates (the grid's bounding box mapped
to [-1, 1] x [-1, 1]) so that patterns look alike whatever the grid size or spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

GRIDS = ("hex", "square")
SHAPES = ("ellipse", "full")
# Visium spots sit 100 µm apart centre to centre; 50 µm is a common Stereo-seq bin (bin100 at 0.5 µm).
DEFAULT_SPACING_UM = {"hex": 100.0, "square": 50.0}
# A neighbour is one lattice step away: 6 on the hex grid, 8 (with diagonals) on the square one.
_NEIGHBOUR_RADIUS = {"hex": 1.05, "square": 1.5}


@dataclass(frozen=True)
class Grid:
    """All spot positions of a capture area.

    Attributes
    ----------
    kind
        ``"hex"`` (Visium-like) or ``"square"``.
    spacing
        Centre-to-centre distance of neighbouring spots in µm.
    array_row, array_col
        Integer lattice indices (Visium's ``array_row``/``array_col`` on the hex grid).
    xy
        Physical spot centres in µm, shape ``(n_spots, 2)``, columns x and y.
    """

    kind: str
    spacing: float
    array_row: np.ndarray
    array_col: np.ndarray
    xy: np.ndarray

    @property
    def n_spots(self) -> int:
        return self.array_row.size

    def unit_coords(self) -> np.ndarray:
        """Spot centres mapped from the bounding box onto ``[-1, 1] x [-1, 1]``."""
        lo, hi = self.xy.min(axis=0), self.xy.max(axis=0)
        return 2.0 * (self.xy - lo) / np.where(hi > lo, hi - lo, 1.0) - 1.0

    def subset(self, keep: np.ndarray) -> Grid:
        return replace(
            self, array_row=self.array_row[keep], array_col=self.array_col[keep], xy=self.xy[keep]
        )


def default_n_cols(kind: str, n_rows: int) -> int:
    """Columns that make the capture area about as wide as it is tall.

    On the hex grid a row step is ``sqrt(3)/2`` spacings and a column step half a spacing, so a
    square area needs ``sqrt(3)`` times more columns than rows (Visium: 78 rows, 128 columns).
    """
    return int(round(np.sqrt(3.0) * n_rows)) if kind == "hex" else n_rows


def make_grid(kind: str, n_rows: int, n_cols: int, spacing: float) -> Grid:
    """Build a hexagonal (Visium) or square lattice.

    On the hex grid ``array_col`` has the parity of ``array_row``, so each row holds every second
    column, as in Visium; ``x = array_col * spacing / 2`` and ``y = array_row * spacing * sqrt(3)/2``
    give equal distances to all six neighbours.
    """
    row, col = np.divmod(np.arange(n_rows * n_cols), n_cols)
    if kind == "hex":
        keep = (row - col) % 2 == 0
        row, col = row[keep], col[keep]
        xy = np.column_stack([col * spacing / 2.0, row * spacing * np.sqrt(3.0) / 2.0])
    else:
        xy = np.column_stack([col * spacing, row * spacing]).astype(float)
    return Grid(kind, float(spacing), row, col, xy)


def neighbour_graph(grid: Grid) -> sparse.csr_matrix:
    """Symmetric 0/1 adjacency of spots one lattice step apart (no self loops)."""
    tree = cKDTree(grid.xy)
    pairs = tree.query_pairs(_NEIGHBOUR_RADIUS[grid.kind] * grid.spacing, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    n = grid.n_spots
    return sparse.csr_matrix((np.ones(i.size), (i, j)), shape=(n, n))


def smooth_field(
    uv: np.ndarray, rng: np.random.Generator, sd: float, n_waves: int = 8
) -> np.ndarray:
    """A smooth random scalar field (sum of random plane waves) with standard deviation ``sd``.

    Wavelengths are between about 1.5 and 6 unit lengths, i.e. a few bumps across the section.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    freq = rng.uniform(1.0, 4.0, n_waves)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    k = freq[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return sd * np.sqrt(2.0 / n_waves) * np.cos(uv @ k.T + phase).sum(axis=1)


@dataclass(frozen=True)
class Outline:
    """A star-shaped blob: a circle whose radius wobbles smoothly with the angle.

    ``r(theta) = radius * (1 + sum_k amplitude_k * cos(k * theta + phase_k))`` for ``k = 2, 3, ...``
    around ``centre``; in unit coordinates a circle is an ellipse inscribed in the grid.
    """

    centre: np.ndarray
    radius: float
    amplitude: np.ndarray
    phase: np.ndarray

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        centre: np.ndarray,
        radius: float,
        wobble: float,
        n_harmonics: int = 4,
    ) -> Outline:
        # Higher harmonics get smaller amplitudes so the outline stays smooth.
        amplitude = wobble * rng.uniform(0.3, 1.0, n_harmonics) / np.arange(1, n_harmonics + 1)
        phase = rng.uniform(0.0, 2.0 * np.pi, n_harmonics)
        return cls(np.asarray(centre, float), float(radius), amplitude, phase)

    def scaled_distance(self, uv: np.ndarray) -> np.ndarray:
        """Distance from the centre in units of the outline radius at that angle (<1 inside)."""
        d = uv - self.centre
        theta = np.arctan2(d[:, 1], d[:, 0])
        k = np.arange(2, 2 + self.amplitude.size)
        wobble = (self.amplitude * np.cos(np.outer(theta, k) + self.phase)).sum(axis=1)
        return np.hypot(d[:, 0], d[:, 1]) / (self.radius * (1.0 + wobble))

    def jittered(self, rng: np.random.Generator, sd: float) -> Outline:
        """The same outline with centre, radius and wobble perturbed by about ``sd`` unit lengths.

        Serial sections are cut from one tissue block, so their outlines differ only a little.
        """
        return Outline(
            centre=self.centre + rng.normal(0.0, sd, 2),
            radius=self.radius * (1.0 + rng.normal(0.0, sd)),
            amplitude=np.clip(self.amplitude + rng.normal(0.0, sd, self.amplitude.size), -0.3, 0.3),
            phase=self.phase + rng.normal(0.0, 5.0 * sd, self.phase.size),
        )


def tissue_outline(shape: str, rng: np.random.Generator) -> Outline | None:
    """The tissue outline of a section, or ``None`` when the tissue covers the whole grid.

    The blob leaves a margin of background spots around it, as on a real capture area.
    """
    if shape == "full":
        return None
    return Outline.random(rng, centre=rng.normal(0.0, 0.02, 2), radius=0.85, wobble=0.15)


def in_tissue(uv: np.ndarray, outline: Outline | None) -> np.ndarray:
    """Boolean mask of spots covered by tissue."""
    if outline is None:
        return np.ones(uv.shape[0], dtype=bool)
    return outline.scaled_distance(uv) < 1.0
