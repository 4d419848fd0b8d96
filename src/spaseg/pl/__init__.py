"""Plotting: QC overviews and domain maps."""

from ._plots import domains, qc, spatial

__all__ = ["domains", "qc", "spatial"]
