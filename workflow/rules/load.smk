rule load:
    input:
        sample_path,
    output:
        # Temporary: a copy of the input in one format; qc.h5ad is the first kept output.
        temp(f"{RESULTS}/{{sample}}/raw.h5ad"),
    log:
        f"{RESULTS}/logs/load/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/load/{{sample}}.tsv"
    # Cluster runs: a section's CPU steps before training share one job (profiles/slurm).
    group:
        "preprocess"
    conda:
        "../../envs/load.yaml"
    threads: 1
    resources:
        mem_mb=load_mem_mb,
        runtime=30,
    params:
        platform=sample_platform,
    script:
        "../../scripts/load.py"
