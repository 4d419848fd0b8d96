"""Plots of a group of sections: shared domains side by side, and the aligned 3-D stack."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # workflow jobs have no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._plots import _spot_size, _tissue_axes


def _palette(categories) -> list:
    cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
    return [cmap(k % cmap.N) for k in range(len(categories))]


def _sections(adata: AnnData, sample_key: str) -> list[str]:
    if "align" in adata.uns:
        return [str(s) for s in adata.uns["align"]["samples"]]
    column = adata.obs[sample_key]
    return [str(s) for s in pd.Categorical(column).categories if (column == s).any()]


def _legend(fig: Figure, categories, colours, title: str) -> None:
    handles = [
        Line2D([], [], marker="o", ls="", color=c, label=str(cat))
        for cat, c in zip(categories, colours, strict=True)
    ]
    fig.legend(handles=handles, title=title, loc="center right", frameon=False)


def group_domains(
    adata: AnnData,
    *,
    key: str = "domain",
    sample_key: str = "sample",
    basis: str = "spatial",
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """One panel per section, coloured by the shared labels in ``obs[key]``.

    ``basis`` is the ``obsm`` key of the coordinates (``"spatial_aligned"`` after
    :func:`spaseg.tl.align` shows the sections in one frame).
    """
    labels = pd.Categorical(adata.obs[key])
    colours = _palette(labels.categories)
    names = _sections(adata, sample_key)
    ncols = min(ncols, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols + 1.5, 4 * nrows), squeeze=False)
    xy = np.asarray(adata.obsm[basis], dtype=float)[:, :2]
    sample = adata.obs[sample_key].astype(str).to_numpy()
    for ax, name in zip(axes.flat, names, strict=False):
        sel = sample == name
        codes = labels.codes[sel]
        ax.scatter(*xy[sel].T, s=_spot_size(sel.sum()), c=[colours[c] for c in codes], lw=0)
        _tissue_axes(ax, f"{name} ({sel.sum()} spots)")
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    _legend(fig, labels.categories, colours, key)
    fig.suptitle(title or f"{len(names)} sections, {len(labels.categories)} shared {key}s")
    fig.tight_layout(rect=(0, 0, 1 - 1.2 / fig.get_figwidth(), 1))
    return fig


def aligned_3d(
    adata: AnnData,
    *,
    key: str = "domain",
    basis: str = "spatial_3d",
    z_scale: float | None = None,
    title: str | None = None,
) -> Figure:
    """The aligned sections stacked along z, coloured by ``obs[key]``.

    ``z_scale`` stretches z for visibility; default: the stack is drawn about half as tall
    as the sections are wide.
    """
    labels = pd.Categorical(adata.obs[key])
    colours = np.array(_palette(labels.categories))
    xyz = np.asarray(adata.obsm[basis], dtype=float)
    extent = np.ptp(xyz[:, :2], axis=0).max() or 1.0
    z_range = np.ptp(xyz[:, 2]) or 1.0
    if z_scale is None:
        z_scale = 0.5 * extent / z_range
    fig = plt.figure(figsize=(8, 7))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(
        xyz[:, 0], xyz[:, 1], xyz[:, 2] * z_scale,
        c=colours[labels.codes], s=_spot_size(adata.n_obs) / 4, lw=0, depthshade=False,
    )  # fmt: skip
    ax.set_box_aspect((1, 1, max(0.2, z_range * z_scale / extent)))
    ax.invert_yaxis()  # image convention, as in the 2-D plots
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel(f"z (x {z_scale:.3g})" if z_scale != 1 else "z")
    ax.view_init(elev=25, azim=-60)
    _legend(fig, labels.categories, colours, key)
    ax.set_title(title or "Aligned sections")
    return fig
