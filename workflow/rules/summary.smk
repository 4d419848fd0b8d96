"""Run summary: which sections finished and, for the others, the step that failed and its log.

With keep-going (both profiles) a failing section leaves the others running. After every run
{results}/run_summary.tsv lists each section as done, failed (with the failed step and its
log) or not run, and {results}/batch/ holds the batch overview (qc_metrics.tsv, overview.html,
MultiQC files and report). `snakemake --report report.html run_summary` puts both in the report
together with the finished sections; the default target would need every section, failed
ones too.
"""


onstart:
    lock_results()


onsuccess:
    log_run_summary()


onerror:
    log_run_summary()


localrules:
    run_summary,


rule run_summary:
    input:
        # Only finished sections, so that the report can be made after a partial run.
        finished_outputs,
    output:
        summary=report(
            RUN_SUMMARY, caption="../report/run_summary.rst", category="Run summary"
        ),
        overview=report(
            f"{RESULTS}/batch/overview.html",
            caption="../report/batch_overview.rst",
            category="Run summary",
        ),
    log:
        f"{RESULTS}/logs/run_summary.log",
    run:
        write_batch_metrics(write_run_summary(output.summary))


localrules:
    multiqc,


rule multiqc:
    input:
        # Every section's final files: the report covers a finished batch. (An incomplete run
        # gets it from the run-end handler, for the sections there are: run_summary.smk.)
        sections=final_outputs(),
    output:
        report(
            f"{BATCH}/multiqc_report.html",
            caption="../report/multiqc.rst",
            category="Run summary",
        ),
    log:
        f"{RESULTS}/logs/multiqc/batch.log",
    benchmark:
        f"{RESULTS}/benchmarks/multiqc/batch.tsv"
    conda:
        "../../envs/multiqc.yaml"
    threads: 1
    resources:
        mem_mb=multiqc_mem_mb,
        runtime=multiqc_runtime,
    params:
        sheet=samples.to_dict("list"),
    script:
        "../../scripts/multiqc.py"
