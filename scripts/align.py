"""Rule align: register a group's sections into one frame, stack them in 3-D, split them."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import shutil
from pathlib import Path

import anndata as ad
import pandas as pd

import spaseg
from spaseg._atomic import atomic_path, write_h5ad
from spaseg._provenance import add_provenance

settings = dict(snakemake.params.align)
group = snakemake.wildcards.group
joint = ad.read_h5ad(snakemake.input[0])
# The joint PCs before Harmony: its correction did not help the alignment (benchmarks/RESULTS.md).
settings["use_rep"] = "X_pca" if settings.pop("use_rep") == "pca" else "domain"
spaseg.tl.align(joint, **settings, z=snakemake.params.z, group=group)
add_provenance(joint, config=snakemake.config, step=snakemake.rule)

info = joint.uns["align"]
table = pd.DataFrame(
    {
        "sample": info["samples"],
        "z": info["z"],
        "rotation_deg": info["rotation_deg"],
        "reflection": info["reflection"],
        "a11": info["matrix"][:, 0, 0],
        "a12": info["matrix"][:, 0, 1],
        "a21": info["matrix"][:, 1, 0],
        "a22": info["matrix"][:, 1, 1],
        "offset_x": info["offset"][:, 0],
        "offset_y": info["offset"][:, 1],
        "score": info["score"],
    }
)
with atomic_path(snakemake.output.transforms) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")

# One file per section with the shared labels and its aligned coordinates; written into a
# temporary folder that replaces the output folder at the end.
out = Path(snakemake.output.per_sample)
partial = out.with_name(f".{out.name}.partial")
shutil.rmtree(partial, ignore_errors=True)  # left by a killed job
partial.mkdir(parents=True)
sample = joint.obs["sample"].astype(str).to_numpy()
for name in info["samples"]:
    section = joint[sample == name].copy()
    section.obs_names = section.obs_names.str.removesuffix(f"-{name}")
    write_h5ad(section, partial / f"{name}.h5ad")
write_h5ad(joint, snakemake.output.h5ad)
partial.rename(out)
