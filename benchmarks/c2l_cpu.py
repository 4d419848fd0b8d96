"""cell2location on a CPU: where the time goes, and the shipped settings against the published ones.

A simulated Visium-size section (``--rows`` hex rows: 68 give ~4 000 spots; ``--genes`` genes,
``--types`` cell types, true fractions known) and its single-cell reference. The reference's
signatures are trained once with the shipped settings. Then the section is mapped twice:

* ``published``: cell2location's recommendation, 30 000 full-batch epochs, then 1 000 posterior
  samples for the q05 abundances. A callback records the guide's q05 abundances every
  ``--every`` epochs, so one run also shows how close each earlier epoch already was, and the
  ELBO gain the plateau stop would have seen there.
* ``shipped``: ``config/config.yaml``'s ``cell2location`` section as the workflow passes it
  (the plateau stop, the q05 read from the guide).

Prints the time and peak memory of each step, Pearson r of the cell-type fractions of each
against the published run's and against the truth, and the curve. Target (cell-cell
interaction issue, item 6): the shipped mapping of ~4 000 spots in <= 15 min on 2 cores, r >= 0.95
against the published run.

    .venv/bin/python benchmarks/c2l_cpu.py                     # the issue's measurement
    .venv/bin/python benchmarks/c2l_cpu.py --rows 20 --published-epochs 3000   # quick
    .venv/bin/python benchmarks/c2l_cpu.py --map-lrs 0.002 0.016 --cerebellum   # real data

``--map-lrs`` maps once per learning rate; ``--cerebellum`` uses the Slide-seq puck and its
single-cell reference of ``../shared/data/cerebellum`` (no truth: r against the published run
only). The published run's fractions are kept in ``--out`` and read back by a later run of the
same size.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

from spaseg.datasets._sim_cci import simulate_cci  # noqa: E402
from spaseg.tl import cell2location_map, cell2location_signatures  # noqa: E402
from spaseg.tl._elbo_watch import relative_gain  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def fractions(abundance: np.ndarray) -> np.ndarray:
    total = abundance.sum(axis=1, keepdims=True)
    return abundance / np.where(total > 0, total, 1.0)


def pearson(a, b) -> float:
    if b is None:  # no truth (real data)
        return float("nan")
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


def columns_of(truth: pd.DataFrame | None, like: pd.DataFrame) -> pd.DataFrame | None:
    return None if truth is None else truth[like.columns]


def snapshots(every: int):
    """A callback keeping the guide's q05 cell abundances every ``every`` epochs."""
    from lightning.pytorch.callbacks import Callback

    class Snapshots(Callback):
        def __init__(self):
            self.kept: dict[int, np.ndarray] = {}
            self.seconds = 0.0

        def on_train_epoch_end(self, trainer, pl_module):
            epoch = trainer.current_epoch + 1
            if epoch % every == 0:
                start = time.perf_counter()
                with torch.no_grad():
                    q05 = pl_module.module.guide.quantiles([0.05])["w_sf"]
                self.kept[epoch] = q05.squeeze(0).cpu().numpy().copy()
                self.seconds += time.perf_counter() - start

    return Snapshots()


def compare_reference(reference, spots, signatures, est, truth, c2l, common) -> list[dict]:
    """The reference summarised by the mean of posterior samples (cell2location's default),
    against the shipped signatures; then the shipped mapping with those signatures. Runs after
    the shipped steps in the same process, so its peak includes what they left behind."""
    with measure() as ref:
        sampled = cell2location_signatures(
            reference, "cell_type", max_epochs=c2l["max_epochs"], posterior="samples",
            num_samples=c2l["num_samples"], device="cpu", seed=c2l["seed"],
        )  # fmt: skip
    sampled = sampled.loc[signatures.index, signatures.columns]
    ratio = (signatures / sampled).to_numpy()
    rows = [{"step": f"reference signatures ({c2l['num_samples']} samples)",
             "epochs": c2l["max_epochs"], "s": ref.seconds, "peak MB": ref.peak_mb,
             "r vs shipped": pearson(np.log1p(sampled), np.log1p(signatures)),
             "median / mean": f"{np.median(ratio):.3f} ({np.quantile(ratio, 0.01):.3f}-"
                              f"{np.quantile(ratio, 0.99):.3f})"}]  # fmt: skip
    mapped = spots.copy()
    with measure() as fit:
        cell2location_map(
            mapped, sampled, max_epochs=c2l["map_max_epochs"], tol=c2l["map_tol"],
            window=c2l["map_window"], lr=c2l["map_lr"], posterior=c2l["posterior"], **common,
        )  # fmt: skip
    frac = mapped.obsm["cell_type_fractions"]
    rows.append({"step": "map, shipped, with the sampled signatures",
                 "epochs": mapped.uns["cell2location"]["epochs"], "s": fit.seconds,
                 "peak MB": fit.peak_mb, "r vs truth": pearson(frac, columns_of(truth, frac)),
                 "r vs shipped": pearson(frac, est[frac.columns])})  # fmt: skip
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=68)
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--types", type=int, default=12)
    parser.add_argument("--published-epochs", type=int, default=30000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (rule c2l_map: 2)")
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument(
        "--cerebellum", action="store_true",
        help="../shared/data/cerebellum (Slide-seq puck, its reference) instead of a simulation",
    )  # fmt: skip
    parser.add_argument(
        "--map-lrs", type=float, nargs="+", default=None, metavar="LR",
        help="map with the shipped settings once per learning rate (default: the config's map_lr)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-reference", action="store_true",
        help="also summarise the reference by posterior samples and map with those signatures",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/c2l_cpu"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "scvi", "pyro"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    c2l = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["cell2location"]

    if args.cerebellum:
        folder = REPO.parent / "shared" / "data" / "cerebellum"
        if not folder.is_dir():
            parser.error(f"--cerebellum: {folder} not found")
        reference = ad.read_h5ad(folder / "reference_scrna.h5ad")
        spots, truth, per_spot, name = ad.read_h5ad(folder / "slideseq_puck.h5ad"), None, 2, "puck"
    else:
        sim = simulate_cci(
            n_cell_types=args.types, n_genes=args.genes, n_markers=args.genes // (2 * args.types),
            n_rows=args.rows, n_planted=2, n_controls=2, seed=0,
        )  # fmt: skip
        reference, spots, per_spot = sim.reference, sim.spatial, 8
        truth, name = spots.obsm["true_fractions"], f"{args.types}"
    print(f"{spots.n_obs} spots x {spots.n_vars} genes, {reference.n_obs} reference cells; "
          f"torch threads {args.threads}")  # fmt: skip

    rows = []
    with measure() as ref:
        signatures = cell2location_signatures(
            reference, "cell_type", max_epochs=c2l["max_epochs"],
            posterior=c2l["posterior"], num_samples=c2l["num_samples"], device="cpu",
            seed=c2l["seed"],
        )  # fmt: skip
    rows.append({"step": f"reference signatures (shipped, {c2l['posterior']})",
                 "epochs": c2l["max_epochs"], "s": ref.seconds, "peak MB": ref.peak_mb})  # fmt: skip

    common = dict(
        n_cells_per_location=per_spot, detection_alpha=c2l["detection_alpha"], device="cpu",
        seed=c2l["seed"],
    )  # fmt: skip
    mapped = {}
    for lr in args.map_lrs or [c2l["map_lr"]]:
        shipped = spots.copy()
        with measure() as fit:
            cell2location_map(
                shipped, signatures, max_epochs=c2l["map_max_epochs"], tol=c2l["map_tol"],
                window=c2l["map_window"], posterior=c2l["posterior"],
                num_samples=c2l["num_samples"], lr=lr, **common,
            )  # fmt: skip
        frac = shipped.obsm["cell_type_fractions"]
        mapped[len(rows)] = frac  # its row, for the r against the published run below
        rows.append({
            "step": f"map, shipped (tol {c2l['map_tol']}, {c2l['posterior']}, lr {lr})",
            "epochs": shipped.uns["cell2location"]["epochs"], "s": fit.seconds,
            "peak MB": fit.peak_mb, "r vs truth": pearson(frac, columns_of(truth, frac)),
        })  # fmt: skip
    est = next(iter(mapped.values()))  # the first learning rate
    if args.compare_reference:
        rows += compare_reference(reference, spots, signatures, est, truth, c2l, common)

    cached = args.out / f"published_{spots.n_obs}x{spots.n_vars}x{name}_{args.published_epochs}.tsv"
    if not args.skip_published and cached.exists():
        ref_frac = pd.read_csv(cached, sep="\t", index_col=0)
        print(f"published run read from {cached} (no curve: delete it to train again)")
        rows.append({"step": f"map, published ({args.published_epochs} epochs), from {cached.name}",
                     "r vs truth": pearson(ref_frac, columns_of(truth, ref_frac))})  # fmt: skip
    elif not args.skip_published:
        published = spots.copy()
        keep = snapshots(args.every)
        with measure() as slow:
            cell2location_map(
                published, signatures, max_epochs=args.published_epochs, tol=0.0,
                posterior="samples", num_samples=c2l["num_samples"], callbacks=[keep], **common,
            )  # fmt: skip
        ref_frac = published.obsm["cell_type_fractions"]
        ref_frac.to_csv(cached, sep="\t")
        rows.append({"step": f"map, published ({args.published_epochs} epochs, "
                             f"{c2l['num_samples']} samples)",
                     "epochs": args.published_epochs, "s": slow.seconds - keep.seconds,
                     "peak MB": slow.peak_mb,
                     "r vs truth": pearson(ref_frac, columns_of(truth, ref_frac))})  # fmt: skip
        losses = np.asarray(published.uns["cell2location"]["elbo_train"])
        curve = []
        for epoch, q05 in sorted(keep.kept.items()):
            frac = fractions(q05)
            curve.append({
                "epoch": epoch,
                "ELBO gain of the last window": relative_gain(losses[:epoch], c2l["map_window"]),
                "r vs published final": pearson(frac, ref_frac),
                "r vs truth": pearson(frac, columns_of(truth, ref_frac)),
            })  # fmt: skip
        curve = pd.DataFrame(curve)
        curve.to_csv(args.out / "curve.tsv", sep="\t", index=False)
        print("\nguide q05 during the published run (fractions):")
        print(curve.to_markdown(index=False, floatfmt=".4g"))
    if not args.skip_published:
        for row, frac in mapped.items():
            rows[row]["r vs published"] = pearson(frac, ref_frac[frac.columns])

    table = pd.DataFrame(rows)
    table.to_csv(args.out / "table.tsv", sep="\t", index=False)
    print()
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
