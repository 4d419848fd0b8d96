rule normalize_pca:
    input:
        f"{RESULTS}/{{sample}}/qc.h5ad",
    output:
        f"{RESULTS}/{{sample}}/pca.h5ad",
    log:
        f"{RESULTS}/logs/normalize_pca/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/normalize_pca/{{sample}}.tsv"
    group:
        "preprocess"
    conda:
        "../../envs/normalize_pca.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        pca=config["pca"],
        # One seed for the whole run: it also fixes the randomized PCA solver.
        seed=config["spaseg"]["seed"],
    script:
        "../../scripts/normalize_pca.py"
