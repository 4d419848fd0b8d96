"""Rule plot_domains: spatial domains of one section (spaseg.pl.domains)."""

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
adata = ad.read_h5ad(snakemake.input[0])
figure = spaseg.pl.domains(
    adata, key="domain", title=f"{sample}: {adata.obs['domain'].nunique()} domains"
)
savefig(figure, snakemake.output[0], dpi=150)
