"""Plotting: QC overviews and domain maps."""

from ._multi import aligned_3d, aligned_3d_html, group_domains
from ._plots import domains, qc, spatial
from ._svg import svg

__all__ = ["aligned_3d", "aligned_3d_html", "domains", "group_domains", "qc", "spatial", "svg"]
