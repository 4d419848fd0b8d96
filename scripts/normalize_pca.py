"""Rule normalize_pca: normalise, log-transform and compute PCs (spaseg.pp.normalize_pca)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

params = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
spaseg.pp.normalize_pca(
    adata,
    **params.pca,
    seed=params.seed,
    sample=snakemake.wildcards.sample,
)
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output[0])
