"""Serial sections of one tissue block, each placed on its capture area by a known rigid motion.

The tissue is simulated once per section on a grid finer than the capture spots
(:func:`spaseg.datasets.simulate_sections`: shared domains and gene programs, own outline,
counts and batch effect). A piece of each section is torn away, the section is rotated,
translated and perhaps flipped onto its capture area, and the capture area's own spot lattice
then samples it: every capture spot takes the counts and domain of the nearest fine-grid
point. Sections therefore share no spot positions, as on real serial sections, and the
transform from each capture area back to the tissue frame is known exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial import cKDTree

from .._errors import InputError
from .._geometry import spot_spacing
from ._sim_geometry import DEFAULT_SPACING_UM, make_grid
from ._simulate import simulate_sections


def rigid_matrix(rotation_deg: float, reflection: bool = False) -> np.ndarray:
    """2 x 2 matrix of a rotation (counter-clockwise, degrees), after a flip of y if asked."""
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rot @ np.diag([1.0, -1.0]) if reflection else rot


def simulate_serial_sections(
    n_sections: int = 3,
    *,
    rotations: list[float] | None = None,
    reflections: list[bool] | None = None,
    max_rotation: float = 180.0,
    max_shift: float = 10.0,
    missing_fraction: float = 0.1,
    z_step: float = 10.0,
    oversample: int = 2,
    n_rows: int = 30,
    grid: str = "hex",
    seed: int = 0,
    **tissue: Any,
) -> list[AnnData]:
    """Simulate serial sections under known rigid transforms, for testing alignment.

    Parameters
    ----------
    n_sections
        Number of sections. Section 0 lies in the tissue frame (identity transform).
    rotations
        Rotation of each section onto its capture area, in degrees; default: uniform in
        ``[-max_rotation, max_rotation]`` (0 for section 0).
    reflections
        Whether each section was flipped (mounted upside down); default: none.
    max_rotation
        Largest random rotation, in degrees.
    max_shift
        Largest random translation along x and y, in spot spacings.
    missing_fraction
        Share of each section's tissue torn away (a straight cut at a random angle).
    z_step
        Distance between consecutive sections, in the units of ``obsm["spatial"]`` (µm).
    oversample
        Fine-grid points per capture spot spacing along each axis; the tissue is simulated
        at that resolution and sampled by the capture spots.
    n_rows
        Rows of the capture-spot grid covering the tissue.
    grid
        Capture lattice, ``"hex"`` (Visium) or ``"square"``.
    seed
        Seed: tissue, transforms and tears.
    **tissue
        Other keyword arguments of :func:`spaseg.datasets.simulate_sections` (``n_domains``,
        ``pattern``, ``n_genes``, ...).

    Returns
    -------
    One AnnData per section, laid out like :func:`spaseg.datasets.simulate_tissue` (counts,
    ``obs["array_row"]``, ``obs["array_col"]``, ``obs["domain_truth"]``, capture coordinates
    in ``obsm["spatial"]``), plus ``obs["sample"]``, the spot positions in the tissue frame in
    ``obsm["spatial_truth"]`` and ``uns["serial"]``: ``matrix`` (2 x 2) and ``offset`` of the
    transform from capture to tissue coordinates (``truth = spatial @ matrix.T + offset``),
    ``rotation_deg``, ``reflection``, ``translation``, ``z`` and ``spacing``.
    """
    if n_sections < 1:
        raise InputError(f"must be >= 1, got {n_sections!r}", field="n_sections")
    if oversample < 1:
        raise InputError(f"must be >= 1, got {oversample!r}", field="oversample")
    if not 0 <= missing_fraction < 0.5:
        raise InputError(f"must be in [0, 0.5), got {missing_fraction!r}", field="missing_fraction")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    rotations = _per_section(rotations, n_sections, "rotations", rng, max_rotation)
    reflections = list(reflections) if reflections is not None else [False] * n_sections
    if len(reflections) != n_sections:
        raise InputError(f"needs {n_sections} values", field="reflections")

    spacing = tissue.pop("spacing_um", None) or DEFAULT_SPACING_UM[grid]
    fine = simulate_sections(
        n_sections,
        n_rows=n_rows * oversample,
        grid=grid,
        spacing_um=spacing / oversample,
        seed=seed,
        **tissue,
    )
    sections = []
    for k, section in enumerate(fine):
        kept = section[_torn(section.obsm["spatial"], missing_fraction, rng)]
        matrix = rigid_matrix(rotations[k], reflections[k])
        shift = np.zeros(2) if k == 0 else rng.uniform(-max_shift, max_shift, 2) * spacing
        sampled, centre = _capture(kept, matrix, shift, spacing, grid, rng if k else None)
        sampled.obs["sample"] = f"section{k}"
        sampled.obs_names = [f"s{k}_{i}" for i in range(sampled.n_obs)]
        sampled.uns["serial"] = {
            # capture -> tissue undoes the motion: its matrix is the transpose (inverse)
            "matrix": matrix.T,
            "offset": centre - matrix.T @ (centre + shift),
            "rotation_deg": float(rotations[k]),
            "reflection": bool(reflections[k]),
            "translation": shift,
            "z": k * z_step,
            "spacing": spacing,
            "section": k,
        }
        sections.append(sampled)
    return sections


def _per_section(values, n: int, name: str, rng, limit: float) -> list[float]:
    if values is None:
        return [0.0] + list(rng.uniform(-limit, limit, n - 1))
    if len(values) != n:
        raise InputError(f"needs {n} values, got {len(values)}", field=name)
    return [float(v) for v in values]


def _torn(xy: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Keep all but a straight-cut share ``fraction`` of the spots, cut at a random angle."""
    if fraction == 0:
        return np.ones(len(xy), dtype=bool)
    angle = rng.uniform(0, 2 * np.pi)
    along = xy @ np.array([np.cos(angle), np.sin(angle)])
    return along <= np.quantile(along, 1.0 - fraction)


def _capture(
    section: AnnData,
    matrix: np.ndarray,
    shift: np.ndarray,
    spacing: float,
    grid: str,
    rng: np.random.Generator | None,
) -> tuple[AnnData, np.ndarray]:
    """Sample a moved section with a capture lattice: each spot takes its nearest fine point.

    The tissue is moved about its centre (``matrix`` then ``shift``); the lattice is laid over
    the moved tissue with a random sub-spot offset (none when ``rng`` is None).
    """
    xy = np.asarray(section.obsm["spatial"], dtype=float)
    centre = xy.mean(axis=0)
    moved = (xy - centre) @ matrix.T + centre + shift
    lo, hi = moved.min(axis=0) - spacing, moved.max(axis=0) + spacing
    jitter = np.zeros(2) if rng is None else rng.uniform(0, 1, 2) * spacing
    row_step = spacing * np.sqrt(3) / 2 if grid == "hex" else spacing
    n_rows = int((hi[1] - lo[1]) / row_step) + 2
    n_cols = int((hi[0] - lo[0]) / (spacing / 2 if grid == "hex" else spacing)) + 2
    lattice = make_grid(grid, n_rows, n_cols, spacing)
    spots = lattice.xy + lo - jitter
    fine_step = spot_spacing(xy)
    dist, nearest = cKDTree(moved).query(spots)
    inside = dist <= 0.75 * fine_step  # a capture spot over tissue
    nearest = nearest[inside]
    out = AnnData(
        X=section.X[nearest].copy(),
        obs=pd.DataFrame(
            {
                "array_row": lattice.array_row[inside],
                "array_col": lattice.array_col[inside],
                "domain_truth": section.obs["domain_truth"].to_numpy()[nearest],
            },
            index=pd.RangeIndex(len(nearest)).astype(str),
        ),
        var=section.var.copy(),
        uns={"simulation": dict(section.uns["simulation"])},
    )
    out.obs["domain_truth"] = pd.Categorical(
        out.obs["domain_truth"], categories=section.obs["domain_truth"].cat.categories
    )
    out.obsm["spatial"] = spots[inside]
    # Where the capture spot sits in the tissue frame (the inverse motion of its position).
    out.obsm["spatial_truth"] = (spots[inside] - centre - shift) @ matrix + centre
    return out, centre
