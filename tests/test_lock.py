"""One tested set of versions: constraints.txt is what `make install` installs, the rules' conda
envs pin the same versions, and scanpy's neighbours + Leiden work at a size that broke them."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
#: conda-forge name -> PyPI name, where they differ.
PYPI_NAME = {"pytorch": "torch"}
#: Pinned in envs but not a Python package of the lock.
NOT_IN_LOCK = {"python", "pip"}


def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def env_pins(path: Path) -> dict[str, str]:
    found = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            name, version = re.split(r"==|=", entry.replace(" ", ""))[:2]
            found[canonicalize_name(PYPI_NAME.get(name, name))] = version
    return found


def test_lock_pins_every_package_exactly_once():
    lines = [
        line
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^\s]*", line) for line in lines), lines
    names = [canonicalize_name(line.split("==")[0]) for line in lines]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.stem)
def test_env_pins_match_the_lock(env):
    pins, locked = env_pins(env), lock()
    wrong = {
        name: (version, locked.get(name, "not locked"))
        for name, version in pins.items()
        if name not in NOT_IN_LOCK and locked.get(name) != version
    }
    assert not wrong, f"{env.name}: env pin vs constraints.txt: {wrong}"


def test_installed_versions_are_the_locked_ones():
    """The environment the tests run in resolved to the lock (what `make install` does)."""
    locked = lock()
    wrong = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in locked and dist.version.split("+")[0] != locked[name]:
            wrong[name] = (dist.version, locked[name])
    missing = [
        n for n in ("scanpy", "scipy", "torch", "snakemake", "pynndescent") if n not in locked
    ]
    assert not missing and not wrong, f"installed vs constraints.txt: {wrong}; unlocked: {missing}"


@pytest.mark.slow
def test_scanpy_neighbors_and_leiden_on_20k_spots():
    """scanpy 1.11.5 with pynndescent 0.7 failed here ('csr_array' has no 'getnnz') above ~10 k
    observations; the lock must keep this working (numba compiles pynndescent: ~1 min)."""
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(5, 15))
    truth = rng.integers(0, 5, 20_000)
    x = (centres[truth] + rng.normal(size=(20_000, 15))).astype(np.float32)
    adata = ad.AnnData(x)
    adata.obsm["X_pca"] = x
    sc.pp.neighbors(adata, use_rep="X_pca", random_state=0)
    assert adata.obsp["connectivities"].shape == (20_000, 20_000)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, adata.obs["leiden"]) > 0.9
