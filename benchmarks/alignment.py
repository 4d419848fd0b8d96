"""3-D alignment (spaseg.tl.align): accuracy on simulated serial sections, DLPFC vs PASTE, memory.

    python benchmarks/alignment.py [--seeds 0 1 2] [--out benchmarks/out/alignment]

1. Simulated serial sections (``simulate_serial_sections``: rotations up to 180 degrees,
   translations up to 10 spacings, 10 % of each section torn away, own spot lattice per
   section, every third pair mirrored): rotation error and the error at the section centre
   (in spot spacings) of each section's estimated transform against the known one.
2. DLPFC 151673 -> 151674 (adjacent sections): layer agreement of aligned neighbours (share of
   labelled 151673 spots whose nearest aligned 151674 spot has the same ``layer_guess``) for
   the raw coordinates, spaseg.tl.align and PASTE (``paste-bio``, ``pairwise_align`` with its
   defaults, then ``stack_slices_pairwise``), with wall time, CPU time and peak memory. PASTE
   is left out with ``--skip paste``, and skipped with a message when ``paste-bio`` is not
   installed (``pip install -e .[bench]``).
3. Memory and time of aligning two 50 k-spot sections (synthetic features on a hex lattice
   under a known rigid motion): the rigid registration alone, then ``spaseg.tl.align``.

Parts 1 and 2 compute the joint PCA as rule joint_pca does (``group.scale`` and
``group.harmony`` of ``config/config.yaml``; ``--group k=v,...`` overrides) and align on
``--use-rep``: ``X_pca`` (default: the joint PCs before Harmony, as rule align does with
``align.use_rep: pca``) or ``X_pca_harmony``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from anndata import AnnData
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure as _measure_wall  # noqa: E402
from dlpfc import DATA, shipped_config  # noqa: E402

import spaseg  # noqa: E402
from spaseg.datasets._sim_serial import rigid_matrix, simulate_serial_sections  # noqa: E402
from spaseg.tl._register import Rigid, register  # noqa: E402

#: The joint PCA as rule joint_pca runs it (``--group k=v,...`` overrides).
SHIPPED_GROUP = {k: shipped_config()["group"][k] for k in ("scale", "harmony")}


@contextmanager
def measure():
    """Wall time and peak memory (``_measure``) plus this process's CPU time (``cpu_seconds``).

    On a shared machine the wall time depends on the load; CPU time (all threads) much less.
    """
    proc = psutil.Process()
    before = sum(proc.cpu_times()[:2])
    with _measure_wall() as m:
        yield m
    m.cpu_seconds = sum(proc.cpu_times()[:2]) - before


def transform_errors(sections, joint) -> list[dict]:
    rows = []
    info = joint.uns["align"]
    for k, section in enumerate(sections[1:], start=1):
        truth = section.uns["serial"]
        est = Rigid(info["matrix"][k], info["offset"][k])
        true = Rigid(truth["matrix"], truth["offset"])
        cos, sin = (est.matrix @ true.matrix.T)[:, 0]
        centre = section.obsm["spatial"].mean(axis=0, keepdims=True)
        rows.append(
            dict(
                section=k,
                n_spots=section.n_obs,
                true_rotation=truth["rotation_deg"],
                mirrored=truth["reflection"],
                mirror_found=bool(info["reflection"][k]) == truth["reflection"],
                rotation_error_deg=abs(np.degrees(np.arctan2(sin, cos))),
                centre_error_spacings=float(
                    np.linalg.norm(est.apply(centre) - true.apply(centre)) / truth["spacing"]
                ),
            )
        )
    return rows


def simulated(seeds, n_rows: int, group: dict, use_rep: str) -> pd.DataFrame:
    rows = []
    for pattern in ("mixed", "blobs", "layers"):
        for seed in seeds:
            sections = simulate_serial_sections(
                4,
                reflections=[False, False, False, True],
                n_rows=n_rows,
                n_domains=5,
                n_genes=200,
                pattern=pattern,
                seed=seed,
            )
            joint = spaseg.pp.joint_normalize_pca(
                {s.obs["sample"].iloc[0]: s for s in sections}, n_comps=10, **group
            )
            with measure() as m:
                spaseg.tl.align(joint, reflection=True, use_rep=use_rep)
            for row in transform_errors(sections, joint):
                rows.append(dict(pattern=pattern, seed=seed, seconds=m.seconds / 3, **row))
    return pd.DataFrame(rows)


def layer_agreement(xy_a, labels_a, xy_b, labels_b) -> float:
    _, nearest = cKDTree(xy_b).query(xy_a)
    ok = (labels_a != "NA") & (labels_b[nearest] != "NA")
    return float((labels_a[ok] == labels_b[nearest][ok]).mean())


def _paste_compatible_pot() -> None:
    """paste-bio 1.4's line search takes 5 arguments; POT >= 0.9.2 passes a 6th (the gradient).

    Drop it, so that PASTE runs unchanged on a current POT.
    """
    import ot.optim

    cg = ot.optim.cg

    def patched(a, b, M, reg, f, df, G0=None, line_search=None, *args, **kwargs):
        if line_search is not None:
            inner = line_search

            def line_search(cost, G, deltaG, Mi, cost_G, *gradient, **kw):
                return inner(cost, G, deltaG, Mi, cost_G, **kw)

        return cg(a, b, M, reg, f, df, G0, line_search, *args, **kwargs)

    ot.optim.cg = patched


def dlpfc(group: dict, use_rep: str, paste_too: bool = True) -> pd.DataFrame:
    names = ("151673", "151674")
    raw = {n: spaseg.io.read_h5ad(DATA / f"{n}.h5ad", sample=n) for n in names}
    sections = {n: spaseg.pp.qc(a, sample=n, copy=True) for n, a in raw.items()}
    labels = [sections[n].obs["layer_guess"].astype(str).to_numpy() for n in names]
    xy = [np.asarray(sections[n].obsm["spatial"], dtype=float) for n in names]
    rows = [
        dict(
            method="raw coordinates",
            agreement=layer_agreement(xy[0], labels[0], *xy[1:], labels[1]),
        )
    ]

    with measure() as m:
        joint = spaseg.pp.joint_normalize_pca(sections, n_comps=15, **group)
        spaseg.tl.align(joint, use_rep=use_rep)
    sample = joint.obs["sample"].astype(str).to_numpy()
    aligned = [joint.obsm["spatial_aligned"][sample == n] for n in names]
    rows.append(
        dict(
            method="spaseg.tl.align (joint PCA + alignment)",
            agreement=layer_agreement(aligned[0], labels[0], aligned[1], labels[1]),
            seconds=m.seconds,
            cpu_seconds=m.cpu_seconds,
            peak_mb=m.peak_mb,
            rotation_deg=joint.uns["align"]["rotation_deg"][1],
        )
    )
    if not paste_too:
        return pd.DataFrame(rows)
    try:
        import paste
    except ImportError:
        print("PASTE skipped: paste-bio is not installed (pip install -e .[bench]).")
        return pd.DataFrame(rows)
    _paste_compatible_pot()
    a, b = (raw[n][:, raw[n].var_names.isin(joint.var_names)].copy() for n in names)
    with measure() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pi = paste.pairwise_align(a, b)
        stacked = paste.stack_slices_pairwise([a, b], [pi])
    rows.append(
        dict(
            method="PASTE pairwise_align (alpha 0.1, KL)",
            agreement=layer_agreement(
                np.asarray(stacked[0].obsm["spatial"]),
                labels[0],
                np.asarray(stacked[1].obsm["spatial"]),
                labels[1],
            ),  # fmt: skip
            seconds=m.seconds,
            cpu_seconds=m.cpu_seconds,
            peak_mb=m.peak_mb,
        )
    )
    return pd.DataFrame(rows)


def large(n_spots: int = 50_000) -> list[dict]:
    """Two synthetic sections of ``n_spots`` hex spots each; time and memory of ``register``
    and of the whole ``spaseg.tl.align``."""
    rng = np.random.default_rng(0)
    side = int(np.sqrt(n_spots / 0.785 / 0.866)) + 2
    row, col = np.divmod(np.arange(side * side), side)
    xy = np.column_stack([col + 0.5 * (row % 2), row * 0.866]) * 100.0
    centre = xy.mean(axis=0)
    xy = xy[np.linalg.norm(xy - centre, axis=1) < 50.0 * side * 0.866][:n_spots]
    # smooth features: a few random plane waves (a stand-in for PCs with spatial structure)
    waves = rng.normal(0, 1 / 1500.0, (6, 2))
    signal = np.cos(xy @ waves.T + rng.uniform(0, 6.3, 6))
    fixed_f, moving_f = (signal + rng.normal(0, 0.5, signal.shape) for _ in range(2))
    truth = xy + rng.uniform(-50, 50, xy.shape)  # the moving section's own spot positions
    motion = Rigid(rigid_matrix(137.0), np.array([2000.0, -1500.0]))
    with measure() as m:
        found = register(xy, fixed_f, motion.apply(truth), moving_f)
    err = np.linalg.norm(found.apply(motion.apply(truth)) - truth, axis=1).mean() / 100.0
    rows = [_large_row("register (rigid step)", len(xy), m, err)]
    # The whole spaseg.tl.align on one AnnData of both sections (features in obsm["X_pca"]).
    both = AnnData(
        obs=pd.DataFrame(
            {"sample": pd.Categorical(["a"] * len(xy) + ["b"] * len(xy))},
            index=[f"s{i}" for i in range(2 * len(xy))],
        )
    )
    both.obsm["spatial"] = np.vstack([xy, motion.apply(truth)])
    both.obsm["X_pca"] = np.vstack([fixed_f, moving_f])
    del fixed_f, moving_f, signal
    with measure() as m:
        spaseg.tl.align(both, n_features=6)
    aligned = both.obsm["spatial_aligned"][len(xy) :]
    err = np.linalg.norm(aligned - truth, axis=1).mean() / 100.0
    rows.append(_large_row("spaseg.tl.align (2 sections)", len(xy), m, err))
    return rows


def _large_row(step: str, n_spots: int, m, err: float) -> dict:
    return dict(
        step=step,
        n_spots=n_spots,
        seconds=m.seconds,
        cpu_seconds=m.cpu_seconds,
        peak_mb=m.peak_mb,
        mean_error_spacings=err,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--n-rows", type=int, default=40, help="capture rows of a simulated section"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/alignment"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["sim", "dlpfc", "paste", "large"])
    parser.add_argument("--group", default="", help="override config group keys, k=v,...")
    parser.add_argument("--use-rep", default="X_pca", choices=["X_pca", "X_pca_harmony"])
    args = parser.parse_args(argv)
    group = {
        **SHIPPED_GROUP,
        **{
            k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in args.group.split(",") if kv)
        },
    }
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}, CPUs: {os.cpu_count()}")
    print(f"joint PCA: {group}, aligned on {args.use_rep}")

    if "sim" not in args.skip:
        sim = simulated(args.seeds, args.n_rows, group, args.use_rep)
        sim.to_csv(args.out / "simulated.tsv", sep="\t", index=False)
        print("\n## Simulated serial sections: error of each section's transform\n")
        summary = sim.groupby("pattern").agg(
            pairs=("section", "size"),
            spots=("n_spots", "mean"),
            mirror_found=("mirror_found", "mean"),
            rotation_err_mean=("rotation_error_deg", "mean"),
            rotation_err_max=("rotation_error_deg", "max"),
            centre_err_mean=("centre_error_spacings", "mean"),
            centre_err_max=("centre_error_spacings", "max"),
            seconds_per_pair=("seconds", "mean"),
        )
        print(summary.round(3).to_markdown())
    if "dlpfc" not in args.skip and DATA.exists():
        table = dlpfc(group, args.use_rep, paste_too="paste" not in args.skip)
        table.to_csv(args.out / "dlpfc.tsv", sep="\t", index=False)
        print("\n## DLPFC 151673 -> 151674: layer agreement of aligned neighbours\n")
        print(table.round(4).to_markdown(index=False))
    if "large" not in args.skip:
        print("\n## Two 50 k-spot sections (synthetic features)\n")
        big = pd.DataFrame(large())
        big.to_csv(args.out / "large.tsv", sep="\t", index=False)
        print(big.round(3).to_markdown(index=False))
    print(f"\nload average at end (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
