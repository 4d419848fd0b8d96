"""Preprocessing: QC, normalisation + PCA, and spots -> image pixels."""

from ._image import SpotImage, spot_image
from ._pca import normalize_pca
from ._qc import qc

__all__ = ["SpotImage", "normalize_pca", "qc", "spot_image"]
