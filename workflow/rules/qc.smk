rule qc:
    input:
        f"{RESULTS}/{{sample}}/raw.h5ad",
    output:
        f"{RESULTS}/{{sample}}/qc.h5ad",
    log:
        f"{RESULTS}/logs/qc/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc/{{sample}}.tsv"
    conda:
        "../../envs/qc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        qc=config["qc"],
    script:
        "../../scripts/qc.py"
