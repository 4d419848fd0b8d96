"""Read an AnnData ``.h5ad`` file that already holds spots, genes and coordinates."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ..pp._image import detect_grid
from ._readers import SPATIAL_FIELD, count_problem, finish, require_path

# Ensembl gene IDs of any species: ENSG..., ENSMUSG..., optionally with a version suffix.
_ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")
_SYMBOL_COLUMNS = ("gene_name", "feature_name", "symbol")


def read_h5ad(path: str | os.PathLike, *, sample: str | None = None) -> AnnData:
    """Read spatial data from an ``.h5ad`` file.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    sample
        Sample id, used in error messages.

    Returns
    -------
    AnnData with raw counts (float32 CSR) in ``X``, (x, y) in ``obsm["spatial"]`` and all
    ``obs``/``var`` columns of the file. Counts are taken from ``layers["counts"]``, ``X`` or
    ``raw.X``, the first of them that holds non-negative whole numbers. Coordinates come from
    ``obsm["spatial"]`` or, failing that, from ``obs["array_col"]`` (x) and ``obs["array_row"]``
    (y), in units of the distance between spot centres on Visium's hexagonal grid. If
    ``var_names`` are Ensembl IDs, ``var["gene_symbols"]`` is filled from ``var["gene_name"]``,
    ``var["feature_name"]`` or ``var["symbol"]`` when missing.

    Raises
    ------
    spaseg.InputError
        If the file is missing or unreadable, or has no counts or no coordinates.
    """
    path = require_path(path, sample=sample)
    try:
        source = anndata.read_h5ad(path)
    except MemoryError:
        raise  # not the file's fault: the job needs more memory
    except Exception as err:  # h5py, anndata and numpy raise many types on damaged files
        raise InputError(
            "cannot read as h5ad: the file is truncated, damaged or not an AnnData file "
            f"({type(err).__name__}: {err})",
            sample=sample,
            file=path,
            field="path",
        ) from err

    counts, var = _find_counts(source, sample=sample, path=path)
    adata = AnnData(X=counts, obs=source.obs.copy(), var=var.copy(), uns=dict(source.uns))
    for key, value in source.obsm.items():
        adata.obsm[key] = value
    adata.obsm["spatial"] = _coordinates(source, sample=sample, path=path)
    _add_gene_symbols(adata.var)
    return finish(adata, path=path, platform="h5ad", sample=sample)


def _count_candidates(adata: AnnData) -> Iterator[tuple[str, object, pd.DataFrame]]:
    """Places that may hold raw counts, most explicit first, with the genes they describe."""
    if "counts" in adata.layers:
        yield 'layers["counts"]', adata.layers["counts"], adata.var
    if adata.X is not None:
        yield "X", adata.X, adata.var
    if adata.raw is not None:
        yield "raw.X", adata.raw.X, adata.raw.var


def _find_counts(adata: AnnData, *, sample, path) -> tuple[object, pd.DataFrame]:
    checked, problems = [], []
    for field, matrix, var in _count_candidates(adata):
        problem = count_problem(matrix)
        if problem is None:
            return matrix, var
        checked.append(field)
        problems.append(f"{field}: {problem}")
    raise InputError(
        f"no raw counts: none of {', '.join(checked) or 'X'} holds non-negative whole numbers "
        f"({'; '.join(problems) or 'no matrix'}); "
        'SpaSEG needs raw counts in X, layers["counts"] or raw.X',
        sample=sample,
        file=path,
        field=" / ".join(checked) or "X",
    )


def _coordinates(adata: AnnData, *, sample, path) -> np.ndarray:
    if "spatial" in adata.obsm:
        return adata.obsm["spatial"]
    if {"array_row", "array_col"} <= set(adata.obs.columns):
        # Grid indices: columns run along x, rows along y.
        col, row = (adata.obs[c].to_numpy(dtype=np.float64) for c in ("array_col", "array_row"))
        if detect_grid(adata) == "hex":
            # On Visium's hexagonal grid a column step is half the distance between spot
            # centres and a row step sqrt(3)/2 of it: in index units the six neighbours are not
            # the nearest six (the spatial graph would be wrong). In centre distances they are.
            return np.column_stack([col / 2, row * np.sqrt(3) / 2])
        return np.column_stack([col, row])
    raise InputError(
        'no coordinates: expected obsm["spatial"], or obs["array_row"] and obs["array_col"]',
        sample=sample,
        file=path,
        field=SPATIAL_FIELD,
    )


def _add_gene_symbols(var: pd.DataFrame) -> None:
    """Fill ``var["gene_symbols"]`` (in place) when var names are IDs and symbols sit elsewhere."""
    if "gene_symbols" in var or not _looks_like_ensembl(var.index):
        return
    for column in _SYMBOL_COLUMNS:
        if column in var:
            var["gene_symbols"] = var[column].astype(str).to_numpy()
            return


def _looks_like_ensembl(names: pd.Index) -> bool:
    # "Most" rather than "all": spike-ins or custom transgenes often sit among the genes.
    matches = sum(bool(_ENSEMBL_ID.match(str(name))) for name in names)
    return matches > len(names) / 2
