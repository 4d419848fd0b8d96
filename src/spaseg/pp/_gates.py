"""QC gates: whole-section checks after :func:`spaseg.pp.qc`, and the workflow's use of them.

Kept apart from the filters (no scanpy here): Snakemake's own process imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._errors import QCGateError

if TYPE_CHECKING:  # anndata takes a second to import; Snakemake's process needs none of it
    from anndata import AnnData


def qc_filters(settings: dict) -> dict:
    """The arguments of :func:`spaseg.pp.qc` in a workflow config's ``qc`` section: everything but the
    gates (``gates``, ``on_fail``: :func:`qc_gates`, :func:`check_gates`)."""
    return {k: v for k, v in settings.items() if k not in ("gates", "on_fail")}


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
    """Whole-section checks after :func:`spaseg.pp.qc`: does this section look like a slide worth
    segmenting?

    Spot filters remove bad spots; a gate judges what is left, so that an obviously failed slide
    (a handful of spots, almost no genes per spot) stops before training. ``None`` turns a gate
    off.

    Parameters
    ----------
    adata
        The output of :func:`spaseg.pp.qc` (``obs["n_genes_by_counts"]``, ``obs["pct_counts_mt"]``).
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
