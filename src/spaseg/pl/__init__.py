"""Plotting: QC overviews and domain maps."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_multi": ["aligned_3d", "aligned_3d_html", "group_domains"],
        "_plots": ["domains", "qc", "spatial"],
        "_svg": ["svg"],
    },
)
