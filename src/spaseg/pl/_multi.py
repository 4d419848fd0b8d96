"""Plots of a group of sections: shared domains side by side, and the aligned 3-D stack."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._sections import sections
from ._plots import _spot_size, _tissue_axes


def _palette(categories) -> list:
    cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
    return [cmap(k % cmap.N) for k in range(len(categories))]


def _sections(adata: AnnData, sample_key: str) -> list[str]:
    if "align" in adata.uns:
        return [str(s) for s in adata.uns["align"]["samples"]]
    return sections(adata, sample_key)[0]


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
    if "align" in adata.uns:  # one tick per section, named
        ax.set_zticks(np.asarray(adata.uns["align"]["z"], dtype=float) * z_scale)
        ax.set_zticklabels([str(s) for s in adata.uns["align"]["samples"]], fontsize="small")
    else:
        ax.set_zlabel(f"z (x {z_scale:.3g})" if z_scale != 1 else "z")
    ax.view_init(elev=25, azim=-60)
    _legend(fig, labels.categories, colours, key)
    ax.set_title(title or "Aligned sections")
    return fig


_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{margin:0;font:14px sans-serif}canvas{display:block;cursor:grab}
#legend{position:absolute;top:8px;left:8px;background:#fffc;padding:4px 8px}</style></head>
<body><div id="legend"></div><canvas id="c"></canvas><script>
// Spots of the aligned sections; drag to rotate, wheel to zoom. No external libraries.
const data = __DATA__;
const c = document.getElementById("c"), ctx = c.getContext("2d");
let yaw = -0.6, pitch = 0.5, zoom = 1, drag = null;
document.getElementById("legend").innerHTML = "<b>" + data.title + "</b><br>" +
  data.names.map((n, k) => `<span style="color:${data.colours[k]}">&#9679;</span> ${n}`).join("<br>");
function draw() {
  c.width = innerWidth; c.height = innerHeight; ctx.clearRect(0, 0, c.width, c.height);
  const s = zoom * Math.min(c.width, c.height) / 2.4, cy = Math.cos(yaw), sy = Math.sin(yaw),
        cp = Math.cos(pitch), sp = Math.sin(pitch), n = data.x.length, order = new Array(n);
  const px = new Float32Array(n), py = new Float32Array(n), depth = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = data.x[i] * cy - data.y[i] * sy, y = data.x[i] * sy + data.y[i] * cy;
    px[i] = c.width / 2 + s * x; py[i] = c.height / 2 + s * (y * sp - data.z[i] * cp);
    depth[i] = y * cp + data.z[i] * sp; order[i] = i;
  }
  order.sort((a, b) => depth[b] - depth[a]);
  for (const i of order) { ctx.fillStyle = data.colours[data.c[i]]; ctx.fillRect(px[i] - 1.5, py[i] - 1.5, 3, 3); }
}
c.onmousedown = e => drag = [e.clientX, e.clientY, yaw, pitch];
onmouseup = () => drag = null;
onmousemove = e => { if (drag) { yaw = drag[2] + (e.clientX - drag[0]) / 200;
  pitch = Math.max(-1.5, Math.min(1.5, drag[3] + (e.clientY - drag[1]) / 200)); draw(); } };
c.onwheel = e => { e.preventDefault(); zoom *= Math.exp(-e.deltaY / 500); draw(); };
onresize = draw; draw();
</script></body></html>
"""


def aligned_3d_html(
    adata: AnnData, path, *, key: str = "domain", basis: str = "spatial_3d", title: str = ""
) -> None:
    """Write an interactive 3-D view of the aligned stack: one self-contained HTML file.

    Coordinates are centred and scaled like :func:`aligned_3d`; drag to rotate, scroll to zoom.
    """
    import json

    labels = pd.Categorical(adata.obs[key])
    colours = [to_hex(c) for c in _palette(labels.categories)]
    xyz = np.asarray(adata.obsm[basis], dtype=float)
    xyz = xyz - (xyz.min(axis=0) + xyz.max(axis=0)) / 2
    extent = np.ptp(xyz[:, :2], axis=0).max() or 1.0
    z_range = np.ptp(xyz[:, 2]) or 1.0
    xyz = xyz / extent * [1.0, 1.0, 0.5 * extent / z_range]
    data = {
        "x": np.round(xyz[:, 0], 4).tolist(),
        "y": np.round(xyz[:, 1], 4).tolist(),
        "z": np.round(xyz[:, 2], 4).tolist(),
        "c": labels.codes.tolist(),
        "names": [str(c) for c in labels.categories],
        "colours": colours,
        "title": title or "Aligned sections",
    }
    html = _HTML.replace("__DATA__", json.dumps(data)).replace("__TITLE__", data["title"])
    with open(path, "w") as handle:
        handle.write(html)
