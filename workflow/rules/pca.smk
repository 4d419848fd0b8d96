rule normalize_pca:
    input:
        **GENE_LISTS,
        h5ad=f"{RESULTS}/{{sample}}/qc.h5ad",
        # Rule qc_gate: a section that fails a QC gate stops here (qc.on_fail: skip).
        passed=f"{RESULTS}/{{sample}}/qc_passed.tsv",
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
        mem_mb=fitted_mem_mb("normalize_pca"),
        runtime=fitted_runtime("normalize_pca"),
    params:
        pca=config["pca"],
        # One seed for the whole run: it also fixes the randomized PCA solver.
        seed=config["spaseg"]["seed"],
    script:
        "../../scripts/normalize_pca.py"
