"""Rule cci: ligand-receptor scores between neighbouring spots, their significance, summaries
per domain and domain pair, and squidpy's ligrec between domains (spaseg.tl.lr_scores)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import logging

import anndata as ad
import pandas as pd

import spaseg
from spaseg._atomic import atomic_path, savefig, write_h5ad
from spaseg._provenance import add_provenance
from spaseg.tl._deconv import FRACTIONS_KEY

cci = snakemake.params.cci
sample = snakemake.wildcards.sample
adata = ad.read_h5ad(snakemake.input.domains)
fractions_key = None
if "cell2location" in snakemake.input.keys():
    c2l = ad.read_h5ad(snakemake.input.cell2location)
    missing = adata.obs_names.difference(c2l.obs_names)
    if len(missing):
        raise spaseg.InputError(
            f"{len(missing)} spots of domains.h5ad have no cell2location fractions.",
            sample=sample,
            file=snakemake.input.cell2location,
        )
    adata.obsm[FRACTIONS_KEY] = c2l.obsm[FRACTIONS_KEY].loc[adata.obs_names]
    fractions_key = FRACTIONS_KEY
else:
    why = "cci.weight: none" if cci["weight"] == "none" else "no cell2location reference"
    logging.getLogger("spaseg").info("%s: every spot has H = 1 (unweighted)", why)

common = dict(organism=cci["organism"], domain_key="domain", sample=sample)
lrdata = spaseg.tl.lr_scores(
    adata,
    cci["resource"],
    fractions_key=fractions_key,
    complex_policy=cci["complex_policy"],
    rings=cci["rings"],
    radius=cci["radius"],
    n_background=cci["n_background"],
    n_permutations=cci["n_permutations"],
    n_bins=cci["n_bins"],
    min_spots=cci["min_spots"],
    alpha=cci["alpha"],
    seed=cci["seed"],
    **common,
)
if cci["ligrec_n_perms"] > 0:
    ligrec = spaseg.tl.ligrec_domains(
        adata,
        cci["resource"],
        n_perms=cci["ligrec_n_perms"],
        threshold=cci["ligrec_threshold"],
        seed=cci["seed"],
        **common,
    )
else:
    ligrec = pd.DataFrame(columns=["pair", "ligand", "receptor", "sender", "receiver"])

tables = {
    "pairs": lrdata.uns["lr_pairs"],
    "domain_pairs": lrdata.uns["lr_domain_pairs"],
    "ligrec": ligrec,
}
for name, table in tables.items():
    with atomic_path(snakemake.output[name]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
figures = {
    "top": spaseg.pl.lr_spatial(
        lrdata, n_top=cci["n_top"], alpha=cci["alpha"], test=cci["test"], title=sample
    ),
    "heatmap": spaseg.pl.domain_heatmap(
        tables["domain_pairs"], ligrec, alpha=cci["alpha"], test=cci["test"], title=sample
    ),
}
for name, figure in figures.items():
    savefig(figure, snakemake.output[name], dpi=120)
lrdata.uns["spaseg_provenance"] = adata.uns.get("spaseg_provenance", {})  # keep the steps
add_provenance(lrdata, config=snakemake.config, step=snakemake.rule)
write_h5ad(lrdata, snakemake.output.scores)
