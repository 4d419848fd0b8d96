"""Config and sample sheet: load and validate before any job runs; input functions."""

import os
import re
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import yaml
from snakemake.common.tbdstring import TBDString
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# This checkout's library, light parts only (no scanpy, anndata or torch in Snakemake's process).
sys.path.insert(0, str(Path(workflow.basedir, "src")))
from spaseg._resources import (
    h5ad_size,
    predict_bin_mem_mb,
    predict_bin_runtime_min,
    predict_c2l_map_runtime_min,
    predict_mem_mb,
    predict_runtime_min,
)
from spaseg._atomic import atomic_path
from spaseg._errors import QCGateError
from spaseg.pp._gates import check_gates, qc_filters


def python_object_in(value, key=""):
    """(key, value) of the first value that is not plain YAML data, else None.

    Snakemake's YAML loader refuses the Python tags that run code (!!python/object/apply:...),
    but builds objects for others (!!python/name:os.system, !!python/tuple): none of them
    belongs in a config.
    """
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        plain = isinstance(value, (str, int, float, bool)) or value is None
        return None if plain else (key, value)
    for name, item in items:
        found = python_object_in(item, f"{key}.{name}" if key else str(name))
        if found:
            return found
    return None


if found := python_object_in(config):
    raise WorkflowError(
        f"config key {found[0]!r}: {type(found[1]).__name__} {found[1]!r} is not plain YAML "
        "data (text, number, true/false, null, list or mapping); Python tags such as "
        "!!python/name or !!python/tuple are not allowed"
    )
validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"]
SAMPLE_SHEET = config["samples"]


def results_unwritable(why):
    return WorkflowError(
        f"config field 'results': cannot write to the results directory {RESULTS!r} ({why}); "
        "choose a writable directory with free space."
    )


def check_results_writable():
    """Stop before the DAG is built (Snakemake would scan the folder and fail with a raw
    traceback) when the results directory cannot be made or written: its nearest existing
    ancestor must be a writable folder."""
    existing = Path(RESULTS).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "a file, not a folder" if not existing.is_dir() else "not writable"
        raise results_unwritable(f"{existing} is {what}")


check_results_writable()
SAMPLES_SCHEMA = Path(workflow.basedir, "workflow", "schemas", "samples.schema.yaml")
# Files each section ends with; the rest ({results}/{sample}/raw.h5ad) is temporary.
FINAL_FILES = [
    "qc.h5ad",
    "qc.png",
    "pca.h5ad",
    "domains.h5ad",
    "domains.png",
    "svg.tsv",
    "svg.png",
]


def sheet_error(message, *, sample=None, field=None):
    """A WorkflowError worded like spaseg.InputError ("sample ..., file ..., field ...: ...").

    Not spaseg.InputError itself: importing spaseg would load torch and scanpy into the
    Snakemake process, which with --sdm conda need not have them.
    """
    where = [f"sample {sample!r}"] if sample is not None else []
    where.append(f"file {SAMPLE_SHEET!r}")
    if field is not None:
        where.append(f"field {field!r}")
    return WorkflowError(f"{', '.join(where)}: {message}")


def as_n_domains(value):
    """A sample sheet's n_domains cell: an integer, "auto", or left as found (the schema
    then names it)."""
    text = str(value).strip()
    return int(text) if text.isdigit() else (value if pd.isna(value) else text)


def sheet_n_domains(value):
    """A validated n_domains cell as spaseg takes it: "auto" or an int (a column with gaps
    reads as float)."""
    return value if value == "auto" else int(value)


NUMERIC_COLUMNS = ("n_domains", "bin_size", "z")
#: obs columns the workflow writes itself; metadata columns must not take these names.
RESERVED_OBS = {"domain", "domain_confidence", "array_row", "array_col", "in_tissue", "bin_x",
                "bin_y", "n_genes_by_counts", "total_counts", "total_counts_mt", "pct_counts_mt"}  # fmt: skip


SAMPLES_SCHEMA_DATA = yaml.safe_load(SAMPLES_SCHEMA.read_text())


def metadata_columns(samples):
    """The sheet's extra columns (donor, condition, slide, ...), beyond the schema's own."""
    return [c for c in samples.columns if c not in SAMPLES_SCHEMA_DATA["properties"]]


def sample_metadata(wildcards):
    """{column: value} of the section's extra sheet columns (empty cells left out)."""
    row = samples.loc[wildcards.sample]
    return {c: str(row[c]) for c in METADATA_COLUMNS if pd.notna(row[c])}


def load_samples(sheet):
    """Read the sample sheet and check it, each problem named by sample and column."""
    if not Path(sheet).is_file():
        raise sheet_error("sample sheet not found (config key 'samples')")
    # Every column is text but the numeric ones, so extra metadata ("01", "1e3") stays as
    # written.
    header = pd.read_csv(sheet, sep="\t", comment="#", nrows=0).columns.str.strip()
    text_columns = {c: str for c in header if c not in NUMERIC_COLUMNS}
    samples = pd.read_csv(sheet, sep="\t", comment="#", dtype=text_columns)
    samples.columns = samples.columns.str.strip()
    if "n_domains" in samples and samples["n_domains"].dtype == object:
        # "auto" beside numbers reads as text: numbers back to integers for the schema.
        samples["n_domains"] = samples["n_domains"].map(as_n_domains)
    if samples.empty:
        raise sheet_error("no samples listed")
    schema = SAMPLES_SCHEMA_DATA

    names = (
        ", ".join(map(repr, samples["sample"].dropna())) if "sample" in samples else "?"
    )
    for column in schema["required"]:
        if column not in samples:
            found = ", ".join(samples.columns)
            msg = (
                f"required column missing for samples {names} (columns found: {found})"
            )
            raise sheet_error(msg, field=column)
        for row in samples.index[samples[column].isna()]:
            sample = samples.at[row, "sample"]
            raise sheet_error(
                f"empty value in row {row + 1}",
                sample=None if pd.isna(sample) else sample,
                field=column,
            )

    repeated = samples["sample"][samples["sample"].duplicated()]
    if len(repeated):
        sample = repeated.iloc[0]
        count = int((samples["sample"] == sample).sum())
        raise sheet_error(
            f"listed {count} times; sample names must be unique",
            sample=sample,
            field="sample",
        )

    # Row by row with the schema, so the message names the sample (validate() names a row index).
    validator = jsonschema.Draft202012Validator(schema)
    for record in samples.to_dict("records"):
        record = {key: value for key, value in record.items() if pd.notna(value)}
        error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        if error is not None:
            field = error.absolute_path[0] if error.absolute_path else None
            about = schema["properties"].get(field, {}).get("description")
            message = f"{error.message} ({field}: {about})" if about else error.message
            raise sheet_error(message, sample=record["sample"], field=field)
        if "bin_size" in record and record["platform"] != "stereo-seq":
            raise sheet_error(
                f"bin_size is for stereo-seq sections only (platform is {record['platform']!r})",
                sample=record["sample"],
                field="bin_size",
            )
        if not Path(record["path"]).exists():
            raise sheet_error(
                f"input not found: {record['path']} (relative paths start at {Path.cwd()})",
                sample=record["sample"],
                field="path",
            )
        # Visium reads a Space Ranger folder, every other platform one file.
        folder = record["platform"] == "visium"
        if Path(record["path"]).is_dir() != folder:
            want = "a folder (Space Ranger outs/)" if folder else "a file"
            raise sheet_error(
                f"platform {record['platform']!r} reads {want}, but {record['path']} is not one",
                sample=record["sample"],
                field="path",
            )

    for column in metadata_columns(samples):
        if column in RESERVED_OBS or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", column):
            raise sheet_error(
                "extra columns are carried into obs: a name of letters, digits and '_' "
                f"starting with a letter, and not one the workflow writes ({column!r})",
                field=column,
            )
    validate(samples, schema="../schemas/samples.schema.yaml")
    return samples.set_index("sample", drop=False)


samples = load_samples(SAMPLE_SHEET)
METADATA_COLUMNS = metadata_columns(samples)


wildcard_constraints:
    # Only listed samples, so no other path under {results}/ (e.g. groups/...) matches {sample}.
    sample="|".join(re.escape(name) for name in samples.index),


def final_outputs():
    return (
        expand(f"{RESULTS}/{{sample}}/{{file}}", sample=samples.index, file=FINAL_FILES)
        + cci_outputs()
    )


def sample_path(wildcards):
    return samples.loc[wildcards.sample, "path"]


def sample_platform(wildcards):
    return samples.loc[wildcards.sample, "platform"]


def is_stereoseq(wildcards):
    return sample_platform(wildcards) == "stereo-seq"


def sample_bin_size(wildcards):
    """Stereo-seq bin edge in DNBs: the sheet's bin_size, else config stereo_seq.bin_size."""
    bin_size = samples.loc[wildcards.sample].get("bin_size")
    if pd.notna(bin_size):
        return int(bin_size)
    return config["stereo_seq"]["bin_size"]


def qc_input(wildcards):
    """Stereo-seq sections enter QC as bins (rule bin), all others as read by rule load."""
    name = "binned.h5ad" if is_stereoseq(wildcards) else "raw.h5ad"
    return f"{RESULTS}/{wildcards.sample}/{name}"


def qc_params(wildcards):
    """The config's qc filters; Stereo-seq bins use stereo_seq.detected_quantile instead."""
    params = qc_filters(config["qc"])
    if is_stereoseq(wildcards):
        params["detected_quantile"] = config["stereo_seq"]["detected_quantile"]
    return params


# Memory and run time from each job's input (spaseg._resources, fitted and checked by
# benchmarks/resources.py): Snakemake's own process reads only .h5ad headers for them.

#: The steps of a section's first cluster job (group "preprocess") that read its data.
PREPROCESS = ("qc", "plot_qc", "normalize_pca")


def h5ad_input_size(input, key=None):
    """(spots, stored count values, genes) of the .h5ad files a job reads (only input `key`
    when given): spots and values summed, the largest gene count; None while one is still
    to be made (Snakemake asks again, with the file there, before the job runs).
    """
    files = [
        f for f in (input if key is None else [input[key]]) if str(f).endswith(".h5ad")
    ]
    if not all(Path(f).exists() for f in files):
        return None
    sizes = [h5ad_size(f) for f in files]
    return sum(s[0] for s in sizes), sum(s[2] for s in sizes), max(s[1] for s in sizes)


def fitted_mem_mb(model, key=None):
    """resources: mem_mb from the job's input (only input `key` when given), with the model
    fitted for step `model` (for a joint rule, that of the same per-section step,
    spaseg._resources.JOINT); twice as much on a retry after an out-of-memory kill. "<TBD>"
    in a dry run before the input exists; a cluster group job then takes its size from load
    (load_mem_mb)."""

    def mem_mb(wildcards, input, attempt):
        size = h5ad_input_size(input, key)
        return TBDString() if size is None else predict_mem_mb(model, *size) * attempt

    return mem_mb


def fitted_runtime(model, key=None):
    """resources: runtime (minutes) from the job's input, like fitted_mem_mb."""

    def runtime(wildcards, input, attempt):
        size = h5ad_input_size(input, key)
        return (
            TBDString()
            if size is None
            else predict_runtime_min(model, *size[:2]) * attempt
        )

    return runtime


def load_mem_mb(wildcards, input, attempt):
    """From an .h5ad input's header; other formats (Visium, tables: Visium-sized) get a flat
    4 GB. On a cluster, load starts the section's first job (group "preprocess"), whose later
    steps cannot be sized before load has read the data: it asks for the largest of them.
    """
    if sample_platform(wildcards) != "h5ad":
        return 4000 * attempt
    steps = ("load",) if workflow.local_exec else ("load", *PREPROCESS)
    try:
        n_obs, _, n_values = h5ad_size(input[0])
    except Exception:  # not a readable .h5ad: rule load fails on it with a clear error
        return 4000 * attempt
    return max(predict_mem_mb(step, n_obs, n_values) for step in steps) * attempt


def c2l_map_runtime(wildcards, input, attempt):
    """resources: runtime (minutes) for c2l_map, the mapping: every epoch up to
    cell2location.map_max_epochs on the section's spots x genes (a limit: the plateau stop
    usually ends training sooner)."""
    size = h5ad_input_size(input, "spots")
    if size is None:
        return TBDString()
    n_obs, _, n_vars = size
    return predict_c2l_map_runtime_min(n_obs, n_vars, C2L["map_max_epochs"]) * attempt


def bin_mem_mb(wildcards, input, attempt):
    return predict_bin_mem_mb(input.size_mb) * attempt


def bin_runtime(wildcards, input, attempt):
    return predict_bin_runtime_min(input.size_mb) * attempt


def pass_qc_gates(gates, passed, log, on_fail, sample):
    """Rule qc_gate's work: stop a section that failed a QC gate (spaseg.pp.check_gates), or
    with qc.on_fail: continue note it and go on; the gates table becomes `passed`. Run inside
    Snakemake (a run block): a separate Python process would cost 3 s per section for a
    table of four rows."""
    table = pd.read_csv(gates, sep="\t")
    with open(log, "w") as handle:
        handle.write(f"QC gates:\n{table.to_string(index=False)}\n")
        try:
            failed = check_gates(table, on_fail=on_fail, sample=sample, file=gates)
        except QCGateError as err:
            handle.write(f"QCGateError: {err}\n")  # the line the run summary reports
            raise
        if failed:
            handle.write(
                f"failed QC gates, going on (qc.on_fail: continue): {'; '.join(failed)}\n"
            )
    with atomic_path(passed) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def spaseg_params(wildcards):
    """The config's spaseg section, with the sample sheet's n_domains taking precedence."""
    params = dict(config["spaseg"])
    n_domains = samples.loc[wildcards.sample].get("n_domains")
    if pd.notna(n_domains):
        params["n_domains"] = sheet_n_domains(n_domains)
    return params


# --- run summary (rule run_summary, onsuccess/onerror in summary.smk) ---


from snakemake.io import is_flagged
from snakemake.logging import logger

RUN_SUMMARY = f"{RESULTS}/run_summary.tsv"


def section_outputs(sample):
    """Final files of one section (out of final_outputs())."""
    return [f for f in final_outputs() if f.startswith(f"{RESULTS}/{sample}/")]


def finished_outputs(wildcards):
    """Final files of the sections, and of the groups, that have them all, as found when the
    DAG is built."""
    units = [section_outputs(sample) for sample in samples.index]
    prefixes = [f"{RESULTS}/groups/{group}/" for group in groups]
    units += [[f for f in group_outputs() if f.startswith(p)] for p in prefixes]
    return [f for files in units if all(Path(f).exists() for f in files) for f in files]


def failed_step(sample):
    """(rule, log) of the step at which a section stopped, or None if none ran.

    Of this section's steps that ran (their log exists) without leaving their output, the
    last one. Temporary outputs prove nothing (deleted once used): a step with only those
    is a candidate whenever it ran.
    """
    stopped = []
    for step in workflow.rules:
        if "sample" not in step.wildcard_names or not step.log:
            continue
        log = Path(step.log[0].apply_wildcards({"sample": sample}))
        kept = [f for f in step.output if not is_flagged(f, "temp")]
        outputs = [f.apply_wildcards({"sample": sample}) for f in kept]
        if log.exists() and not (outputs and all(Path(f).exists() for f in outputs)):
            stopped.append((log.stat().st_mtime, step.name, str(log)))
    return max(stopped)[1:] if stopped else None


# The line a Python traceback ends with: "[module.]SomeError: message".
ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+)$"
)


def log_error(log, tail_bytes=65536):
    """The last error line of a job's log, without the module path ("" if none).

    For bad input that is spaseg's InputError naming sample, file, field and problem: the
    line the user should read first, copied into the run summary.
    """
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if match := ERROR_LINE.match(line.strip()):
            return f"{match[1]}: {match[2]}"
    return ""


def section_status(sample):
    prefix = f"{RESULTS}/{sample}/"
    missing = [
        f[len(prefix) :] for f in section_outputs(sample) if not Path(f).exists()
    ]
    step, log = failed_step(sample) or ("", "")
    status = "done" if not missing else "failed" if step else "not run"
    if status == "failed" and step == "qc_gate":
        status = "qc_failed"
    return {
        "sample": sample,
        "status": status,
        "failed_step": step if missing else "",
        "log": log if missing else "",
        "missing": ",".join(missing),
        "error": log_error(log) if missing and log else "",
    }


def write_run_summary(path):
    """Write the summary table to `path` (atomically); return its rows."""
    table = pd.DataFrame([section_status(sample) for sample in samples.index])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(path).with_name(f".{Path(path).name}.partial")
    table.to_csv(partial, sep="\t", index=False)
    os.replace(partial, path)
    return table


BATCH = f"{RESULTS}/batch"


def write_batch_metrics(table):
    """{results}/batch/: qc_metrics.tsv, overview.html (and one per project) and the MultiQC
    files, after every run, complete or not; then MultiQC's report when multiqc.run is on.

    spaseg._batch reads only a few fields of the h5ad files; a Snakemake without its
    libraries (another env) skips this with a warning rather than failing the run's end.
    """
    try:
        from spaseg._batch import write_batch

        write_batch(RESULTS, table, samples)
    except Exception as err:  # never let the summary of a run fail the run
        logger.warning(f"batch overview not written ({type(err).__name__}: {err})")
        return
    logger.info(
        f"Batch overview: {BATCH}/overview.html (metrics: {BATCH}/qc_metrics.tsv)"
    )
    # A complete run got MultiQC's report from rule multiqc, which waits for every section;
    # an incomplete one gets it here, for the sections there are.
    if config["multiqc"]["run"] and (table["status"] != "done").any():
        run_multiqc()


def run_multiqc():
    """MultiQC on the batch's custom-content files: {results}/batch/multiqc_report.html, with
    the multiqc Snakemake runs beside (make install puts it in the .venv)."""
    import shutil
    import subprocess

    multiqc = shutil.which("multiqc") or shutil.which(
        "multiqc", path=Path(sys.executable).parent
    )
    if multiqc is None:
        logger.warning(
            f"multiqc not found: run `multiqc {RESULTS}` where it is installed"
        )
        return
    command = [multiqc, "--force", "--quiet", "--outdir", BATCH, "--filename",
               "multiqc_report.html", f"{BATCH}/multiqc"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        logger.warning(f"multiqc failed: {done.stderr.strip()[-500:]}")
    else:
        logger.info(f"MultiQC report: {BATCH}/multiqc_report.html")


def log_run_summary():
    table = write_run_summary(RUN_SUMMARY)
    write_batch_metrics(table)
    unfinished = table[table["status"] != "done"]
    if unfinished.empty:
        logger.info(f"All {len(table)} sections done; summary in {RUN_SUMMARY}.")
        return
    lines = [
        f"  {row.sample}: {row.status}"
        + (f" at {row.failed_step} (log: {row.log})" if row.failed_step else "")
        + (f"\n    {row.error}" if row.error else "")
        for row in unfinished.itertuples()
    ]
    logger.warning(
        f"{len(unfinished)} of {len(table)} sections not done (listed in {RUN_SUMMARY}):\n"
        + "\n".join(lines)
        + "\nReport of the finished ones: snakemake --report report.html run_summary"
    )


# --- one run at a time per results directory (onstart in summary.smk) ---

import fcntl
import socket
import time

RESULTS_LOCK = Path(RESULTS, ".spaseg.lock")
_held_lock = []  # the open lock file of this run; its flock dies with the process


def lock_results():
    """Hold an exclusive flock on {results}/.spaseg.lock for the whole run.

    Two runs on one results directory (from two working directories, which Snakemake's own
    lock does not see) would overwrite each other's outputs: the second stops with an error
    naming the first. The kernel drops a flock when its process dies, even on kill -9, so a
    killed run leaves no stale lock and `snakemake` resumes it as it is (rerun-incomplete).
    Writing the lock file also proves the results directory writable before any job runs.
    """
    try:
        RESULTS_LOCK.parent.mkdir(parents=True, exist_ok=True)
        handle = open(RESULTS_LOCK, "a+")
    except OSError as err:
        raise results_unwritable(err.strerror)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another Snakemake process"
        handle.close()
        raise WorkflowError(
            f"config field 'results': {RESULTS!r} is in use by another run ({holder}); "
            "wait for it to end, or give this run another results directory."
        )
    except OSError as err:  # file systems without flock support
        logger.warning(f"cannot lock {RESULTS_LOCK} ({err.strerror}); not guarded.")
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n"
        )
        handle.flush()
    except OSError as err:
        raise results_unwritable(err.strerror)
    _held_lock.append(handle)


# --- groups: sections analysed jointly (rules in group.smk) ---


def load_groups(samples):
    """Group -> its sections in stacking order (by z when given, else sheet order).

    Checked before any job runs: z given for all sections of a group or for none, no two
    sections of a group at the same z, one n_domains per group.
    """
    if "group" not in samples:
        return {}
    groups = {}
    for name, rows in samples[samples["group"].notna()].groupby("group", sort=False):
        if "z" in rows and rows["z"].notna().any():
            missing = rows.index[rows["z"].isna()]
            if len(missing):
                msg = f"group {name!r} has z for some sections but not for this one"
                raise sheet_error(msg, sample=missing[0], field="z")
            repeated = rows[rows["z"].duplicated(keep=False)]
            if len(repeated):
                raise sheet_error(
                    f"group {name!r}: sections {', '.join(repeated.index)} share "
                    f"z = {repeated['z'].iloc[0]:g}; each needs its own place in the stack",
                    sample=repeated.index[1],
                    field="z",
                )
            rows = rows.sort_values("z", kind="stable")
        if "n_domains" in rows and rows["n_domains"].nunique() > 1:
            raise sheet_error(
                f"group {name!r} mixes n_domains {sorted(rows['n_domains'].dropna().astype(str))}; "
                "its sections share one set of domains",
                sample=rows.index[0],
                field="n_domains",
            )
        groups[name] = rows
    return groups


groups = load_groups(samples)


wildcard_constraints:
    group="[^/]+",


def group_outputs():
    files = [
        "domains.h5ad",
        "transforms.tsv",
        "domains.png",
        "aligned_3d.png",
        "aligned_3d.html",
        "svg.tsv",
        "svg.png",
    ]
    return expand(f"{RESULTS}/groups/{{group}}/{{file}}", group=groups, file=files)


def group_rows(wildcards):
    if wildcards.group not in groups:
        known = ", ".join(map(repr, groups)) or "none"
        raise WorkflowError(
            f"unknown group {wildcards.group!r}: groups in {SAMPLE_SHEET!r} are {known} "
            "(sample-sheet column 'group')"
        )
    return groups[wildcards.group]


def group_qc_files(wildcards):
    """QC'd sections of a group, in stacking order."""
    return [f"{RESULTS}/{s}/qc.h5ad" for s in group_rows(wildcards).index]


def group_qc_passed(wildcards):
    return [f"{RESULTS}/{s}/qc_passed.tsv" for s in group_rows(wildcards).index]


def group_samples(wildcards):
    return list(group_rows(wildcards).index)


def group_z(wildcards):
    """Sample -> z, or None (the stacking order then gives 0, 1, 2, ...)."""
    rows = group_rows(wildcards)
    if "z" not in rows or rows["z"].isna().all():
        return None
    return {sample: float(z) for sample, z in rows["z"].items()}


def group_spaseg_params(wildcards):
    """The config's spaseg section, with the group's n_domains from the sheet if given."""
    params = dict(config["spaseg"])
    rows = group_rows(wildcards)
    if "n_domains" in rows and rows["n_domains"].notna().any():
        n_domains = rows["n_domains"].dropna().iloc[0]
        params["n_domains"] = sheet_n_domains(n_domains)
    return params


# --- cell2location and cell-cell interaction (rules in cci.smk) ---

C2L = config["cell2location"]
CCI_FILES = [
    "cci/spot_scores.h5ad",
    "cci/pairs.tsv",
    "cci/domain_pairs.tsv",
    "cci/ligrec.tsv",
    "cci/top_pairs.png",
    "cci/domains.png",
]


def c2l_reference_name():
    """Folder name of the configured reference (its file name without .h5ad); None if unset."""
    path = C2L["reference"]
    if not path:
        return None
    if not Path(path).is_file():
        raise WorkflowError(
            f"config key 'cell2location.reference': file not found: {path} "
            f"(relative paths start at {Path.cwd()})"
        )
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name.removesuffix(".h5ad"))


C2L_REFERENCE = c2l_reference_name()  # checked here, before any job runs


def cci_enabled():
    """cci.run: auto (only with a cell2location reference), true or false."""
    run = config["cci"]["run"]
    return bool(C2L["reference"]) if run == "auto" else run


def cci_outputs():
    """Per-section cell2location and cci files, when those stages are on."""
    files = ["cell2location.h5ad", "cell2location.png"] if C2L["reference"] else []
    files += CCI_FILES if cci_enabled() else []
    return expand(f"{RESULTS}/{{sample}}/{{file}}", sample=samples.index, file=files)


def c2l_signatures(wildcards):
    if C2L_REFERENCE is None:
        raise WorkflowError(
            "cell2location outputs need config key 'cell2location.reference' (a single-cell h5ad)"
        )
    return f"{RESULTS}/cell2location/{C2L_REFERENCE}/signatures.h5ad"


def cci_input(wildcards):
    """Domains; the cell2location fractions when a reference is set and cci.weight is
    entropy (else H = 1); the L-R resource when it is a file."""
    files = {"domains": f"{RESULTS}/{wildcards.sample}/domains.h5ad"}
    if C2L["reference"] and config["cci"]["weight"] == "entropy":
        files["cell2location"] = f"{RESULTS}/{wildcards.sample}/cell2location.h5ad"
    if Path(config["cci"]["resource"]).suffix.lower() in (".csv", ".tsv", ".txt"):
        files["resource"] = config["cci"]["resource"]
    return files
