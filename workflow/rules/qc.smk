rule qc:
    input:
        # raw.h5ad (rule load), or binned.h5ad (rule bin) for Stereo-seq sections.
        qc_input,
    output:
        f"{RESULTS}/{{sample}}/qc.h5ad",
    log:
        f"{RESULTS}/logs/qc/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc/{{sample}}.tsv"
    group:
        "preprocess"
    conda:
        "../../envs/qc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        qc=qc_params,
        metadata=sample_metadata,
    script:
        "../../scripts/qc.py"
