"""Rule c2l_map: cell-type abundances and fractions per spot (cell2location)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad
import torch

import spaseg
from spaseg._atomic import savefig, write_h5ad
from spaseg._provenance import add_provenance

torch.set_num_threads(snakemake.threads)
c2l = snakemake.params.c2l
sample = snakemake.wildcards.sample
adata = ad.read_h5ad(snakemake.input.spots)  # raw counts after QC
signatures = ad.read_h5ad(snakemake.input.signatures).to_df().T  # genes x cell types
spaseg.tl.cell2location_map(
    adata,
    signatures,
    n_cells_per_location=c2l["n_cells_per_location"],
    detection_alpha=c2l["detection_alpha"],
    max_epochs=c2l["map_max_epochs"],
    tol=c2l["map_tol"],
    window=c2l["map_window"],
    lr=c2l["map_lr"],
    posterior=c2l["posterior"],
    num_samples=c2l["num_samples"],
    device=c2l["device"],
    seed=c2l["seed"],
    sample=sample,
)
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output.h5ad)
figure = spaseg.pl.cell_types(adata, title=f"{sample}: cell-type fractions (cell2location q05)")
savefig(figure, snakemake.output.plot, dpi=120)
