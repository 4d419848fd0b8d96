rule plot_qc:
    input:
        f"{RESULTS}/{{sample}}/qc.h5ad",
    output:
        report(
            f"{RESULTS}/{{sample}}/qc.png",
            caption="../report/qc.rst",
            category="Quality control",
            subcategory="{sample}",
        ),
    log:
        f"{RESULTS}/logs/plot_qc/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_qc/{{sample}}.tsv"
    group:
        "preprocess"
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=fitted_mem_mb("plot_qc"),
        runtime=fitted_runtime("plot_qc"),
    script:
        "../../scripts/plot_qc.py"


rule plot_domains:
    input:
        f"{RESULTS}/{{sample}}/domains.h5ad",
    output:
        report(
            f"{RESULTS}/{{sample}}/domains.png",
            caption="../report/domains.rst",
            category="Spatial domains",
            subcategory="{sample}",
        ),
    log:
        f"{RESULTS}/logs/plot_domains/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_domains/{{sample}}.tsv"
    # Cluster runs: a section's CPU steps after training share one job (profiles/slurm).
    group:
        "postprocess_{sample}"
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=fitted_mem_mb("plot_domains"),
        runtime=fitted_runtime("plot_domains"),
    script:
        "../../scripts/plot_domains.py"
