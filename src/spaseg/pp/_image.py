"""Turn spots into image pixels, and spot neighbourhoods into pixel edges.

SpaSEG segments an image whose channels are principal components. Three layouts are handled:

- ``hex``: 10x Visium. ``array_col`` runs over every second column in each row (its parity
  follows the row), so using it as a pixel column leaves a checkerboard of empty pixels inside
  the tissue. We halve the column instead ("offset coordinates"): every pixel in the tissue is
  a spot, and the 3x3 convolution covers the six hexagonal neighbours.
- ``square``: integer lattices (Stereo-seq bins, simulated square grids): pixel = lattice index.
- ``free``: arbitrary coordinates (Slide-seq, cell tables): quantised onto a square grid whose
  pixel is about one nearest-neighbour distance; spots sharing a pixel are averaged.

Everything the losses need is expressed on occupied pixels only, so background never enters
them: ``pixel_index`` (flat index of each occupied pixel), ``spot_pixel`` (which occupied pixel
each spot falls in) and ``edges`` (pairs of neighbouring occupied pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from anndata import AnnData

from .._errors import InputError
from .._geometry import spot_spacing

Grid = Literal["auto", "hex", "square", "free"]

# Half of each neighbourhood (the other half is the same edges reversed).
_HALF_OFFSETS = {
    "hex": np.array([[0, 2], [1, 1], [1, -1]]),  # in (array_row, array_col) units
    "square": np.array([[0, 1], [1, 0]]),
}


@dataclass(frozen=True)
class SpotImage:
    """Where each spot sits in the image, and which pixels neighbour each other.

    Attributes
    ----------
    shape
        Image height and width.
    pixel_index
        Flat (row-major) index of each occupied pixel, length ``n_pixels``.
    spot_pixel
        For each spot, the position of its pixel in ``pixel_index``.
    edges
        ``(n_edges, 2)`` array of neighbouring occupied pixels (positions in ``pixel_index``),
        each unordered pair once.
    grid
        The layout that was used.
    """

    shape: tuple[int, int]
    pixel_index: np.ndarray
    spot_pixel: np.ndarray
    edges: np.ndarray
    grid: str

    @property
    def n_pixels(self) -> int:
        return len(self.pixel_index)

    def pixel_features(self, features: np.ndarray) -> np.ndarray:
        """Average spot features per occupied pixel: ``(n_spots, C)`` -> ``(n_pixels, C)``."""
        counts = np.bincount(self.spot_pixel, minlength=self.n_pixels).astype(features.dtype)
        out = np.zeros((self.n_pixels, features.shape[1]), dtype=features.dtype)
        np.add.at(out, self.spot_pixel, features)
        return out / counts[:, None]

    def to_image(self, features: np.ndarray) -> np.ndarray:
        """Build the ``(C, H, W)`` image from spot features; background pixels are 0."""
        pix = self.pixel_features(features)
        image = np.zeros((features.shape[1], self.shape[0] * self.shape[1]), features.dtype)
        image[:, self.pixel_index] = pix.T
        return image.reshape(features.shape[1], *self.shape)

    def mask(self) -> np.ndarray:
        """Boolean ``(H, W)`` image, True where a pixel holds at least one spot."""
        mask = np.zeros(self.shape[0] * self.shape[1], dtype=bool)
        mask[self.pixel_index] = True
        return mask.reshape(self.shape)


def detect_grid(adata: AnnData) -> str:
    """``"hex"`` (Visium), ``"square"`` (integer lattice) or ``"free"``, from ``obs``."""
    if {"array_row", "array_col"} <= set(adata.obs.columns):
        row = adata.obs["array_row"].to_numpy()
        col = adata.obs["array_col"].to_numpy()
        if np.all(np.mod(row, 1) == 0) and np.all(np.mod(col, 1) == 0):
            parity = np.mod(row + col, 2)
            # Visium: row and column parity always agree (or always differ), and both row
            # parities occur. A square lattice has every combination.
            if np.unique(parity).size == 1 and np.unique(np.mod(row, 2)).size == 2:
                return "hex"
            return "square"
    return "free"


def _lattice(adata: AnnData, grid: str, max_size: int) -> tuple[np.ndarray, str]:
    """Integer lattice coordinates (row, col) of each spot, and the neighbourhood to use."""
    if grid in ("hex", "square"):
        if not {"array_row", "array_col"} <= set(adata.obs.columns):
            raise InputError(
                f"grid={grid!r} needs obs['array_row'] and obs['array_col'].", field="array_row"
            )
        lat = np.column_stack([adata.obs["array_row"], adata.obs["array_col"]]).astype(np.int64)
        return lat - lat.min(axis=0), grid
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    step = spot_spacing(xy)
    extent = xy.max(axis=0) - xy.min(axis=0)
    step = max(step, float(extent.max()) / (max_size - 1))  # bound the image size
    lat = np.floor((xy - xy.min(axis=0)) / step).astype(np.int64)
    return lat[:, ::-1], "square"  # rows follow y, columns follow x


def lattice_edges(points: np.ndarray, neighbourhood: str) -> np.ndarray:
    """Pairs of distinct lattice points ``(row, col)`` that are grid neighbours, each pair once.

    ``neighbourhood`` is ``"hex"`` (Visium's six, in ``array_row``/``array_col`` units) or
    ``"square"`` (the four edge neighbours). Each offset is looked up in a dense table of the
    lattice, so the cost is linear in the number of points.
    """
    points = points - points.min(axis=0)
    span = points.max(axis=0) + 1
    table = np.full(span[0] * span[1], -1, dtype=np.int64)
    table[points[:, 0] * span[1] + points[:, 1]] = np.arange(len(points))
    edges = []
    for dr, dc in _HALF_OFFSETS[neighbourhood]:
        r, c = points[:, 0] + dr, points[:, 1] + dc
        ok = (r >= 0) & (r < span[0]) & (c >= 0) & (c < span[1])
        other = np.full(len(points), -1, dtype=np.int64)
        other[ok] = table[r[ok] * span[1] + c[ok]]
        hit = other >= 0
        edges.append(np.column_stack([np.flatnonzero(hit), other[hit]]))
    return np.concatenate(edges)


def grid_lattice(adata: AnnData) -> tuple[np.ndarray, str] | None:
    """Integer ``(array_row, array_col)`` of each spot and ``"hex"``/``"square"``, or ``None``
    for spots that are not on a grid."""
    grid = detect_grid(adata)
    if grid == "free":
        return None
    lattice = np.column_stack([adata.obs["array_row"], adata.obs["array_col"]]).astype(np.int64)
    return lattice, grid


def spot_image(adata: AnnData, *, grid: Grid = "auto", max_size: int = 1000) -> SpotImage:
    """Map the spots of a section onto image pixels.

    Parameters
    ----------
    adata
        A section with ``obs["array_row"]``/``obs["array_col"]`` or ``obsm["spatial"]``.
    grid
        ``"hex"`` (Visium), ``"square"`` (integer lattice in ``array_row``/``array_col``),
        ``"free"`` (quantise ``obsm["spatial"]``) or ``"auto"`` (detect).
    max_size
        Largest image side for ``"free"`` coordinates; the pixel grows to respect it.
    """
    if grid == "auto":
        grid = detect_grid(adata)
    lattice, neighbourhood = _lattice(adata, grid, max_size)
    if grid == "hex":
        pix = np.column_stack([lattice[:, 0], lattice[:, 1] // 2])
    else:
        pix = lattice
    shape = (int(pix[:, 0].max()) + 1, int(pix[:, 1].max()) + 1)
    flat = pix[:, 0] * shape[1] + pix[:, 1]
    pixel_index, spot_pixel = np.unique(flat, return_inverse=True)

    # Edges between occupied pixels, from one representative spot's lattice point per pixel.
    occupied_lat = np.zeros(len(pixel_index), dtype=np.int64)
    occupied_lat[spot_pixel] = np.arange(len(spot_pixel))
    edges = lattice_edges(lattice[occupied_lat], neighbourhood)
    return SpotImage(shape, pixel_index, spot_pixel.astype(np.int64), edges, grid)
