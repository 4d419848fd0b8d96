"""Time and peak memory of Harmony on joint PCs (``group.harmony``, rule joint_pca).

    .venv/bin/python benchmarks/harmony_cost.py [--spots 15000 200000 1000000] [--sections 3]

Each size runs in two fresh processes (their peak resident memory, ``ru_maxrss``), with and
without Harmony, on 15 PCs of random data split over ``--sections`` sections with a shift
between them, through ``spaseg.pp._joint._harmony`` as rule joint_pca calls it. The memory
above the PCs themselves is what ``spaseg._resources.JOINT_MEMORY`` adds per spot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

CHILD = """
import resource, sys, time
sys.path.insert(0, {src!r})
import numpy as np, pandas as pd
from anndata import AnnData
from spaseg.pp._joint import _harmony
rng = np.random.default_rng(0)
n, k = {n}, {sections}
section = rng.integers(0, k, n)
pcs = rng.normal(size=(n, 15)) + section[:, None] * 0.5
adata = AnnData(obs=pd.DataFrame({{"sample": pd.Categorical(section.astype(str))}}))
adata.obsm["X_pca"] = pcs.astype(np.float32)
start = time.perf_counter()
{call}
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run(code: str) -> tuple[float, float]:
    """(seconds, peak MB) that a fresh Python running ``code`` prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, peak_mb = out.stdout.split()[-2:]
    return float(seconds), float(peak_mb)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, nargs="+", default=[15_000, 200_000, 1_000_000])
    parser.add_argument("--sections", type=int, default=3)
    args = parser.parse_args(argv)
    src = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    for n in args.spots:
        child = {"src": src, "n": n, "sections": args.sections}
        _, without = run(CHILD.format(**child, call="pass"))
        seconds, peak_mb = run(CHILD.format(**child, call='_harmony(adata, "sample", 0)'))
        rows.append(
            dict(
                spots=n,
                harmony_s=seconds,
                peak_mb=peak_mb,
                peak_mb_without_harmony=without,
                added_mb_per_kspot=(peak_mb - without) / (n / 1000),
            )
        )
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
