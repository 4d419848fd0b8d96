rule qc:
    input:
        # raw.h5ad (rule load), or binned.h5ad (rule bin) for Stereo-seq sections.
        qc_input,
    output:
        h5ad=f"{RESULTS}/{{sample}}/qc.h5ad",
        # The section measured against qc.gates; rule qc_gate acts on it.
        gates=f"{RESULTS}/{{sample}}/qc_gates.tsv",
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
        mem_mb=fitted_mem_mb("qc"),
        runtime=fitted_runtime("qc"),
    params:
        qc=qc_params,
        gates=config["qc"]["gates"],
        metadata=sample_metadata,
    script:
        "../../scripts/qc.py"


rule qc_gate:
    input:
        gates=f"{RESULTS}/{{sample}}/qc_gates.tsv",
        # Only for the order: a section the gates stop still gets its QC plot.
        plot=f"{RESULTS}/{{sample}}/qc.png",
    output:
        # Every step after QC waits for this file: a section without it is not trained.
        f"{RESULTS}/{{sample}}/qc_passed.tsv",
    log:
        f"{RESULTS}/logs/qc_gate/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc_gate/{{sample}}.tsv"
    group:
        "preprocess"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        on_fail=config["qc"]["on_fail"],
    run:
        pass_qc_gates(input.gates, output[0], log[0], params.on_fail, wildcards.sample)
