"""Rigid registration of two sections by kernel correlation of their spot features.

Each section is a set of points (spot centres) carrying features (z-scored PCs, or one-hot
domains). For a rigid motion ``T`` of the moving section, the score is

    S(T) = sum_ij  <f_j, g_i>  K_sigma(T(x_j) - y_i)

over moving spots j and fixed spots i, with a Gaussian kernel ``K``: spots that land near
spots with similar expression add to it. Both sections are splatted onto rasters, so a score
costs O(n) memory and no spot-by-spot plan is ever formed.

1. Global search: for every rotation on a grid (and its mirror image when reflections are
   allowed) the score of all translations at once is a cross-correlation of the two rasters,
   computed with FFTs at a coarse resolution.
2. Local refinement: the best candidates are polished by gradient ascent on S over
   (angle, shift), sampling a smoothed fixed raster at the moved spots, coarse to fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage, optimize, sparse

from .._geometry import spot_spacing

_COARSE_PIXELS = 96  # raster side of the global search
_FINE_SIGMAS = (2.0, 1.0)  # kernel widths of the local refinement, in spot spacings
_MAX_POINTS = 20_000  # moving spots used by the refinement


@dataclass(frozen=True)
class Rigid:
    """``y = matrix @ x + offset``: a rotation, perhaps after a flip of y, then a shift."""

    matrix: np.ndarray
    offset: np.ndarray
    score: float = np.nan

    @property
    def reflection(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    @property
    def rotation_deg(self) -> float:
        """Rotation angle; for a reflection, the rotation applied after flipping y."""
        rot = self.matrix @ np.diag([1.0, -1.0]) if self.reflection else self.matrix
        return float(np.degrees(np.arctan2(rot[1, 0], rot[0, 0])))

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self.matrix.T + self.offset


def _rotation(theta_deg: float) -> np.ndarray:
    a = np.deg2rad(theta_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _splat(px: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splatting of weighted points (pixel units, (x, y)) onto ``(C, H, W)``."""
    base = np.floor(px).astype(np.int64)
    frac = px - base
    out = np.zeros((weights.shape[1], shape[0] * shape[1]))
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        col, row = base[:, 0] + dx, base[:, 1] + dy
        w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
        ok = (col >= 0) & (col < shape[1]) & (row >= 0) & (row < shape[0])
        flat = row[ok] * shape[1] + col[ok]
        for c in range(weights.shape[1]):
            out[c] += np.bincount(flat, w[ok] * weights[ok, c], minlength=out.shape[1])
    return out.reshape(weights.shape[1], *shape)


def _gaussian_transfer(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Fourier transfer function (rfft2 layout) of a Gaussian blur."""
    ky = fft.fftfreq(shape[0])[:, None]
    kx = fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2 * (np.pi * sigma_px) ** 2 * (kx**2 + ky**2))


def _global_search(
    fixed: np.ndarray,
    f_fixed: np.ndarray,
    moving: np.ndarray,
    f_moving: np.ndarray,
    angles: np.ndarray,
    reflection: bool,
    n_best: int,
) -> list[tuple[float, bool, np.ndarray, float]]:
    """Best (angle, flipped, shift, score) candidates; moving is rotated about its centroid.

    Shifts move the rotated moving centroid onto ``fixed``'s centroid plus ``shift``.
    """
    c_fix, c_mov = fixed.mean(axis=0), moving.mean(axis=0)
    extent = max(np.ptp(fixed, axis=0).max(), np.ptp(moving, axis=0).max())
    pixel = max(1.0, extent / _COARSE_PIXELS)
    size = fft.next_fast_len(int(2 * extent / pixel) + 8)
    shape = (size, size)
    origin = c_fix - pixel * size / 2  # both rasters centred on the fixed centroid
    spec_fixed = fft.rfft2(_splat((fixed - origin) / pixel, f_fixed, shape))
    # Each raster blurred by one spot spacing (at least a pixel): the kernel K of the score.
    transfer = _gaussian_transfer(shape, np.sqrt(2) * max(1.0, 1.0 / pixel))
    candidates = []
    for flipped in (False, True) if reflection else (False,):
        centred = (moving - c_mov) * ([1.0, -1.0] if flipped else [1.0, 1.0])
        for theta in angles:
            rotated = centred @ _rotation(theta).T + c_fix
            spec = fft.rfft2(_splat((rotated - origin) / pixel, f_moving, shape))
            corr = fft.irfft2((spec_fixed * spec.conj()).sum(axis=0) * transfer, s=shape)
            peak = np.unravel_index(np.argmax(corr), shape)
            shift = (np.array(peak[::-1], dtype=float) + size / 2) % size - size / 2
            candidates.append((float(theta), flipped, shift * pixel, float(corr[peak])))
    candidates.sort(key=lambda c: -c[3])
    return _distinct(candidates, n_best)


def _distinct(candidates, n_best: int, min_angle: float = 20.0):
    """The best candidates whose angles differ by more than ``min_angle`` (or in flip)."""
    kept = []
    for cand in candidates:
        if all(
            cand[1] != k[1] or abs((cand[0] - k[0] + 180) % 360 - 180) > min_angle for k in kept
        ):
            kept.append(cand)
        if len(kept) == n_best:
            break
    return kept


class _Field:
    """The fixed section's smoothed feature rasters, sampled (with gradients) at any point."""

    def __init__(self, xy: np.ndarray, features: np.ndarray, sigma: float):
        self.pixel = min(sigma / 2, 1.0)
        self.origin = xy.min(axis=0) - 4 * sigma
        shape = (np.ptp(xy, axis=0)[::-1] + 8 * sigma) / self.pixel + 2
        self.shape = tuple(int(n) for n in shape)
        raster = _splat((xy - self.origin) / self.pixel, features, self.shape)
        values = ndimage.gaussian_filter(raster, (0, sigma / self.pixel, sigma / self.pixel))
        grad_y, grad_x = np.gradient(values, self.pixel, axis=(1, 2))
        # (H * W, 3, C): value, d/dx, d/dy of every channel, gathered in one go per corner.
        self.table = np.stack([values, grad_x, grad_y], axis=0).reshape(3, len(values), -1).T
        self.table = np.ascontiguousarray(self.table.transpose(0, 2, 1))

    def sample(self, xy: np.ndarray, f: np.ndarray) -> tuple[float, np.ndarray]:
        """``sum_j <f_j, field(xy_j)>`` and its gradient with respect to each ``xy_j``."""
        px = (xy - self.origin) / self.pixel
        base = np.floor(px).astype(np.int64)
        h, w = self.shape
        base[:, 0] = np.clip(base[:, 0], 0, w - 2)
        base[:, 1] = np.clip(base[:, 1], 0, h - 2)
        frac = np.clip(px - base, 0.0, 1.0)  # outside the raster the field is ~0 anyway
        flat = base[:, 1] * w + base[:, 0]
        fx, fy = frac[:, 0:1, None], frac[:, 1:2, None]
        mixed = (
            self.table[flat] * (1 - fx) * (1 - fy)
            + self.table[flat + 1] * fx * (1 - fy)
            + self.table[flat + w] * (1 - fx) * fy
            + self.table[flat + w + 1] * fx * fy
        )  # (n, 3, C)
        weighted = np.einsum("nkc,nc->nk", mixed, f)
        return float(weighted[:, 0].sum()), weighted[:, 1:]


def _refine(
    fixed: np.ndarray,
    f_fixed: np.ndarray,
    moving: np.ndarray,
    f_moving: np.ndarray,
    theta: float,
    shift: np.ndarray,
    sigmas: tuple[float, ...] = _FINE_SIGMAS,
) -> tuple[float, np.ndarray, float]:
    """Gradient ascent of S over (angle, shift), one kernel width after the other."""
    c_fix = fixed.mean(axis=0)
    centred = moving - moving.mean(axis=0)
    # The angle is optimised in units that move the spots about one spacing per unit.
    radius = float(np.sqrt((centred**2).sum(axis=1).mean())) or 1.0
    params = np.array([np.deg2rad(theta) * radius, *shift])
    perpendicular = np.array([[0.0, -1.0], [1.0, 0.0]])
    score = np.nan
    for sigma in sigmas:
        field = _Field(fixed, f_fixed, sigma)

        def negative(p, field=field):
            rot = _rotation(np.degrees(p[0] / radius))
            value, grad = field.sample(centred @ rot.T + c_fix + p[1:], f_moving)
            d_theta = np.sum(grad * (centred @ (rot @ perpendicular).T)) / radius
            return -value / len(centred), -np.array([d_theta, *grad.sum(axis=0)]) / len(centred)

        result = optimize.minimize(
            negative, params, jac=True, method="BFGS", options={"gtol": 1e-4}
        )
        params, score = result.x, -result.fun
    return float(np.degrees(params[0] / radius)), params[1:], float(score)


def register(
    fixed: np.ndarray,
    f_fixed: np.ndarray,
    moving: np.ndarray,
    f_moving: np.ndarray,
    *,
    reflection: bool = False,
    angle_step: float = 6.0,
    n_candidates: int = 3,
) -> Rigid:
    """Rigid motion that maps ``moving`` spots onto ``fixed`` spots with similar features.

    Parameters
    ----------
    fixed, moving
        Spot coordinates ``(n, 2)``, in the same units.
    f_fixed, f_moving
        Spot features ``(n, C)`` with the same columns (comparable across the sections).
    reflection
        Also try the mirror image of ``moving`` (a section mounted upside down).
    angle_step
        Rotation grid of the global search, in degrees (all of -180..180 is searched).
    n_candidates
        Distinct global optima polished by the local refinement; the best one wins.

    Returns
    -------
    The :class:`Rigid` transform from ``moving`` coordinates to ``fixed`` coordinates; its
    ``score`` is the kernel correlation per moving spot at the end.
    """
    spacing = spot_spacing(fixed)
    fixed_u, moving_u = fixed / spacing, moving / spacing
    angles = np.arange(-180.0, 180.0, angle_step)
    # Large sections: a fixed random subset of moving spots estimates the score just as well.
    rng = np.random.default_rng(0)
    subset = np.sort(rng.permutation(len(moving_u))[:_MAX_POINTS])
    mov_sub, f_sub = moving_u[subset], f_moving[subset]
    # Polish each global candidate at the coarsest kernel, then only the best one further.
    best = None
    for theta, flipped, shift, _ in _global_search(
        fixed_u, f_fixed, mov_sub, f_sub, angles, reflection, n_candidates
    ):
        mov = _flip(mov_sub, flipped)
        theta, shift, score = _refine(
            fixed_u, f_fixed, mov, f_sub, theta, shift, sigmas=_FINE_SIGMAS[:1]
        )
        if best is None or score > best[3]:
            best = (theta, flipped, shift, score)
    theta, flipped, shift, _ = best
    theta, shift, score = _refine(
        fixed_u, f_fixed, _flip(mov_sub, flipped), f_sub, theta, shift, sigmas=_FINE_SIGMAS[1:]
    )
    flip = np.diag([1.0, -1.0]) if flipped else np.eye(2)
    rot = _rotation(theta)
    centre = (mov_sub @ flip.T).mean(axis=0)
    # y = R (F x - c) + c_fix + shift, in spacing units; then back to the input units.
    offset = fixed_u.mean(axis=0) + shift - rot @ centre
    return Rigid(rot @ flip, offset * spacing, score)


def _flip(xy: np.ndarray, flipped: bool) -> np.ndarray:
    return xy * np.array([1.0, -1.0]) if flipped else xy


def warp(
    fixed: np.ndarray,
    f_fixed: np.ndarray,
    moving: np.ndarray,
    f_moving: np.ndarray,
    *,
    grid_step: float = 8.0,
    smoothness: float = 1.0,
    sigma: float = 1.0,
) -> np.ndarray:
    """Smooth displacements that raise the kernel correlation after a rigid alignment.

    The displacement field is bilinear between control points ``grid_step`` spacings apart
    (a free-form deformation); a penalty on the differences of neighbouring control points,
    weighted by ``smoothness``, keeps it smooth, and a small one on their size keeps it near 0.

    Returns
    -------
    ``(n, 2)`` displacements of the ``moving`` spots, in the input units.
    """
    spacing = spot_spacing(fixed)
    fixed_u, moving_u = fixed / spacing, moving / spacing
    field = _Field(fixed_u, f_fixed, sigma)
    lo = moving_u.min(axis=0)
    cells = np.floor((moving_u - lo) / grid_step).astype(np.int64)
    frac = (moving_u - lo) / grid_step - cells
    n_x, n_y = cells[:, 0].max() + 2, cells[:, 1].max() + 2
    rows, cols, vals = [], [], []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
        rows.append(np.arange(len(moving_u)))
        cols.append((cells[:, 1] + dy) * n_x + cells[:, 0] + dx)
        vals.append(w)
    weights = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(moving_u), n_x * n_y),
    )
    index = np.arange(n_x * n_y).reshape(n_y, n_x)
    pairs = np.concatenate(
        [np.column_stack([index[:, :-1].ravel(), index[:, 1:].ravel()]),
         np.column_stack([index[:-1].ravel(), index[1:].ravel()])]
    )  # fmt: skip
    diff = sparse.csr_matrix(
        (np.tile([1.0, -1.0], len(pairs)), (np.repeat(np.arange(len(pairs)), 2), pairs.ravel())),
        shape=(len(pairs), n_x * n_y),
    )
    penalty = smoothness * (diff.T @ diff) + 0.01 * sparse.identity(n_x * n_y)
    n = len(moving_u)

    def negative(flat):
        control = flat.reshape(-1, 2)
        value, grad = field.sample(moving_u + weights @ control, f_moving)
        reg = penalty @ control
        energy = -value / n + float((control * reg).sum()) / len(pairs)
        return energy, (-(weights.T @ grad) / n + 2 * reg / len(pairs)).ravel()

    result = optimize.minimize(
        negative, np.zeros(2 * n_x * n_y), jac=True, method="L-BFGS-B", options={"maxiter": 200}
    )
    return (weights @ result.x.reshape(-1, 2)) * spacing
