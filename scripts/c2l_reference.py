"""Rule c2l_reference: cell-type signatures of the single-cell reference (cell2location)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad
import numpy as np
import pandas as pd
import torch

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

torch.set_num_threads(snakemake.threads)
c2l = snakemake.params.c2l
signatures = spaseg.tl.cell2location_signatures(
    ad.read_h5ad(snakemake.input.reference),
    c2l["labels_key"],
    batch_key=c2l["batch_key"],
    max_epochs=c2l["max_epochs"],
    posterior=c2l["posterior"],
    num_samples=c2l["num_samples"],
    device=c2l["device"],
    seed=c2l["seed"],
)
# Cell types x genes: expression per cell of each type (posterior median or mean), read
# back by rule c2l_map.
out = ad.AnnData(
    X=signatures.T.to_numpy(dtype=np.float32),
    obs=pd.DataFrame(index=signatures.columns.astype(str)),
    var=pd.DataFrame(index=signatures.index.astype(str)),
)
out.uns["cell2location_reference"] = {
    "reference": str(snakemake.input.reference),
    "labels_key": c2l["labels_key"],
    "elbo_train": np.asarray(signatures.attrs["elbo_train"], dtype=float),
}
add_provenance(out, config=snakemake.config, step=snakemake.rule)
write_h5ad(out, snakemake.output[0])
