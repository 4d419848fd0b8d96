"""squidpy's ``ligrec`` between domains, offline, on the resource :func:`spaseg.tl.lr_scores`
uses."""

from __future__ import annotations

from os import PathLike
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._errors import InputError
from ._lr_data import _col_means, _data_symbols, _domains, _match, load_resource
from ._lr_null import _bh_grouped


def ligrec_domains(
    adata: AnnData,
    resource: str | PathLike | pd.DataFrame = "consensus",
    *,
    organism: Literal["human", "mouse"] = "human",
    domain_key: str = "domain",
    layer: str | None = None,
    gene_symbols: str | None = None,
    n_perms: int = 1000,
    threshold: float = 0.01,
    seed: int = 0,
    sample: str | None = None,
) -> pd.DataFrame:
    """squidpy's ``ligrec`` (CellPhoneDB's permutation test) between domains, offline.

    The resource is the one :func:`lr_scores` uses, given to squidpy as ``interactions`` so it
    never fetches omnipath. squidpy runs on the resource's genes only, named by their upper-case
    symbols; a complex is its subunit of lowest mean expression (squidpy's ``"min"`` policy).

    Parameters
    ----------
    adata, resource, organism, domain_key, layer, gene_symbols, sample
        As for :func:`lr_scores`.
    n_perms
        Permutations of the domain labels.
    threshold
        Pairs are not tested for a domain pair if a partner is expressed in a smaller fraction
        of that domain's spots.
    seed
        Seed of the permutations.

    Returns
    -------
    Long table: ``pair``, ``ligand``, ``receptor``, ``sender`` (domain of the ligand),
    ``receiver`` (domain of the receptor), ``mean`` (mean ligand and receptor expression),
    ``pval`` and ``padj`` (BH across pairs per domain pair); untested combinations left out.
    """
    import squidpy as sq

    domains = _domains(adata, domain_key, sample)
    if len(domains.names) < 2:
        raise InputError("ligrec needs at least 2 domains.", sample=sample, field=domain_key)
    table = load_resource(resource, organism=organism)
    symbols = _data_symbols(adata, gene_symbols)
    try:
        pairs = _match(table, symbols)
    except InputError as err:
        raise InputError(str(err), sample=sample, field="resource") from None
    x = sparse.csc_matrix(adata.layers[layer] if layer is not None else adata.X)
    # Complexes as squidpy's "min" policy has them (the subunit of lowest mean), resolved here
    # so that results map back to the resource's pair names.
    means = _col_means(x)
    chosen = np.array([e[np.argmin(means[e])] for e in pairs.entities])
    resolved = pairs.table[["ligand", "receptor"]].copy()
    resolved["source"] = np.asarray(symbols)[chosen[pairs.ligand]]
    resolved["target"] = np.asarray(symbols)[chosen[pairs.receptor]]
    genes = np.unique(chosen)
    sub = AnnData(
        X=sparse.csr_matrix(x[:, genes], dtype=np.float32),
        obs=pd.DataFrame(
            {domain_key: pd.Categorical(np.asarray(domains.names)[domains.codes])},
            index=adata.obs_names,
        ),
        var=pd.DataFrame(index=symbols[genes]),
    )
    result = sq.gr.ligrec(
        sub,
        cluster_key=domain_key,
        interactions=resolved[["source", "target"]].drop_duplicates(),
        use_raw=False,
        copy=True,
        n_perms=n_perms,
        threshold=threshold,
        seed=seed,
        corr_method=None,
        n_jobs=1,
        show_progress_bar=False,
    )
    stacked = {
        key: result[key].sparse.to_dense().stack([0, 1], future_stack=True)
        for key in ("means", "pvalues")
    }
    long = pd.DataFrame({"mean": stacked["means"], "pval": stacked["pvalues"]}).reset_index()
    long.columns = ["source", "target", "sender", "receiver", "mean", "pval"]
    long = resolved.merge(long.dropna(subset=["pval"]), on=["source", "target"])
    long.insert(0, "pair", long["ligand"] + "^" + long["receptor"])
    long = long.drop(columns=["source", "target"]).reset_index(drop=True)
    family = long.groupby(["sender", "receiver"]).ngroup().to_numpy()
    sizes = np.bincount(family) if len(family) else np.zeros(0, dtype=int)
    long["padj"] = _bh_grouped(long["pval"].to_numpy(), family, sizes)
    return long
