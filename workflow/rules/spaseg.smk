rule spaseg_train:
    input:
        f"{RESULTS}/{{sample}}/pca.h5ad",
    output:
        f"{RESULTS}/{{sample}}/domains.h5ad",
    log:
        f"{RESULTS}/logs/spaseg_train/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spaseg_train/{{sample}}.tsv"
    conda:
        "../../envs/spaseg_train.yaml"
    threads: 4
    resources:
        mem_mb=fitted_mem_mb("spaseg_train"),
        runtime=fitted_runtime("spaseg_train"),
        # GPUs per job: 0 locally (device "auto" then trains on the CPU); profiles/slurm asks for 1.
        gpu=config["resources"]["spaseg_train"]["gpu"],
    params:
        spaseg=spaseg_params,
    script:
        "../../scripts/spaseg_train.py"
