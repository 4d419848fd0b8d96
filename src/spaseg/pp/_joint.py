"""Joint normalisation and PCA of several sections (SpaSEG's multi-slice preprocessing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from os import PathLike

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ._pca import normalize_pca

log = logging.getLogger("spaseg")


def _named_sections(
    adatas: Sequence[AnnData] | Mapping[str, AnnData], sample_key: str
) -> dict[str, AnnData]:
    """Section name -> AnnData: the mapping's keys, else each section's own ``obs[sample_key]``."""
    if isinstance(adatas, Mapping):
        return {str(k): v for k, v in adatas.items()}
    names = []
    for i, adata in enumerate(adatas):
        values = adata.obs[sample_key].unique() if sample_key in adata.obs else []
        names.append(str(values[0]) if len(values) == 1 else f"section{i}")
    if len(set(names)) < len(names):
        raise InputError(
            f"section names {names} are not unique; pass a dict of name -> AnnData.",
            field=sample_key,
        )
    return dict(zip(names, adatas, strict=True))


def shared_genes(sections: Mapping[str, AnnData]) -> pd.Index:
    """Genes (``var_names``) present in every section, in the order of the first."""
    genes = next(iter(sections.values())).var_names
    for adata in sections.values():
        genes = genes[genes.isin(adata.var_names)]
    return genes


def joint_normalize_pca(
    adatas: Sequence[AnnData] | Mapping[str, AnnData],
    *,
    n_comps: int = 15,
    target_sum: float | None = None,
    scale: bool = False,
    genes: Sequence[str] | str | PathLike | None = None,
    exclude_genes: Sequence[str] | str | PathLike | None = None,
    min_program_genes: float | None = None,
    harmony: bool = False,
    min_shared_genes: int = 50,
    sample_key: str = "sample",
    seed: int = 0,
    group: str | None = None,
) -> AnnData:
    """Concatenate sections on their shared genes, normalise and compute PCs jointly.

    As SpaSEG's multi-slice mode: an inner join of the genes, one total-count normalisation
    (median over all spots), ``log1p`` and one PCA, so the components mean the same in every
    section. SpaSEG standardises each section's PCs later (``spaseg.tl.spaseg(...,
    sample_key=...)``), which removes per-section shifts and scales; ``harmony`` also corrects
    the PCs for section effects (``harmonypy``).

    Parameters
    ----------
    adatas
        Raw counts in ``X`` (after :func:`spaseg.pp.qc`) of each section, as a dict
        name -> AnnData or a list (names from each section's ``obs[sample_key]``, else
        ``section0``, ``section1``, ...). Order is kept: it is the section order.
    n_comps, target_sum, scale, genes, exclude_genes, min_program_genes, seed
        As in :func:`spaseg.pp.normalize_pca` (``genes``: a panel, among the shared genes).
    harmony
        Also write Harmony-corrected PCs to ``obsm["X_pca_harmony"]``.
    min_shared_genes
        Fewest shared genes accepted; fewer means the sections were measured on different
        panels or annotated with different gene ids.
    sample_key
        ``obs`` column that receives the section names.
    seed
        Random state of the PCA solver and of Harmony.
    group
        Group name, for messages.

    Returns
    -------
    One AnnData of all spots on the shared genes: ``obs[sample_key]`` (categorical, in
    section order), ``obs_names`` = ``"<spot>-<section>"``, log-normalised ``X``,
    ``layers["counts"]``, ``obsm["X_pca"]`` (and ``obsm["X_pca_harmony"]``), the sections'
    shared ``obsm`` (``spatial``), every ``obs`` column of any section, and
    ``uns["joint_pca"]`` (samples, genes per section, shared genes, harmony, ``use_rep``).
    """
    sections = _named_sections(adatas, sample_key)
    where = f"group {group!r}: " if group is not None else ""
    if not sections:
        raise InputError(f"{where}no sections given.", field=sample_key)
    shared = shared_genes(sections)
    counts = {name: int(a.n_vars) for name, a in sections.items()}
    if len(shared) < min_shared_genes:
        raise InputError(
            f"{where}the sections share only {len(shared)} genes (at least {min_shared_genes} "
            f"needed; genes per section: {counts}). Check that all use the same gene ids "
            "(var_names) and gene panel.",
            field="var_names",
        )
    log.info("%s%d sections, %d shared genes of %s", where, len(sections), len(shared), counts)

    joint = ad.concat(
        {name: a[:, shared] for name, a in sections.items()},
        label=sample_key,
        index_unique="-",
        join="inner",
        merge="same",
    )
    # The inner join above also drops obs columns missing in some section (e.g. annotations
    # of only the labelled sections); keep them, empty where a section lacks them.
    obs = pd.concat([a.obs for a in sections.values()], join="outer")
    obs.index = joint.obs_names
    for column in obs.columns.difference(joint.obs.columns):
        joint.obs[column] = obs[column]
    joint.obs[sample_key] = pd.Categorical(joint.obs[sample_key], categories=list(sections))

    normalize_pca(
        joint,
        n_comps=n_comps,
        target_sum=target_sum,
        scale=scale,
        genes=genes,
        exclude_genes=exclude_genes,
        min_program_genes=min_program_genes,
        seed=seed,
        sample=group,
    )
    use_rep = "X_pca"
    if harmony and len(sections) > 1:
        start = time.perf_counter()  # ~30 s at a million spots: worth a line in the log
        joint.obsm["X_pca_harmony"] = _harmony(joint, sample_key, seed)
        use_rep = "X_pca_harmony"
        log.info(
            "%sHarmony-corrected the PCs of %d spots in %.1f s",
            where,
            joint.n_obs,
            time.perf_counter() - start,
        )
    elif harmony:
        log.info("%sone section: nothing for Harmony to correct", where)
    joint.uns["joint_pca"] = {
        "samples": np.asarray(list(sections)),
        "genes_per_sample": np.asarray(list(counts.values())),
        "n_shared_genes": len(shared),
        "harmony": bool(harmony),
        "use_rep": use_rep,
    }
    return joint


def _harmony(adata: AnnData, sample_key: str, seed: int) -> np.ndarray:
    try:
        import harmonypy  # optional: only this path needs it
    except ImportError as err:
        raise InputError(
            "harmony=True needs harmonypy (pip install harmonypy, or the [workflow] extra).",
            field="harmony",
        ) from err

    pcs = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
    result = harmonypy.run_harmony(
        pcs, adata.obs[[sample_key]], sample_key, random_state=seed, verbose=False
    ).Z_corr
    result = np.asarray(result)
    # harmonypy < 0.1 returned PCs x cells, later versions cells x PCs.
    return (result if result.shape[0] == adata.n_obs else result.T).astype(np.float32)
