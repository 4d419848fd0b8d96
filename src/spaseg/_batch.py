"""The batch at a glance: one row of QC and domain metrics per section, and MultiQC files.

Written after every run, complete or not, from Snakemake's own process (the run summary's
handler), so it reads only the few fields it needs from the ``.h5ad`` files (h5py, and
AnnData's element reader to decode them), never whole matrices. Sections that stopped early
get the metrics of the steps they finished.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem

from ._atomic import atomic_path

#: Job steps whose run time (``{results}/benchmarks/{step}/{sample}.tsv``) goes in the table.
STEPS = ("load", "bin", "qc", "normalize_pca", "spaseg_train", "svg")
#: Spot filters of ``spaseg.pp.qc`` (``uns["qc"]["removed"]``), in the order they apply.
SPOT_FILTERS = ("min_genes_per_spot", "min_counts_per_spot", "max_pct_mt", "detected_quantile")


#: The metrics columns of ``qc_metrics.tsv`` (besides the sheet's and the run status).
METRICS = (
    "qc_gates_failed", "spots_read", "spots_after_qc", "genes_after_qc", "median_counts",
    "median_genes", "median_pct_mt", *[f"removed_{k}" for k in SPOT_FILTERS], "domains",
    "smallest_domain_share", "mean_domain_confidence", "device",
)  # fmt: skip


def _read(f: h5py.File, key: str):
    """One element of an open ``.h5ad`` (an obs column, a uns entry), or None if absent."""
    return read_elem(f[key]) if key in f else None


def _qc_metrics(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        n_spots = len(f["obs"][f["obs"].attrs["_index"]])
        n_genes = len(f["var"][f["var"].attrs["_index"]])
        counts, genes = _read(f, "obs/total_counts"), _read(f, "obs/n_genes_by_counts")
        pct_mt = _read(f, "obs/pct_counts_mt")
        removed = _read(f, "uns/qc/removed") or {}
    return {
        "spots_read": n_spots + sum(removed.get(k, 0) for k in SPOT_FILTERS),
        "spots_after_qc": n_spots,
        "genes_after_qc": n_genes,
        "median_counts": _median(counts),
        "median_genes": _median(genes),
        "median_pct_mt": _median(pct_mt),
        **{f"removed_{k}": removed.get(k, 0) for k in SPOT_FILTERS},
    }


def _median(values) -> float:
    return float(np.median(values)) if values is not None and len(values) else np.nan


def _failed_gates(path: Path) -> dict:
    """The QC gates (``qc_gates.tsv`` of rule qc) a section failed, comma-separated."""
    gates = pd.read_csv(path, sep="\t")
    return {"qc_gates_failed": ",".join(gates.loc[~gates["passed"].astype(bool), "gate"])}


def _domain_metrics(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        labels = _read(f, "obs/domain")
        confidence = _read(f, "obs/domain_confidence")
        device = _read(f, "uns/spaseg/device") or ""
    shares = pd.Series(labels).value_counts(normalize=True)
    return {
        "domains": len(shares),
        "smallest_domain_share": float(shares.min()) if len(shares) else np.nan,
        "mean_domain_confidence": float(np.mean(confidence)) if confidence is not None else np.nan,
        "device": device,
    }


def _step_seconds(results: Path, sample: str) -> dict:
    seconds = {}
    for step in STEPS:
        table = results / "benchmarks" / step / f"{sample}.tsv"
        if table.is_file():
            seconds[f"{step}_s"] = float(pd.read_csv(table, sep="\t")["s"].iloc[-1])
    return seconds


def section_metrics(results: str | os.PathLike, sample: str) -> dict:
    """QC and domain metrics of one section, from the files it has so far."""
    results = Path(results)
    row: dict = {"sample": sample}
    if (results / sample / "qc.h5ad").is_file():
        row |= _qc_metrics(results / sample / "qc.h5ad")
    if (results / sample / "qc_gates.tsv").is_file():
        row |= _failed_gates(results / sample / "qc_gates.tsv")
    if (results / sample / "domains.h5ad").is_file():
        row |= _domain_metrics(results / sample / "domains.h5ad")
    return row | _step_seconds(results, sample)


def batch_metrics(
    results: str | os.PathLike, summary: pd.DataFrame, sheet: pd.DataFrame
) -> pd.DataFrame:
    """One row per section: the sample sheet's columns, the run status and the metrics."""
    metrics = pd.DataFrame([section_metrics(results, s) for s in summary["sample"]])
    keep = [c for c in ("sample", "status", "failed_step", "error", "log") if c in summary]
    status = summary[keep].copy()
    table = sheet.reset_index(drop=True).merge(status, on="sample", how="right")
    table = table.merge(metrics, on="sample", how="left")
    for column in METRICS:  # every column, even when no section got that far
        if column not in table:
            table[column] = np.nan
    return table


def write_multiqc(table: pd.DataFrame, folder: str | os.PathLike) -> list[Path]:
    """MultiQC custom content: a General Statistics row per section and a bar plot of the
    spots QC kept and removed (``multiqc {results}`` finds the ``*_mqc.tsv`` files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats = table.reindex(columns=["sample", "spots_after_qc", "median_genes", "domains", "status"])
    general = folder / "spaseg_general_stats_mqc.tsv"
    header = (
        "# id: 'spaseg'\n"
        "# section_name: 'spaseg'\n"
        "# description: 'Spots after QC, median genes per spot, domains and run status.'\n"
        "# plot_type: 'generalstats'\n"
    )
    _write(general, header, stats.rename(columns={"sample": "Sample"}))
    bars = table.reindex(
        columns=["sample", "spots_after_qc", *[f"removed_{k}" for k in SPOT_FILTERS]]
    )
    bars = bars.dropna(subset=["spots_after_qc"]).rename(
        columns={"sample": "Sample", "spots_after_qc": "kept"}
    )
    bars.columns = [c.removeprefix("removed_") for c in bars.columns]
    bar = folder / "spaseg_qc_spots_mqc.tsv"
    header = (
        "# id: 'spaseg_qc_spots'\n"
        "# section_name: 'spaseg: spots kept and removed by QC'\n"
        "# description: 'Spots each QC filter removed (in the order they apply), and those kept.'\n"
        "# plot_type: 'bargraph'\n"
        "# pconfig:\n"
        "#     id: 'spaseg_qc_spots_plot'\n"
        "#     title: 'spaseg: spots kept and removed by QC'\n"
        "#     ylab: 'Spots'\n"
    )
    _write(bar, header, bars)
    return [general, bar]


def _write(path: Path, header: str, body: pd.DataFrame | str) -> None:
    """Write atomically (:func:`spaseg._atomic.atomic_path`): a table as TSV under
    ``header``, or text."""
    text = body if isinstance(body, str) else body.to_csv(sep="\t", index=False)
    with atomic_path(path) as tmp:
        tmp.write_text(header + text, encoding="utf-8")


#: Columns of the overview table, in order (those present).
OVERVIEW_COLUMNS = (
    "sample", "platform", "group", "status", "failed_step", "qc_gates_failed", "spots_read", "spots_after_qc",
    "genes_after_qc", "median_counts", "median_genes", "median_pct_mt", "domains",
    "smallest_domain_share", "mean_domain_confidence", "device", *[f"{s}_s" for s in STEPS],
)  # fmt: skip
#: A QC value outside these bounds is flagged (coloured) in the overview.
FLAGS = {"spots_after_qc": (100, None), "median_genes": (50, None), "median_pct_mt": (None, 30)}

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ cursor: pointer; background: #eee; }}
td.text {{ text-align: left; }}
.failed {{ background: #f8d0d0; }} .qc_failed {{ background: #f3d9f0; }}
.flag {{ background: #ffe7a8; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.grid figure {{ margin: 0; width: 240px; }} .grid img {{ width: 240px; }}
pre {{ background: #f4f4f4; padding: 6px; white-space: pre-wrap; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary} Click a column header to sort. Red: failed; violet: stopped by a QC gate
(qc_gates_failed); yellow: a QC value beyond {flags}.</p>
<table id="sections"><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<h2>Domain maps</h2><div class="grid">{thumbnails}</div>
{failures}
<script>
document.querySelectorAll("#sections th").forEach((th, col) => th.onclick = () => {{
  const body = th.closest("table").tBodies[0], up = th.dataset.up !== "1";
  const key = r => {{ const t = r.cells[col].innerText; const n = parseFloat(t);
                      return isNaN(n) ? t : n; }};
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : -1) * (up ? 1 : -1))
    .forEach(r => body.appendChild(r));
  th.dataset.up = up ? "1" : "0";
}});
</script></body></html>
"""


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<td></td>"
    if isinstance(value, float | np.floating):
        low, high = FLAGS.get(column, (None, None))
        flagged = (low is not None and value < low) or (high is not None and value > high)
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return f'<td class="{"flag" if flagged else ""}">{text}</td>'
    return f'<td class="text">{html.escape(str(value))}</td>'


def _thumbnail(results: Path, sample: str) -> str:
    png = results / sample / "domains.png"
    if not png.is_file():
        return ""
    data = base64.b64encode(png.read_bytes()).decode()
    name = html.escape(sample)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _failure(row: pd.Series, n_lines: int = 15) -> str:
    log = row.get("log")
    tail = ""
    if isinstance(log, str) and Path(log).is_file():
        tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-n_lines:])
    what = "stopped by QC gates" if row.get("status") == "qc_failed" else "failed"
    return (
        f"<h3>{html.escape(str(row['sample']))}: {what} at "
        f"{html.escape(str(row['failed_step']))}</h3><pre>{html.escape(tail)}</pre>"
    )


def write_overview(
    results: str | os.PathLike, table: pd.DataFrame, path: str | os.PathLike, title: str
) -> None:
    """One self-contained HTML page (opens offline): the sortable table of the sections,
    every section's domain map, and the last log lines of each failed section."""
    results = Path(results)
    columns = [c for c in OVERVIEW_COLUMNS if c in table] + [
        c for c in table if c not in OVERVIEW_COLUMNS and c not in ("log", "error", "missing")
        and not c.startswith("removed_") and c not in ("path", "n_domains", "bin_size", "z")
    ]  # fmt: skip
    rows = []
    stopped = table["status"].isin(["failed", "qc_failed"])
    for _, row in table.iterrows():
        status = row.get("status")
        style = f' class="{status}"' if status in ("failed", "qc_failed") else ""
        rows.append(f"<tr{style}>" + "".join(_cell(c, row[c]) for c in columns) + "</tr>")
    done = int((table["status"] == "done").sum())
    failures = [_failure(row) for _, row in table[stopped].iterrows()]
    page = _PAGE.format(
        title=html.escape(title),
        summary=f"{done} of {len(table)} sections done.",
        flags=", ".join(
            f"{k} {'<' if lo is not None else '>'} {lo if lo is not None else hi}"
            for k, (lo, hi) in FLAGS.items()
        ),
        head="".join(f"<th>{html.escape(c)}</th>" for c in columns),
        rows="\n".join(rows),
        thumbnails="".join(_thumbnail(results, s) for s in table["sample"]),
        failures=("<h2>Failed sections</h2>" + "".join(failures)) if failures else "",
    )
    _write(Path(path), "", page)


def write_batch(
    results: str | os.PathLike, summary: pd.DataFrame, sheet: pd.DataFrame
) -> pd.DataFrame:
    """``{results}/batch/qc_metrics.tsv``, ``overview.html`` and the MultiQC files under
    ``{results}/batch/``; with a ``project`` column in the sheet, also one overview per project
    (``{results}/batch/<project>/overview.html``) to hand to that customer alone."""
    folder = Path(results) / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    table = batch_metrics(results, summary, sheet)
    _write(folder / "qc_metrics.tsv", "", table.drop(columns=["log"], errors="ignore"))
    write_overview(results, table, folder / "overview.html", "spaseg batch overview")
    if "project" in table:
        for project, part in table.groupby(table["project"].fillna("no_project").astype(str)):
            title = f"spaseg overview: project {project}"
            write_overview(results, part, folder / project / "overview.html", title)
    write_multiqc(table, folder / "multiqc")
    return table
