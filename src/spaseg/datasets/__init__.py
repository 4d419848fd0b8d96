"""Simulated data with known truth: sections with domains, Visium folders, Stereo-seq files."""

from ._demo import make_demo
from ._simulate import simulate_sections, simulate_tissue
from ._stereoseq import StereoseqSimulation, simulate_stereoseq_counts, write_stereoseq
from ._visium_outs import write_visium_outs

__all__ = [
    "StereoseqSimulation",
    "make_demo",
    "simulate_sections",
    "simulate_stereoseq_counts",
    "simulate_tissue",
    "write_stereoseq",
    "write_visium_outs",
]
