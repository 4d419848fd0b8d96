"""``n_domains: auto``: how often SpaSEG picks the true number of domains.

    python benchmarks/auto_k.py [--k 3 4 ... 10] [--seeds 0 1 2] [--dlpfc] [--dlpfc-seeds 0]

Simulated sections (``spaseg.datasets.simulate_tissue``, hex grid, 40 rows, the pattern
alternating over seeds: layers, blobs, mixed) with known numbers of domains; each is segmented
with the shipped config (``config/config.yaml``: its ``pca`` and ``spaseg`` sections, so
``k_range`` too) and ``n_domains: auto``. Prints, per section, the chosen number, the score
curve and the ARI to the truth; then the share right and within one. With ``--dlpfc`` also
the four DLPFC sections of ``../shared/data`` (annotated with six layers and white matter),
with each of ``--dlpfc-seeds``. Beside the choice (by separation), what two other rules would
choose on the same runs: the runs' agreement alone (``by_stability``, the rule before) and the
sum of the two scores' ranks over k (``by_rank_sum``, the rule tried in between).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
import spaseg  # noqa: E402

DLPFC = REPO.parent / "shared" / "data" / "dlpfc"
PATTERNS = ("layers", "blobs", "mixed")


def shipped() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def segment(adata, config: dict, seed: int) -> dict:
    spaseg.pp.normalize_pca(adata, **config["pca"], seed=seed)
    kwargs = {k: v for k, v in config["spaseg"].items() if k not in ("n_domains", "seed")}
    kwargs["k_range"] = tuple(kwargs["k_range"])
    start = time.perf_counter()
    spaseg.tl.spaseg(adata, n_domains="auto", seed=seed, log_every=0, **kwargs)
    scores = adata.uns["spaseg"]["k_scores"].set_index("n_domains")
    ranks = scores[["stability", "calinski_harabasz"]].rank().sum(axis=1)
    return dict(
        chosen=adata.obs["domain"].nunique(),  # by separation
        # what the other rules would choose (ties: the smaller k; rank sums: then stability)
        by_stability=int(scores["stability"].idxmax()),
        by_rank_sum=int((ranks + 1e-3 * scores["stability"]).idxmax()),
        curve=" ".join(f"{k}:{s:.2f}" for k, s in scores["stability"].items()),
        s=time.perf_counter() - start,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="*", default=list(range(3, 11)))  # none: DLPFC only
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dlpfc", action="store_true")
    parser.add_argument("--dlpfc-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = shipped()
    rows = []
    for k in args.k:
        for seed in args.seeds:
            pattern = PATTERNS[seed % len(PATTERNS)]
            adata = spaseg.datasets.simulate_tissue(k, pattern=pattern, n_rows=40, seed=seed)
            result = segment(adata, config, seed)
            truth, found = adata.obs["domain_truth"], adata.obs["domain"]
            ari = adjusted_rand_score(truth, found)
            nmi = normalized_mutual_info_score(truth, found)
            rows.append(
                dict(
                    data="simulated",
                    truth=k,
                    pattern=pattern,
                    seed=seed,
                    ari=ari,
                    nmi=nmi,
                    **result,
                )
            )
            print(rows[-1], flush=True)
    if args.dlpfc and DLPFC.exists():
        for name in ("151673", "151674", "151675", "151676"):
            section = spaseg.io.read_h5ad(DLPFC / f"{name}.h5ad", sample=name)
            spaseg.pp.qc(section, **spaseg.pp.qc_filters(config["qc"]), sample=name)
            for seed in args.dlpfc_seeds:
                adata = section.copy()  # normalize_pca works in place: raw counts every seed
                result = segment(adata, config, seed)
                truth = adata.obs.get("layer_guess")
                ari = nmi = np.nan
                if truth is not None:
                    ok = (truth.astype(str) != "NA").to_numpy()
                    labels = (truth.astype(str)[ok], adata.obs["domain"][ok])
                    ari, nmi = adjusted_rand_score(*labels), normalized_mutual_info_score(*labels)
                rows.append(
                    dict(
                        data=f"DLPFC {name}", truth=7, pattern="", seed=seed, ari=ari, nmi=nmi,
                        **result,
                    )
                )  # fmt: skip
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print("\n" + df.round(3).to_markdown(index=False))
    sim = df[df["data"] == "simulated"]
    if len(sim):
        right = (sim["chosen"] == sim["truth"]).mean()
        within = ((sim["chosen"] - sim["truth"]).abs() <= 1).mean()
        print(
            f"\nSimulated: right k in {right:.0%} of {len(sim)} sections (target >= 80 %), "
            f"within one in {within:.0%} (target 100 %); mean time {sim['s'].mean():.1f} s"
        )
        for rule in ("by_stability", "by_rank_sum"):
            alone = (sim[rule] == sim["truth"]).mean()
            near = ((sim[rule] - sim["truth"]).abs() <= 1).mean()
            print(f"  {rule}: right {alone:.0%}, within one {near:.0%}")
    dlpfc = df[df["data"] != "simulated"]
    if len(dlpfc):
        off = (dlpfc["chosen"] - 7).abs()
        print(
            f"DLPFC: chosen {sorted(dlpfc['chosen'].tolist())}, within one of 7 in "
            f"{(off <= 1).mean():.0%}, mean distance {off.mean():.2f}"
        )
        for rule in ("by_stability", "by_rank_sum"):
            near = ((dlpfc[rule] - 7).abs() <= 1).mean()
            print(f"  {rule}: {sorted(dlpfc[rule].tolist())}, within one of 7 in {near:.0%}")


if __name__ == "__main__":
    main()
