"""Readers: every one returns raw counts in ``X`` and coordinates in ``obsm["spatial"]``."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_h5ad": ["read_h5ad"],
        "_panel": ["read_gene_panel"],
        "_read": ["READERS", "read", "register_reader"],
        "_readers": ["check_spatial"],
        "_stereoseq": ["bin_counts", "read_gef", "read_gem", "read_stereoseq"],
        "_table": ["read_table"],
        "_visium": ["read_visium"],
    },
)
