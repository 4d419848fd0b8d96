"""Rule plot_qc: QC metrics of one section after filtering (spaseg.pl.qc)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad

import spaseg
from spaseg._atomic import savefig

sample = snakemake.wildcards.sample
figure = spaseg.pl.qc(ad.read_h5ad(snakemake.input[0]), title=f"{sample}: QC")
savefig(figure, snakemake.output[0], dpi=150)
