"""Rule qc: filter spots and genes, keep QC metrics in obs (spaseg.pp.qc)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad
import pandas as pd

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

sample = snakemake.wildcards.sample
adata = spaseg.pp.qc(ad.read_h5ad(snakemake.input[0]), **snakemake.params.qc, sample=sample)
# The sheet's extra columns (donor, condition, ...): one value per section, on every spot.
metadata = dict(snakemake.params.metadata)
for column, value in metadata.items():
    adata.obs[column] = pd.Categorical([value] * adata.n_obs)
adata.uns["sample_metadata"] = {"sample": sample, **metadata}
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output[0])
