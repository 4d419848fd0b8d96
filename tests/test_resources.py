"""Memory and run time requested from each job's input (spaseg._resources, the rules)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from spaseg._resources import (
    JOINT_MEMORY,
    MEMORY,
    SECONDS,
    h5ad_size,
    predict_c2l_map_runtime_min,
    predict_mem_mb,
    predict_runtime_min,
)

REPO = Path(__file__).resolve().parents[1]


def test_h5ad_size_reads_sparse_and_dense_headers(tmp_path):
    X = np.zeros((30, 8), dtype=np.float32)
    X[::3, ::2] = 1
    ad.AnnData(sparse.csr_matrix(X)).write_h5ad(tmp_path / "sparse.h5ad")
    ad.AnnData(X).write_h5ad(tmp_path / "dense.h5ad")
    assert h5ad_size(tmp_path / "sparse.h5ad") == (30, 8, int((X != 0).sum()))
    assert h5ad_size(tmp_path / "dense.h5ad") == (30, 8, 240)


@pytest.mark.parametrize("rule", sorted({*MEMORY, *JOINT_MEMORY}))
def test_predictions_grow_with_the_section(rule):
    small = predict_mem_mb(rule, 1_000, 10**6, 500)
    large = predict_mem_mb(rule, 100_000, 10**8, 5_000)
    assert 0 < small < large and small % 100 == 0
    if rule == "c2l_map":  # its run time counts epochs: predict_c2l_map_runtime_min
        short = predict_c2l_map_runtime_min(1_000, 500, 1_000)
        assert 10 <= short <= predict_c2l_map_runtime_min(100_000, 5_000, 30_000)
    else:
        small_min = predict_runtime_min(rule, 1_000, 10**6)
        assert 10 <= small_min <= predict_runtime_min(rule, 10**5, 10**8)
    assert set(MEMORY) == set(SECONDS) | {"c2l_map"}


def test_joint_pca_memory_does_not_grow_with_genes_not_stored():
    """Scaled genes stay sparse: memory follows the stored values, not spots x genes."""
    assert predict_mem_mb("joint_pca", 50_000, 25 * 10**6, 2_000) == predict_mem_mb(
        "joint_pca", 50_000, 25 * 10**6, 30_000
    )


def test_dry_run_asks_for_memory_from_the_input(tmp_path):
    """Jobs whose input exists are sized from it (load: the section's .h5ad); those whose
    input is still to be made say <TBD>; a retry asks for twice as much."""
    section = tmp_path / "section.h5ad"
    X = sparse.random(5000, 400, density=0.2, format="csr", random_state=0, dtype=np.float32)
    adata = ad.AnnData((X * 10).ceil())
    adata.obsm["spatial"] = np.column_stack([np.arange(5000) % 70, np.arange(5000) // 70])
    adata.write_h5ad(section)
    sheet = tmp_path / "samples.tsv"
    rows = [{"sample": "s", "path": str(section), "platform": "h5ad", "n_domains": 3}]
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile",
               str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
               str(REPO / "config/config.yaml"), "--config", f"samples={sheet}",
               f"results={tmp_path / 'results'}"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout + done.stderr
    jobs = dict(re.findall(r"rule (\w+):.*?resources: ([^\n]+)", text, re.S))
    load_mb = int(re.search(r"mem_mb=(\d+)", jobs["load"]).group(1))
    assert load_mb == predict_mem_mb("load", 5000, X.nnz)
    assert "mem_mb=<TBD>" in jobs["normalize_pca"] and "mem_mb=<TBD>" in jobs["spaseg_train"]
