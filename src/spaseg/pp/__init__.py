"""Preprocessing: QC, normalisation + PCA (single and joint), and spots -> image pixels."""

from ._image import SpotImage, spot_image
from ._joint import joint_normalize_pca
from ._pca import normalize_pca
from ._qc import qc

__all__ = ["SpotImage", "joint_normalize_pca", "normalize_pca", "qc", "spot_image"]
