"""Per-section quality control: QC metrics and the reference's filters."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from .._errors import InputError, QCGateError
from ..io._readers import count_problem

log = logging.getLogger("spaseg")


def _mito_mask(adata: AnnData) -> np.ndarray:
    names = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names
    return np.asarray(names.astype(str).str.match(r"(?i)^mt-"))


def _check_input(adata: AnnData, sample: str | None) -> None:
    """Raw counts in ``X``, at least one spot and one gene: what the readers guarantee, checked
    again for data that did not come through them."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = f"nothing to filter: {adata.n_obs} spots x {adata.n_vars} genes"
        raise InputError(msg, sample=sample, field="X")
    problem = count_problem(adata.X)
    if problem is not None:
        raise InputError(f"X must hold raw counts: {problem}", sample=sample, field="X")


def qc(
    adata: AnnData,
    *,
    min_spots_per_gene: int = 5,
    min_genes_per_spot: int = 0,
    min_counts_per_spot: int = 0,
    max_pct_mt: float | None = None,
    detected_quantile: float = 0.0,
    allow_empty: bool = False,
    sample: str | None = None,
) -> AnnData:
    """Compute QC metrics and filter spots and genes.

    Follows SpaSEG's preprocessing: genes must be detected in ``min_spots_per_gene`` spots;
    spots can be filtered by detected genes, total counts, mitochondrial percentage, and (as the
    reference does for Stereo-seq and Slide-seq) by dropping the spots below the
    ``detected_quantile`` quantile of detected genes.

    Parameters
    ----------
    adata
        Raw counts in ``X``.
    min_spots_per_gene
        Keep genes detected in at least this many spots.
    min_genes_per_spot, min_counts_per_spot
        Keep spots with at least this many detected genes / total counts.
    max_pct_mt
        Drop spots with a larger percentage of mitochondrial counts (``None``: no filter).
        Mitochondrial genes are those whose symbol starts with ``MT-`` or ``mt-``.
    detected_quantile
        Drop spots below this quantile of detected genes (0 disables; reference: 0.05 for
        Stereo-seq).
    sample
        Sample id, used in error messages.

    Returns
    -------
    A filtered copy with ``obs["n_genes_by_counts"]``, ``obs["total_counts"]``,
    ``obs["pct_counts_mt"]``, ``var["mt"]``, ``var["n_cells_by_counts"]`` and ``uns["qc"]``
    (thresholds and how many spots and genes each removed).

    Raises
    ------
    InputError
        If ``X`` is empty or does not hold raw counts, or (unless ``allow_empty``) the filters
        leave no spots or no genes.
    """
    _check_input(adata, sample)
    adata = adata.copy()
    adata.var["mt"] = _mito_mask(adata)
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    obs = adata.obs
    removed: dict[str, int] = {}

    keep = np.ones(adata.n_obs, dtype=bool)
    spot_filters = {
        "min_genes_per_spot": obs["n_genes_by_counts"].to_numpy() >= min_genes_per_spot,
        "min_counts_per_spot": obs["total_counts"].to_numpy() >= min_counts_per_spot,
    }
    if max_pct_mt is not None:
        spot_filters["max_pct_mt"] = obs["pct_counts_mt"].to_numpy() <= max_pct_mt
    if detected_quantile > 0:
        cut = np.quantile(obs["n_genes_by_counts"].to_numpy(), detected_quantile)
        spot_filters["detected_quantile"] = obs["n_genes_by_counts"].to_numpy() >= cut
    for name, ok in spot_filters.items():
        removed[name] = int((keep & ~ok).sum())
        keep &= ok
    if not keep.any() and not allow_empty:
        worst = max(removed, key=removed.get)
        raise InputError(
            f"QC removed all {adata.n_obs} spots (threshold {worst} removed {removed[worst]}); "
            "relax the qc settings in the config.",
            sample=sample,
            field=f"qc.{worst}",
        )
    adata = adata[keep].copy()

    genes_ok = np.asarray((adata.X > 0).sum(axis=0)).ravel() >= min_spots_per_gene
    removed["min_spots_per_gene"] = int((~genes_ok).sum())
    if not genes_ok.any() and not allow_empty:
        raise InputError(
            f"QC removed all {adata.n_vars} genes: none is detected in {min_spots_per_gene} spots.",
            sample=sample,
            field="qc.min_spots_per_gene",
        )
    adata = adata[:, genes_ok].copy()

    adata.uns["qc"] = {
        "thresholds": {
            "min_spots_per_gene": min_spots_per_gene,
            "min_genes_per_spot": min_genes_per_spot,
            "min_counts_per_spot": min_counts_per_spot,
            "max_pct_mt": "none" if max_pct_mt is None else max_pct_mt,
            "detected_quantile": detected_quantile,
        },
        "removed": removed,
        "n_spots": adata.n_obs,
        "n_genes": adata.n_vars,
    }
    log.info("QC kept %d spots x %d genes (removed: %s)", adata.n_obs, adata.n_vars, removed)
    return adata


#: The QC gates (:func:`qc_gates`): what each measures, and whether its threshold is a floor.
GATES = {
    "min_spots": ("spots after QC", True),
    "min_median_genes": ("median genes per spot", True),
    "max_median_pct_mt": ("median % mitochondrial counts", False),
}


def qc_gates(
    adata: AnnData,
    *,
    min_spots: int | None = 100,
    min_median_genes: float | None = 50,
    max_median_pct_mt: float | None = None,
) -> pd.DataFrame:
    """Whole-section checks after :func:`qc`: does this section look like a slide worth
    segmenting?

    Spot filters remove bad spots; a gate judges what is left, so that an obviously failed slide
    (a handful of spots, almost no genes per spot) stops before training. ``None`` turns a gate
    off.

    Parameters
    ----------
    adata
        The output of :func:`qc` (``obs["n_genes_by_counts"]``, ``obs["pct_counts_mt"]``).
    min_spots
        Fewest spots after QC.
    min_median_genes
        Lowest median number of detected genes per spot.
    max_median_pct_mt
        Highest median percentage of mitochondrial counts per spot.

    Returns
    -------
    One row per gate that is on: ``gate``, ``metric``, ``value``, ``threshold``, ``passed``.
    A section without spots has median values of 0 and fails every floor.
    """
    obs = adata.obs
    values = {
        "min_spots": adata.n_obs,
        "min_median_genes": _median(obs, "n_genes_by_counts"),
        "max_median_pct_mt": _median(obs, "pct_counts_mt"),
    }
    thresholds = {
        "min_spots": min_spots,
        "min_median_genes": min_median_genes,
        "max_median_pct_mt": max_median_pct_mt,
    }
    rows = []
    for gate, threshold in thresholds.items():
        if threshold is None:
            continue
        metric, floor = GATES[gate]
        value = values[gate]
        passed = value >= threshold if floor else value <= threshold
        rows.append(dict(gate=gate, metric=metric, value=value, threshold=threshold, passed=passed))
    return pd.DataFrame(rows, columns=["gate", "metric", "value", "threshold", "passed"])


def _median(obs: pd.DataFrame, column: str) -> float:
    return float(np.median(obs[column])) if len(obs) and column in obs else 0.0


def check_gates(
    gates: pd.DataFrame,
    *,
    on_fail: Literal["skip", "continue"] = "skip",
    sample: str | None = None,
    file: str | None = None,
) -> list[str]:
    """Act on the table of :func:`qc_gates`: raise for a failed gate, or (``on_fail=
    "continue"``) return one line per failed gate with its value and threshold.

    Raises
    ------
    QCGateError
        With ``on_fail="skip"`` when a gate failed; it names every failed gate.
    """
    failed = gates[~gates["passed"].astype(bool)]
    reasons = [
        f"{row.metric} {row.value:g} {'<' if GATES[row.gate][1] else '>'} {row.threshold:g} "
        f"(qc.gates.{row.gate})"
        for row in failed.itertuples()
    ]
    if reasons and on_fail == "skip":
        raise QCGateError(
            f"stopped after QC, not trained (qc.on_fail: skip): {'; '.join(reasons)}",
            sample=sample,
            file=file,
            field=f"qc.gates.{failed['gate'].iloc[0]}",
        )
    return reasons
