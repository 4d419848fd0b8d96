"""Plots of QC metrics and domains (matplotlib; one figure per call, returned to the caller)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.figure import Figure

_QC_METRICS = ("total_counts", "n_genes_by_counts", "pct_counts_mt")


def _xy(adata: AnnData) -> np.ndarray:
    return np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]


def _spot_size(n_spots: int) -> float:
    """Marker area (points^2) that roughly tiles a 5-inch panel with ``n_spots`` spots."""
    return float(np.clip(3e4 / max(n_spots, 1), 0.2, 40.0))


def _tissue_axes(ax, title: str | None) -> None:
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image convention: y grows downwards
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def spatial(
    adata: AnnData, color: str, *, ax=None, title: str | None = None, cmap: str = "viridis"
):
    """Scatter the spots at ``obsm["spatial"]`` coloured by an ``obs`` column or a gene."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    xy = _xy(adata)
    size = _spot_size(adata.n_obs)
    if color in adata.obs and adata.obs[color].dtype.name == "category":
        cats = adata.obs[color].cat.categories
        palette = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
        codes = adata.obs[color].cat.codes.to_numpy()
        for k, cat in enumerate(cats):
            sel = codes == k
            ax.scatter(*xy[sel].T, s=size, color=palette(k % palette.N), label=str(cat), lw=0)
        ax.legend(
            markerscale=max(1.0, 16 / np.sqrt(size)),
            fontsize="small",
            frameon=False,
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            title=color,
        )
    else:
        values = adata.obs[color] if color in adata.obs else adata[:, color].to_df()[color]
        sc_ = ax.scatter(*xy.T, c=np.asarray(values, dtype=float), s=size, cmap=cmap, lw=0)
        ax.figure.colorbar(sc_, ax=ax, shrink=0.7, label=color)
    _tissue_axes(ax, title)
    return ax


def qc(adata: AnnData, *, title: str | None = None) -> Figure:
    """QC overview: metric histograms (top) and the same metrics on the tissue (bottom)."""
    if adata.n_obs == 0:  # QC removed every spot: say so, with what each filter removed
        fig, ax = plt.subplots(figsize=(6, 2))
        removed = adata.uns.get("qc", {}).get("removed", {})
        text = "QC removed every spot\n" + ", ".join(f"{k}={v}" for k, v in removed.items())
        ax.text(0.5, 0.5, text, ha="center", va="center")
        ax.set_axis_off()
        fig.suptitle(title or "", fontsize="medium")
        return fig
    # A constant metric (e.g. no mitochondrial genes in the panel) says nothing; skip it.
    metrics = [m for m in _QC_METRICS if m in adata.obs and adata.obs[m].nunique() > 1]
    metrics = metrics or [m for m in _QC_METRICS if m in adata.obs][:1]
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 8), squeeze=False)
    for k, m in enumerate(metrics):
        axes[0, k].hist(adata.obs[m], bins=50, color="0.3")
        axes[0, k].set_xlabel(m)
        axes[0, k].set_ylabel("spots")
        spatial(adata, m, ax=axes[1, k])
    qc_info = adata.uns.get("qc", {})
    summary = f"{adata.n_obs} spots x {adata.n_vars} genes after QC"
    if "removed" in qc_info:
        summary += "; removed: " + ", ".join(f"{k}={v}" for k, v in qc_info["removed"].items())
    fig.suptitle(f"{title + ': ' if title else ''}{summary}", fontsize="medium")
    fig.tight_layout()
    return fig


def domains(adata: AnnData, *, key: str = "domain", title: str | None = None) -> Figure:
    """Domains on the tissue, their per-spot confidence (when ``obs[key + "_confidence"]``
    exists) and their sizes."""
    confidence = f"{key}_confidence"
    k_scores = adata.uns.get("spaseg", {}).get("k_scores")
    widths = {"domains": 3, "confidence": 3, "sizes": 1.3, "k_scores": 1.6}
    if confidence not in adata.obs:
        del widths["confidence"]
    if k_scores is None:
        del widths["k_scores"]
    fig, axes = plt.subplots(
        1, len(widths), figsize=(5 * len(widths) - 1, 5), width_ratios=list(widths.values())
    )
    panel = dict(zip(widths, axes, strict=True))
    spatial(adata, key, ax=panel["domains"], title=title or key)
    if "confidence" in panel:
        mean = float(adata.obs[confidence].mean())
        ax = spatial(adata, confidence, ax=panel["confidence"], cmap="magma")
        ax.set_title(f"confidence (mean {mean:.2f})")
        ax.collections[0].set_clim(0, 1)
    if "k_scores" in panel:
        ax, chosen = panel["k_scores"], adata.obs[key].cat.categories.size
        ax.plot(k_scores["n_domains"], k_scores["calinski_harabasz"], "o-", color="0.3")
        ax.axvline(chosen, color="C3", ls="--", label=f"chosen: {chosen}")
        ax.set_xlabel("number of domains")
        ax.set_ylabel("separation (Calinski-Harabasz, the choice)")
        ax.set_title("n_domains: auto")
        ax.legend(frameon=False)
        twin = ax.twinx()  # reported beside it: do the runs agree?
        twin.plot(k_scores["n_domains"], k_scores["stability"], "s:", color="C0")
        twin.set_ylabel("agreement between runs (mean ARI)", color="C0")
    bar = panel["sizes"]
    sizes = adata.obs[key].value_counts().reindex(adata.obs[key].cat.categories)
    palette = plt.get_cmap("tab20" if len(sizes) > 10 else "tab10")
    bar.barh(
        [str(c) for c in sizes.index],
        sizes.to_numpy(),
        color=[palette(k % palette.N) for k in range(len(sizes))],
    )
    bar.invert_yaxis()
    bar.set_xlabel("spots")
    bar.set_title("domain sizes")
    fig.tight_layout()
    return fig
