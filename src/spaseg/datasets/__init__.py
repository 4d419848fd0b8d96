"""Simulated data with known truth: sections with domains, Visium folders, Stereo-seq files."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_demo": ["make_demo"],
        "_simulate": ["simulate_sections", "simulate_tissue"],
        "_stereoseq": ["StereoseqSimulation", "simulate_stereoseq_counts", "write_stereoseq"],
        "_visium_outs": ["write_visium_outs"],
    },
)
