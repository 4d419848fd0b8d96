"""The run's summary (rules and run-end handlers in summary.smk): each section's status and
failed step, the batch overview and MultiQC's files; and one run at a time per results folder.
"""

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
