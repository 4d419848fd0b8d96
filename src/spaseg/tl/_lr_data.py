"""What the L-R scores run on: the resource (a table shipped with liana, read offline, or a
file), its pairs matched to the data's genes (a complex is the minimum or geometric mean of its
subunits), and the domains."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._errors import InputError

log = logging.getLogger("spaseg")

ComplexPolicy = Literal["min", "gmean"]
ALL = "all"  # the domain label of whole-section summaries


# --- resource -----------------------------------------------------------------------------------


def _liana_table() -> Path:
    """The resource table inside the installed ``liana`` package (found without importing it)."""
    spec = importlib.util.find_spec("liana")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the L-R resources ship with the liana package, which is not installed: "
            "pip install 'spaseg[cci]', or give a CSV with columns ligand and receptor.",
            field="resource",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resource" / "omni_resource.csv"
    if not path.is_file():
        raise InputError(f"liana's resource table is missing: {path}", field="resource")
    return path


def load_resource(
    resource: str | PathLike | pd.DataFrame = "consensus",
    *,
    organism: Literal["human", "mouse"] = "human",
) -> pd.DataFrame:
    """Ligand-receptor pairs: a table shipped with ``liana``, a CSV/TSV file, or a data frame.

    Parameters
    ----------
    resource
        A liana resource name (``"consensus"``, ``"cellphonedb"``, ``"cellchatdb"``, ...), read
        offline from the installed package; a path to a CSV/TSV file; or a data frame. Files and
        frames need columns ``ligand`` and ``receptor``; complexes join subunits with ``_``.
    organism
        ``"mouse"`` turns ``"consensus"`` into liana's ``"mouseconsensus"`` (mouse orthologues).
        Other tables are human; genes are matched case-insensitively (see :func:`lr_scores`).

    Returns
    -------
    Data frame with columns ``ligand`` and ``receptor``, without duplicates.
    """
    if organism not in ("human", "mouse"):
        raise InputError(f"must be 'human' or 'mouse', not {organism!r}.", field="organism")
    file = None
    if isinstance(resource, pd.DataFrame):
        table = resource
    elif Path(resource).suffix.lower() in (".csv", ".tsv", ".txt") or Path(resource).is_file():
        file = Path(resource)
        if not file.is_file():
            raise InputError("resource file not found.", file=file, field="resource")
        table = pd.read_csv(file, sep=None, engine="python", dtype=str)
    else:
        name = str(resource).lower()
        if organism == "mouse" and name == "consensus":
            name = "mouseconsensus"
        omni = pd.read_csv(_liana_table(), index_col=False, dtype=str)
        if name not in set(omni["resource"]):
            known = ", ".join(sorted(set(omni["resource"])))
            raise InputError(
                f"unknown L-R resource {resource!r}; liana ships: {known}; or give a CSV path.",
                field="resource",
            )
        table = omni.loc[omni["resource"] == name, ["source_genesymbol", "target_genesymbol"]]
        table.columns = ["ligand", "receptor"]
    missing = {"ligand", "receptor"} - set(table.columns)
    if missing:
        raise InputError(
            f"needs columns ligand and receptor; missing {sorted(missing)} "
            f"(columns found: {', '.join(map(str, table.columns))}).",
            file=file,
            field="resource",
        )
    table = table[["ligand", "receptor"]].dropna().astype(str)
    table = table.apply(lambda col: col.str.strip())
    return table.drop_duplicates().reset_index(drop=True)


# --- matching the resource to the data ---------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    """Resource pairs found in the data, as indices into a list of entities (genes or complexes)."""

    table: pd.DataFrame  # ligand, receptor, ligand_genes, receptor_genes
    ligand: np.ndarray  # entity index per pair
    receptor: np.ndarray
    entities: list[np.ndarray]  # gene (column) indices of each entity's subunits


def _data_symbols(adata: AnnData, gene_symbols: str | None) -> pd.Index:
    """Upper-case symbol of each gene: ``var[gene_symbols]`` (or ``var["gene_symbols"]``)."""
    if gene_symbols is not None and gene_symbols not in adata.var:
        raise InputError(f"var has no column {gene_symbols!r}.", field="gene_symbols")
    key = gene_symbols or ("gene_symbols" if "gene_symbols" in adata.var else None)
    names = pd.Series(adata.var_names, index=adata.var_names)
    if key is not None:
        names = adata.var[key].astype(object).where(adata.var[key].notna(), names)
    return pd.Index(names.astype(str).str.upper())


def _match(resource: pd.DataFrame, symbols: pd.Index) -> _Pairs:
    """Entities (genes or ``_``-joined complexes) of each pair, as gene indices of the data."""
    position: dict[str, int] = {}
    for k, name in enumerate(symbols):
        position.setdefault(name, k)  # the first gene of a repeated symbol
    table = resource.copy()
    table["ligand"] = table["ligand"].str.upper()
    table["receptor"] = table["receptor"].str.upper()
    table = table.drop_duplicates(["ligand", "receptor"]).reset_index(drop=True)

    names = pd.Index(pd.unique(table[["ligand", "receptor"]].to_numpy().ravel()))
    subunits = [name.split("_") for name in names]
    found = np.array([all(s in position for s in subs) for subs in subunits])
    ok = table["ligand"].isin(names[found]) & table["receptor"].isin(names[found])
    if not ok.any():
        example = ", ".join(list(symbols[:3]))
        raise InputError(
            f"none of the {len(table)} pairs of the L-R resource has all its genes in the data "
            f"(data genes look like {example}). Gene symbols are read from var['gene_symbols'] "
            "when present, else var_names; for mouse data use organism 'mouse'.",
            field="resource",
        )
    if not ok.all():
        missing = sorted(set(names[~found]) & set(table.loc[~ok, ["ligand", "receptor"]].stack()))
        log.warning(
            "L-R resource: %d of %d pairs skipped, genes missing from the data (e.g. %s)",
            int((~ok).sum()),
            len(table),
            ", ".join(missing[:5]),
        )
    table = table[ok].reset_index(drop=True)
    kept = pd.Index(pd.unique(table[["ligand", "receptor"]].to_numpy().ravel()))
    entities = [np.array([position[s] for s in name.split("_")]) for name in kept]
    gene_names = np.array(["_".join(symbols[e]) for e in entities], dtype=object)
    index = pd.Series(np.arange(len(kept)), index=kept)
    ligand, receptor = index[table["ligand"]].to_numpy(), index[table["receptor"]].to_numpy()
    table["ligand_genes"], table["receptor_genes"] = gene_names[ligand], gene_names[receptor]
    return _Pairs(table, ligand, receptor, entities)


def _entity_expression(
    x: sparse.csc_matrix, entities: list[np.ndarray], policy: ComplexPolicy
) -> sparse.csc_matrix:
    """Spots x entities: a gene's expression, or a complex's minimum / geometric mean.

    Both are zero wherever a subunit is zero, so the geometric mean is computed on the support
    of the minimum only. Loops run over subunit positions (a handful), not over entities.
    """
    if policy not in ("min", "gmean"):
        raise InputError(f"must be 'min' or 'gmean', not {policy!r}.", field="complex_policy")
    size = np.array([len(e) for e in entities])
    padded = np.array([np.resize(e, size.max()) for e in entities])  # repeat subunits to pad
    out = x[:, padded[:, 0]]
    for k in range(1, padded.shape[1]):
        out = out.minimum(x[:, padded[:, k]])
    out = out.tocsc()
    out.eliminate_zeros()
    if policy == "gmean" and (size > 1).any():
        coo = out.tocoo()
        xr = x.tocsr()
        logs = np.zeros(coo.nnz)
        for k in range(padded.shape[1]):
            real = k < size[coo.col]  # padding positions do not count
            values = np.asarray(xr[coo.row[real], padded[coo.col[real], k]]).ravel()
            logs[real] += np.log(values)
        coo.data = np.exp(logs / size[coo.col]).astype(out.dtype)
        out = coo.tocsc()
    return out


def _subset_pairs(pairs: _Pairs, keep: np.ndarray) -> _Pairs:
    return _Pairs(
        pairs.table[keep].reset_index(drop=True),
        pairs.ligand[keep],
        pairs.receptor[keep],
        pairs.entities,
    )


def _reindex(pairs: _Pairs) -> _Pairs:
    """Renumber entities after dropping the unused ones (same order as ``np.unique``)."""
    used = np.unique(np.r_[pairs.ligand, pairs.receptor])
    new = np.full(len(pairs.entities), -1)
    new[used] = np.arange(len(used))
    return _Pairs(
        pairs.table, new[pairs.ligand], new[pairs.receptor], [pairs.entities[k] for k in used]
    )


def _pair_names(table: pd.DataFrame) -> np.ndarray:
    return (table["ligand"] + "^" + table["receptor"]).to_numpy()


# --- domains ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Domains:
    codes: np.ndarray
    names: list[str]
    labelled: bool  # False: the whole section is one unlabelled domain


def _domains(adata: AnnData, domain_key: str | None, sample) -> _Domains:
    if domain_key is None:
        return _Domains(np.zeros(adata.n_obs, dtype=np.int64), [ALL], False)
    if domain_key not in adata.obs:
        raise InputError(f"obs has no column {domain_key!r}.", sample=sample, field="domain_key")
    labels = adata.obs[domain_key]
    if labels.isna().any():
        raise InputError("has missing values.", sample=sample, field=domain_key)
    labels = pd.Categorical(labels.astype(str))
    names = list(labels.categories)
    if ALL in names:
        raise InputError(
            f"{ALL!r} is reserved for the whole section.", sample=sample, field=domain_key
        )
    return _Domains(labels.codes.astype(np.int64), names, True)


# Dense working arrays per chunk of spots (float32 entries): bounds memory at ~100 MB each.
_CHUNK_ENTRIES = 10_000_000


def _chunk_rows(width: int, n_spots: int) -> int:
    """Spots per chunk so that a dense chunk of ``width`` columns has ~``_CHUNK_ENTRIES``."""
    return int(np.clip(_CHUNK_ENTRIES // max(width, 1), 64, max(n_spots, 64)))


def _onehot(codes: np.ndarray, n_dom: int) -> sparse.csr_matrix:
    """Domains x spots, 1 where the spot is in the domain."""
    n = len(codes)
    return sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), (n_dom, n))


def _col_means(m: sparse.spmatrix) -> np.ndarray:
    return np.asarray(m.mean(axis=0)).ravel()
