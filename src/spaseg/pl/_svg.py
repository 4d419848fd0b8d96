"""Figure of spatially variable genes: top genes of each domain on the tissue, and a dot plot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from ._plots import _spot_size, _tissue_axes, _xy

# Fallback genes of a domain without enough SVGs: at least two-fold enriched.
_ENRICHED_LOG2FC = 1.0


def top_genes(table: pd.DataFrame, n_top: int = 3) -> pd.DataFrame:
    """The ``n_top`` rows of each domain, best first by Wilcoxon score within three tiers.

    Passing SVGs come first, then genes that are significantly enriched at least two-fold
    (``padj < 0.05``, ``log2fc > 1``) without passing every filter, then the rest; so a
    domain without SVGs still shows its best candidates (the figure marks them).
    """
    enriched = (table["padj"] < 0.05) & (table["log2fc"] > _ENRICHED_LOG2FC)
    tier = np.where(table["passes"], 0, np.where(enriched, 1, 2))
    ranked = table.assign(_tier=tier).sort_values(
        ["domain", "_tier", "score"], ascending=[True, True, False]
    )
    return ranked.groupby("domain", observed=True, sort=True).head(n_top).drop(columns="_tier")


def svg(
    adata: AnnData,
    table: pd.DataFrame,
    *,
    n_top: int = 3,
    layer: str | None = None,
    batch_key: str | None = None,
    title: str | None = None,
) -> Figure:
    """Top genes of each domain on the tissue (left) and a dot plot of them over domains (right).

    Parameters
    ----------
    adata
        The section(s) the table was computed on, log-normalised expression in ``X``.
    table
        Output of :func:`spaseg.tl.svg`.
    n_top
        Genes per domain.
    layer
        Layer to colour the spots by instead of ``X``.
    batch_key
        ``obs`` column of sections (a group's joint data): sections are drawn side by side.
    title
        Figure title.

    Returns
    -------
    The figure. Panel titles give the domain, gene, log2 fold change and adjusted p-value; a
    ``*`` marks genes that fail some SVG filter (see the table's ``fails``). Dots: size is
    the fraction of the domain's spots expressing the gene, colour its mean expression
    relative to its highest domain.
    """
    top = top_genes(table, n_top)
    domains = list(table["domain"].cat.categories)
    xy = _side_by_side(adata, batch_key)
    fig = plt.figure(figsize=(2.6 * n_top + 5.5, max(4.0, 2.4 * len(domains))))
    grid = fig.add_gridspec(len(domains), n_top + 1, width_ratios=[1] * n_top + [2.0])
    for row, domain in enumerate(domains):
        for col, (_, gene) in enumerate(top[top["domain"] == domain].iterrows()):
            _gene_panel(fig.add_subplot(grid[row, col]), adata, xy, gene, layer)
    _dot_plot(fig.add_subplot(grid[:, n_top]), table, top, domains)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98 if title else 1))  # keep the title clear of panels
    return fig


def _label(gene: pd.Series) -> str:
    symbol = gene.get("symbol")
    return str(symbol) if isinstance(symbol, str) and symbol else str(gene["gene"])


def _side_by_side(adata: AnnData, batch_key: str | None) -> np.ndarray:
    """Spot coordinates, with each section shifted right of the previous one."""
    xy = _xy(adata).copy()
    if batch_key is None:
        return xy
    offset = 0.0
    for section in pd.unique(adata.obs[batch_key]):
        sel = (adata.obs[batch_key] == section).to_numpy()
        xy[sel, 0] += offset - xy[sel, 0].min()
        offset = xy[sel, 0].max() + 0.05 * np.ptp(xy[sel, 0])
    return xy


def _gene_panel(ax, adata: AnnData, xy: np.ndarray, gene: pd.Series, layer: str | None) -> None:
    values = np.asarray(adata.obs_vector(gene["gene"], layer=layer), dtype=float)
    order = np.argsort(values, kind="stable")  # expressing spots on top
    ax.scatter(
        *xy[order].T, c=values[order], s=_spot_size(adata.n_obs), cmap="magma_r", lw=0,
        rasterized=True,
    )  # fmt: skip
    mark = "" if gene["passes"] else "*"
    _tissue_axes(
        ax,
        f"{gene['domain']}: {_label(gene)}{mark}\nlog2FC {gene['log2fc']:.2f}, "
        f"padj {gene['padj']:.1e}",
    )
    ax.title.set_fontsize("small")


def _dot_plot(ax, table: pd.DataFrame, top: pd.DataFrame, domains: list) -> None:
    genes = list(dict.fromkeys(top["gene"]))  # unique, in panel order
    labels = {
        g: _label(row)
        for g, row in top.drop_duplicates("gene").set_index("gene", drop=False).iterrows()
    }
    sub = table[table["gene"].isin(genes)]
    frac = sub.pivot(index="gene", columns="domain", values="in_frac").loc[genes, domains]
    mean = sub.pivot(index="gene", columns="domain", values="mean_in").loc[genes, domains]
    relative = mean.div(mean.max(axis=1).replace(0, np.nan), axis=0).fillna(0)
    gx, gy = np.meshgrid(np.arange(len(domains)), np.arange(len(genes)))
    dots = ax.scatter(
        gx.ravel(), gy.ravel(), s=220 * frac.to_numpy().ravel(), c=relative.to_numpy().ravel(),
        cmap="Reds", vmin=0, vmax=1, edgecolors="0.4", linewidths=0.3,
    )  # fmt: skip
    ax.set_xticks(range(len(domains)), [str(d) for d in domains])
    ax.set_yticks(range(len(genes)), [labels[g] for g in genes], fontsize="small")
    ax.set_xlim(-0.6, len(domains) - 0.4)
    ax.set_ylim(len(genes) - 0.5, -0.5)
    ax.set_xlabel("domain")
    ax.set_title("expressing fraction (size), relative mean (colour)", fontsize="small")
    for f in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=220 * f, c="0.6", label=f"{f:.0%}")
    ax.legend(title="in domain", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
              fontsize="small")  # fmt: skip
    ax.figure.colorbar(dots, ax=ax, shrink=0.4, location="bottom", label="relative mean")
