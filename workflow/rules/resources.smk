"""Memory and run time of each job from its input (spaseg._resources, fitted and checked by
benchmarks/resources.py): Snakemake's own process reads only .h5ad headers for them."""

from snakemake.common.tbdstring import TBDString
from spaseg._resources import (
    h5ad_size,
    predict_bin_mem_mb,
    predict_bin_runtime_min,
    predict_c2l_map_runtime_min,
    predict_mem_mb,
    predict_multiqc_mem_mb,
    predict_multiqc_runtime_min,
    predict_runtime_min,
)

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


def multiqc_mem_mb(wildcards, attempt):
    """Rule multiqc: from the number of sections in the batch."""
    return predict_multiqc_mem_mb(len(samples)) * attempt


def multiqc_runtime(wildcards, attempt):
    return predict_multiqc_runtime_min(len(samples)) * attempt
