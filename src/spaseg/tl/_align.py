"""Align serial sections into one coordinate frame and stack them in 3-D."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ._register import Rigid, register, warp

log = logging.getLogger("spaseg")


def _section_order(
    adata: AnnData,
    sample_key: str,
    order: Sequence[str] | None,
    z: Mapping[str, float] | None,
    group: str | None,
) -> tuple[list[str], np.ndarray]:
    """Sections in stacking order and their z; checks names and z values."""
    column = adata.obs[sample_key]
    present = (
        [str(c) for c in column.cat.categories if (column == c).any()]
        if isinstance(column.dtype, pd.CategoricalDtype)
        else [str(c) for c in pd.unique(column)]
    )
    where = f"group {group!r}: " if group is not None else ""
    for name, given in (("order", order or []), ("z", list(z or {}))):
        unknown = sorted(set(map(str, given)) - set(present))
        if unknown:
            raise InputError(
                f"{where}unknown section(s) {unknown} in {name}; sections are {present}.",
                field=name,
            )
    if z is not None:
        z = {str(k): float(v) for k, v in z.items()}
        missing = [s for s in present if s not in z]
        if missing:
            raise InputError(f"{where}no z for section(s) {missing}.", field="z")
        values = pd.Series(z)
        repeated = values[values.duplicated(keep=False)]
        if len(repeated):
            raise InputError(
                f"{where}sections {sorted(repeated.index)} share z = {repeated.iloc[0]:g}; "
                "each section needs its own position in the stack.",
                field="z",
            )
    if order is None:
        order = sorted(present, key=lambda s: z[s]) if z is not None else present
    order = [str(s) for s in order]
    if sorted(order) != sorted(present):
        raise InputError(f"{where}order must list every section once: {present}.", field="order")
    zs = np.array([z[s] for s in order]) if z is not None else np.arange(len(order), dtype=float)
    return order, zs


def _features(adata: AnnData, use_rep: str, n_features: int, spots: np.ndarray) -> np.ndarray:
    """Comparable spot features: z-scored leading columns of an obsm, or one-hot labels."""
    if use_rep in adata.obsm:
        x = np.asarray(adata.obsm[use_rep], dtype=np.float64)[spots, :n_features]
        sd = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    codes = pd.Categorical(adata.obs[use_rep]).codes
    return np.eye(codes.max() + 1)[codes[spots]]


def align(
    adata: AnnData,
    *,
    sample_key: str = "sample",
    use_rep: str = "X_pca",
    n_features: int = 5,
    order: Sequence[str] | None = None,
    z: Mapping[str, float] | None = None,
    reflection: bool = False,
    nonrigid: bool = False,
    nonrigid_step: float = 8.0,
    smoothness: float = 1.0,
    angle_step: float = 6.0,
    group: str | None = None,
    key_added: str = "spatial",
    copy: bool = False,
) -> AnnData | None:
    """Register serial sections into the frame of the first and stack them along z.

    Each section is aligned to the previous one (already aligned) by a rigid motion that
    maximises the kernel correlation of their spot features (``spaseg.tl._register``): a
    global FFT search over all rotations (and mirror images, with ``reflection``) and all
    translations at a coarse resolution, then gradient ascent at finer kernel widths. No
    spot-by-spot transport plan is formed, so memory grows linearly with the spots.

    Parameters
    ----------
    adata
        Several sections with ``obsm["spatial"]`` and ``obs[sample_key]``, e.g. from
        :func:`spaseg.pp.joint_normalize_pca` (joint PCs compare across sections).
    sample_key
        ``obs`` column naming each spot's section.
    use_rep
        Features to match: an ``obsm`` key (its first ``n_features`` columns, z-scored per
        section) or a categorical ``obs`` column such as joint domains (one-hot).
    n_features
        Leading columns of ``obsm[use_rep]`` to use.
    order
        Sections in stacking order; default: by ``z`` if given, else the order of
        ``obs[sample_key]`` (its categories).
    z
        Position of each section along the stack; default 0, 1, 2, ... in ``order``.
    reflection
        Allow mirror images (sections mounted upside down).
    nonrigid
        After the rigid step, add a smooth displacement field (control points
        ``nonrigid_step`` spot spacings apart, penalty weight ``smoothness``).
    angle_step
        Rotation grid of the global search, in degrees.
    group
        Group name, for messages.
    key_added
        Prefix of the ``obsm`` keys written (``"spatial"``: ``obsm["spatial_aligned"]`` and
        ``obsm["spatial_3d"]``), so that another alignment can sit beside the first; the
        plots take them as ``basis``. ``uns["align"]`` describes the latest alignment.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    Sets ``obsm[key_added + "_aligned"]`` (x, y in the first section's frame),
    ``obsm[key_added + "_3d"]`` (x, y, z) and ``uns["align"]``: ``samples`` (the order),
    ``reference``, ``z``, and per section the rigid transform ``matrix`` (2 x 2) and
    ``offset`` (``aligned = spatial @ matrix.T + offset`` before any non-rigid step),
    ``rotation_deg``, ``reflection``, ``score`` (kernel correlation per spot) and, with
    ``nonrigid``, ``max_displacement``.
    """
    where = f"group {group!r}" if group is not None else None
    if sample_key not in adata.obs:
        raise InputError(f"obs[{sample_key!r}] is missing.", sample=where, field=sample_key)
    if use_rep not in adata.obsm and use_rep not in adata.obs:
        raise InputError(
            f"{use_rep!r} is neither in obsm nor in obs.", sample=where, field="use_rep"
        )
    if "spatial" not in adata.obsm:
        raise InputError("obsm['spatial'] is missing.", sample=where, field="obsm['spatial']")
    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    order, zs = _section_order(adata, sample_key, order, z, group)
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    labels = adata.obs[sample_key].astype(str).to_numpy()
    aligned = xy.copy()
    transforms = [Rigid(np.eye(2), np.zeros(2))]
    shifts = [0.0]
    spots = {s: np.flatnonzero(labels == s) for s in order}
    for prev, name in zip(order[:-1], order[1:], strict=True):
        fixed, moving = spots[prev], spots[name]
        f_fixed = _features(adata, use_rep, n_features, fixed)
        f_moving = _features(adata, use_rep, n_features, moving)
        rigid = register(
            aligned[fixed], f_fixed, xy[moving], f_moving,
            reflection=reflection, angle_step=angle_step,
        )  # fmt: skip
        aligned[moving] = rigid.apply(xy[moving])
        if nonrigid:
            moved = warp(
                aligned[fixed], f_fixed, aligned[moving], f_moving,
                grid_step=nonrigid_step, smoothness=smoothness,
            )  # fmt: skip
            aligned[moving] += moved
            shifts.append(float(np.sqrt((moved**2).sum(axis=1)).max()))
        transforms.append(rigid)
        log.info(
            "%s -> %s: rotation %.1f deg%s, score %.3f",
            name, prev, rigid.rotation_deg, " (mirrored)" if rigid.reflection else "", rigid.score,
        )  # fmt: skip

    adata.obsm[f"{key_added}_aligned"] = aligned
    z_of = dict(zip(order, zs, strict=True))
    adata.obsm[f"{key_added}_3d"] = np.column_stack([aligned, [z_of[s] for s in labels]])
    adata.uns["align"] = {
        "samples": np.asarray(order),
        "reference": order[0],
        "z": zs,
        "matrix": np.stack([t.matrix for t in transforms]),
        "offset": np.stack([t.offset for t in transforms]),
        "rotation_deg": np.array([t.rotation_deg for t in transforms]),
        "reflection": np.array([t.reflection for t in transforms]),
        "score": np.array([t.score for t in transforms]),
        "params": {
            "use_rep": use_rep,
            "n_features": n_features,
            "reflection": reflection,
            "nonrigid": nonrigid,
            "angle_step": angle_step,
            "key_added": key_added,
        },
        "time_s": time.perf_counter() - start,
    }
    if nonrigid:
        adata.uns["align"]["max_displacement"] = np.asarray(shifts)
        adata.uns["align"]["params"].update(nonrigid_step=nonrigid_step, smoothness=smoothness)
    return adata if copy else None
