"""Plots of cell-cell interaction results: cell-type fractions, L-R scores on the tissue, and
domain x domain summaries."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from ..tl._lr_data import ALL
from ..tl._lr_tables import TESTS, passing, top_pairs
from ._plots import _spot_size, _tissue_axes, _xy, spatial


def _best_pairs(
    table: pd.DataFrame, n_top: int, alpha: float, test: str, most: int = 8
) -> tuple[list[str], bool]:
    """The pairs to show, and whether they passed ``test`` at ``alpha`` (else: the section's
    ``n_top`` by z-score, none significant)."""
    best = top_pairs(table, n=n_top, alpha=alpha, test=test)
    passed = not best.empty
    if not passed:
        section = table[table["domain"] == ALL]
        best = section.sort_values(f"zscore{TESTS[test][0]}", ascending=False).head(n_top)
    return list(pd.unique(best["pair"]))[:most], passed


def cell_types(
    adata: AnnData,
    *,
    key: str = "cell_type_fractions",
    entropy_key: str = "cell_type_entropy",
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """Cell-type fractions on the tissue (one panel per type), then their entropy."""
    fractions = pd.DataFrame(adata.obsm[key], index=adata.obs_names)
    panels = [*fractions.columns, entropy_key] if entropy_key in adata.obs else [*fractions.columns]
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    xy, size = _xy(adata), _spot_size(adata.n_obs)
    for ax, name in zip(axes.flat, panels, strict=False):
        values = adata.obs[name] if name == entropy_key else fractions[name]
        vmax = None if name == entropy_key else max(float(values.max()), 1e-9)
        dots = ax.scatter(*xy.T, c=np.asarray(values, float), s=size, lw=0, vmin=0, vmax=vmax)
        fig.colorbar(dots, ax=ax, shrink=0.7)
        _tissue_axes(ax, "entropy H (bits)" if name == entropy_key else str(name))
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title or "cell-type fractions (cell2location q05)", fontsize="medium")
    fig.tight_layout()
    return fig


def lr_spatial(
    lrdata: AnnData,
    pairs: list[str] | None = None,
    *,
    n_top: int = 5,
    domain_key: str = "domain",
    ncols: int = 3,
    alpha: float = 0.05,
    test: str = "permutation",
    title: str | None = None,
) -> Figure:
    """Spot scores of L-R pairs on the tissue; spots with spot-level ``padj < alpha`` ringed.

    ``lrdata`` is the output of :func:`spaseg.tl.lr_scores`; the first panel shows the domains.
    ``pairs=None`` shows the best pairs: each domain's ``n_top`` by z-score among those that
    pass ``test`` (:func:`spaseg.tl.top_pairs`; at most 8 in all), or, if none passes, the
    section's ``n_top`` by z-score, and the figure's title then says that none is significant.
    """
    if pairs is None:
        pairs, passed = _best_pairs(lrdata.uns["lr_pairs"], n_top, alpha, test)
        if not passed:
            note = (
                f"no pair passes the {test.replace('_', '-')} test at FDR {alpha}: "
                f"the top {len(pairs)} by z-score, not significant"
            )
            title = f"{title}: {note}" if title else note
    panels = ([domain_key] if domain_key in lrdata.obs else []) + list(pairs)
    nrows = int(np.ceil(max(len(panels), 1) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False)
    xy, size = _xy(lrdata), _spot_size(lrdata.n_obs)
    threshold = -np.log10(alpha)
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == domain_key:
            spatial(lrdata, domain_key, ax=ax, title="domains")
            continue
        k = lrdata.var_names.get_loc(name)
        score = lrdata.X[:, k].toarray().ravel()
        dots = ax.scatter(*xy.T, c=score, s=size, lw=0, cmap="magma_r")
        fig.colorbar(dots, ax=ax, shrink=0.7, label="score")
        hit = lrdata.layers["neglog10_padj"][:, k].toarray().ravel() > threshold
        ax.scatter(*xy[hit].T, s=size * 1.6, facecolors="none", edgecolors="tab:cyan", lw=0.6)
        _tissue_axes(ax, name)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def domain_heatmap(
    domain_pairs: pd.DataFrame,
    ligrec: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    test: str = "permutation",
    title: str | None = None,
) -> Figure:
    """Domain x domain (sender rows, receiver columns): summed L-R edge scores; the number of
    pairs that pass ``test`` across each boundary (``lr_domain_pairs``); with ``ligrec``, the
    number squidpy's permutation test finds significant per domain pair."""
    strength = domain_pairs.pivot_table(
        index="sender", columns="receiver", values="score", aggfunc="sum", observed=True
    )

    def hits(table: pd.DataFrame, test: str = "random_pairs") -> pd.DataFrame:
        counts = table.assign(hit=passing(table, alpha, test)).pivot_table(
            index="sender", columns="receiver", values="hit", aggfunc="sum"
        )
        return counts.reindex(index=strength.index, columns=strength.columns).fillna(0)

    panels = [("L-R score over all pairs\n(mean per neighbour edge, summed)", strength)]
    if "padj" in domain_pairs:
        panels.append(
            (
                f"pairs passing the {test.replace('_', '-')} test\n"
                f"at FDR {alpha} across the boundary",
                hits(domain_pairs, test),
            )
        )
    if ligrec is not None and len(ligrec):
        panels.append((f"pairs with squidpy ligrec\npadj < {alpha}", hits(ligrec)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (label, matrix) in zip(axes.flat, panels, strict=True):
        image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis")
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90)
        ax.set_yticks(range(matrix.shape[0]), matrix.index)
        ax.set_xlabel("receiver domain (receptor)")
        ax.set_ylabel("sender domain (ligand)")
        ax.set_title(label, fontsize="medium")
        fig.colorbar(image, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig
