"""Plotting: QC overviews, domain maps, spatially variable genes, cell types and L-R scores."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_cci": ["cell_types", "domain_heatmap", "lr_spatial"],
        "_multi": ["aligned_3d", "aligned_3d_html", "group_domains"],
        "_plots": ["domains", "qc", "spatial"],
        "_svg": ["svg"],
    },
)
