"""``pca.min_program_genes``: which narrow programmes the PCA step removes, and what it costs.

    python benchmarks/narrow_programs.py [--seeds 0 1 2 3] [--spots 50000 250000] [--min-genes 15]

(``--seeds`` or ``--spots`` without values skips that part.)

The option is off in the shipped config; ``--min-genes`` (15) is the setting measured, with
the shipped QC and PCA settings otherwise.

1. The four DLPFC sections of ``../shared/data`` (skipped without it), one PCA seed per row:
   the programmes removed (participation ratio, share of the PCs' variance, leading genes),
   so one sees how stable the ICA's answer is over seeds.
2. Cost: ``spaseg.pp.normalize_pca`` on simulated square-grid sections of the given sizes
   (2 000 genes), ``--min-genes`` against ``min_program_genes: 0`` (the plain PCA): wall
   seconds and peak RSS, one fresh copy each.

Accuracy: ``benchmarks/dlpfc.py --pca min_program_genes=15``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import measure  # noqa: E402

import spaseg  # noqa: E402

DLPFC = REPO.parent / "shared" / "data" / "dlpfc"


def shipped() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def dlpfc_programmes(config: dict, seeds: list[int], min_genes: float) -> pd.DataFrame:
    rows = []
    for name in ("151673", "151674", "151675", "151676"):
        raw = spaseg.io.read_h5ad(DLPFC / f"{name}.h5ad", sample=name)
        spaseg.pp.qc(raw, **spaseg.pp.qc_filters(config["qc"]), sample=name)
        for seed in seeds:
            adata = raw.copy()
            with measure() as m:
                spaseg.pp.normalize_pca(
                    adata,
                    **{**config["pca"], "min_program_genes": min_genes},
                    seed=seed,
                    sample=name,
                )
            found = adata.uns["pca"]["narrow_programs"]
            programmes = "; ".join(
                f"~{r:.0f} genes, {100 * s:.1f} %: {g}"
                for r, s, g in zip(
                    found["participation_ratio"],
                    found["variance_share"],
                    found["leading_genes"],
                    strict=True,
                )
            )
            rows.append(
                dict(
                    section=name,
                    seed=seed,
                    removed=len(found["leading_genes"]),
                    programmes=programmes,
                    s=round(m.seconds, 1),
                )
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def cost(config: dict, sizes: list[int], min_genes: float) -> pd.DataFrame:
    rows = []
    for size in sizes:
        n_rows = int(np.sqrt(size / 0.75))  # the ellipse outline keeps about 3/4 of a square
        base = spaseg.datasets.simulate_tissue(
            6, pattern="layers", grid="square", n_rows=n_rows, n_genes=2000, seed=0
        )
        for setting in (min_genes, 0):
            adata = base.copy()
            with measure() as m:
                spaseg.pp.normalize_pca(adata, **{**config["pca"], "min_program_genes": setting})
            rows.append(
                dict(
                    spots=adata.n_obs,
                    min_program_genes=setting,
                    seconds=round(m.seconds, 1),
                    peak_mb=round(m.peak_mb),
                )
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--spots", type=int, nargs="*", default=[50_000, 250_000])
    parser.add_argument("--min-genes", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = shipped()
    if args.seeds and DLPFC.exists():
        table = dlpfc_programmes(config, args.seeds, args.min_genes)
        print(f"\n## Programmes removed on DLPFC, min_program_genes {args.min_genes:g}\n")
        print(table.to_markdown(index=False))
    elif args.seeds:
        print(f"{DLPFC} not found: DLPFC part skipped")
    if args.spots:
        print("\n## Cost of normalize_pca, simulated sections, 2 000 genes\n")
        print(cost(config, args.spots, args.min_genes).to_markdown(index=False))


if __name__ == "__main__":
    main()
