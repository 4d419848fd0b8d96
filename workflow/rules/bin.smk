rule bin:
    input:
        sample_path,
    output:
        # Stereo-seq only: raw counts per square bin; GEM or GEF, told apart by content.
        f"{RESULTS}/{{sample}}/binned.h5ad",
    log:
        f"{RESULTS}/logs/bin/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/bin/{{sample}}.tsv"
    # Cluster runs: Stereo-seq's first step, in the section's job before training (as load).
    group:
        "preprocess"
    conda:
        "../../envs/bin.yaml"
    threads: 2
    resources:
        mem_mb=bin_mem_mb,
        runtime=bin_runtime,
    params:
        bin_size=sample_bin_size,
    script:
        "../../scripts/bin.py"
