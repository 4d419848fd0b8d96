"""Config: validated before any job runs; the results folder; input functions of the rules.

The sample sheet is read and checked in sample_sheet.smk (included next, before any rule uses
it); resources.smk sizes the jobs; run_summary.smk writes the run's summary at its end.
"""

import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The repository root, whichever Snakefile Snakemake started from (./Snakefile or, as the
# workflow catalog runs it, workflow/Snakefile): two folders above this file.
REPO = Path(workflow.current_basedir).parents[1]
# This checkout's library, light parts only (no scanpy, anndata or torch in Snakemake's process).
sys.path.insert(0, str(REPO / "src"))
from spaseg._atomic import atomic_path
from spaseg._errors import InputError, QCGateError
from spaseg.io._panel import read_gene_panel
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


def gene_list(key):
    """The gene list file of config key pca.<key>, read here so that a missing or empty list
    stops the run before any job; the file is a rule input (a new list reruns the PCA).
    """
    path = config["pca"].get(key)
    if not path:
        return []
    try:
        read_gene_panel(path, field=f"pca.{key}")
    except InputError as err:
        raise WorkflowError(
            f"config key 'pca.{key}': {err} (relative paths start at {Path.cwd()})"
        )
    return [path]


GENE_LISTS = {"panel": gene_list("genes"), "exclude": gene_list("exclude_genes")}


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


# --- groups: sections analysed jointly (rules in group.smk) ---


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
