"""Preprocessing: QC, normalisation + PCA (single and joint), and spots -> image pixels."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_image": ["SpotImage", "spot_image"],
        "_joint": ["joint_normalize_pca"],
        "_pca": ["normalize_pca", "panel_mask", "scaled_genes"],
        "_programs": ["participation_ratio"],
        "_gates": ["check_gates", "qc_filters", "qc_gates"],
        "_qc": ["qc"],
    },
)
