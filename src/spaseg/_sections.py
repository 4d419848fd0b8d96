"""The sections of a joint AnnData: their names and their spots."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ._errors import InputError


def sections(adata: AnnData, key: str | None) -> tuple[list[str], list[np.ndarray]]:
    """Names of the sections in ``obs[key]`` and the spot indices of each.

    Names come in the order of the column's categories when it is categorical (empty ones
    left out), else in order of first appearance. ``key=None``: one unnamed section of all
    spots.
    """
    if key is None:
        return [""], [np.arange(adata.n_obs)]
    if key not in adata.obs:
        raise InputError(f"obs has no column {key!r} naming sections.", field=f"obs['{key}']")
    column = adata.obs[key]
    if column.isna().any():
        raise InputError("some spots have no section.", field=f"obs['{key}']")
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        present = np.unique(codes)
        names = [column.cat.categories[c] for c in present]
        members = [np.flatnonzero(codes == c) for c in present]
    else:
        values = column.to_numpy()
        names = list(pd.unique(values))
        codes = pd.Categorical(values, categories=names).codes
        members = [np.flatnonzero(codes == c) for c in range(len(names))]
    return [str(n) for n in names], members
