"""Shared fixtures: small sections built in memory, and the location of ../shared."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RULES = Path(__file__).resolve().parents[1] / "workflow" / "rules"

# Results depend slightly on the thread count; fix it so tests are reproducible anywhere.
torch.set_num_threads(1)


@pytest.fixture
def no_network(monkeypatch):
    """Any network connection fails (for tests that must run offline)."""

    def refuse(*args, **kwargs):
        raise OSError("network access during tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def planned_jobs(result) -> dict[str, int]:
    """Rule -> jobs, from the job table a Snakemake (dry) run prints."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M)}


def workflow_functions() -> str:
    """The text of the .smk files that define the workflow's functions (they hold no rules)."""
    files = sorted(RULES.glob("*.smk"))
    return "\n".join(f.read_text() for f in files if not re.search(r"^rule ", f.read_text(), re.M))


def rule_blocks() -> dict[str, str]:
    """Rule name -> its block, from the snakefmt-formatted .smk files."""
    blocks = {}
    for smk in sorted(RULES.glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            blocks[name] = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]
    return blocks


def hex_section(n_rows: int = 16, n_cols: int = 16, n_bands: int = 3, seed: int = 0):
    """A Visium-like hex grid with horizontal bands as domains and PCs that separate them."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(2 * n_cols), indexing="ij")
    keep = (rows + cols) % 2 == 0
    rows, cols = rows[keep], cols[keep]
    band = np.minimum(rows * n_bands // n_rows, n_bands - 1)
    centres = rng.normal(0, 1.5, size=(n_bands, 5))
    pcs = centres[band] + rng.normal(0, 1.0, size=(len(band), 5))
    adata = ad.AnnData(
        X=np.zeros((len(band), 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"array_row": rows, "array_col": cols, "truth": pd.Categorical(band.astype(str))},
            index=[f"s{i}" for i in range(len(band))],
        ),
    )
    adata.obsm["spatial"] = np.column_stack([cols * 50.0, rows * 86.6])
    adata.obsm["X_pca"] = pcs.astype(np.float32)
    return adata


@pytest.fixture
def hex_adata():
    return hex_section()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED / "data"
