# Cell-cell interaction: cell2location cell-type fractions (optional), then ligand-receptor
# scores between neighbouring spots. Off unless cell2location.reference is set (cci.run: auto);
# cci.run: true runs rule cci without cell2location, every spot weighted H = 1, as does
# cci.weight: none with a reference (signalling within one cell type then counts).


rule c2l_reference:
    input:
        reference=C2L["reference"] or [],
    output:
        f"{RESULTS}/cell2location/{{reference}}/signatures.h5ad",
    log:
        f"{RESULTS}/logs/c2l_reference/{{reference}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/c2l_reference/{{reference}}.tsv"
    wildcard_constraints:
        reference="[^/]+",
    conda:
        "../../envs/c2l.yaml"
    # One thread: pyro's many small tensor ops only add synchronisation with more (on a busy
    # CPU, 2 threads ran 9x slower than 1); on a GPU node the threads hardly matter.
    threads: 1
    resources:
        mem_mb=fitted_mem_mb("c2l_reference", key="reference"),
        runtime=fitted_runtime("c2l_reference", key="reference"),
        # GPUs per job: 0 locally (device "auto" then trains on the CPU); profiles/slurm asks for 1.
        gpu=config["resources"]["c2l_reference"]["gpu"],
    params:
        c2l=C2L,
    script:
        "../../scripts/c2l_reference.py"


rule c2l_map:
    input:
        spots=f"{RESULTS}/{{sample}}/qc.h5ad",
        passed=f"{RESULTS}/{{sample}}/qc_passed.tsv",
        signatures=c2l_signatures,
    output:
        h5ad=f"{RESULTS}/{{sample}}/cell2location.h5ad",
        plot=report(
            f"{RESULTS}/{{sample}}/cell2location.png",
            caption="../report/cell2location.rst",
            category="Cell types",
            subcategory="{sample}",
        ),
    log:
        f"{RESULTS}/logs/c2l_map/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/c2l_map/{{sample}}.tsv"
    conda:
        "../../envs/c2l.yaml"
    # Two threads: a section's spots x genes tensors are large enough to share (4 000 x 3 000:
    # an epoch 1.6 x faster than on one thread; benchmarks/RESULTS.md, cell2location on a CPU).
    threads: 2
    resources:
        mem_mb=fitted_mem_mb("c2l_map", key="spots"),
        runtime=c2l_map_runtime,
        gpu=config["resources"]["c2l_map"]["gpu"],
    params:
        c2l=C2L,
    script:
        "../../scripts/c2l_map.py"


rule cci:
    input:
        unpack(cci_input),
    output:
        scores=f"{RESULTS}/{{sample}}/cci/spot_scores.h5ad",
        pairs=f"{RESULTS}/{{sample}}/cci/pairs.tsv",
        domain_pairs=f"{RESULTS}/{{sample}}/cci/domain_pairs.tsv",
        ligrec=f"{RESULTS}/{{sample}}/cci/ligrec.tsv",
        top=report(
            f"{RESULTS}/{{sample}}/cci/top_pairs.png",
            caption="../report/cci_pairs.rst",
            category="Cell-cell interaction",
            subcategory="{sample}",
        ),
        heatmap=report(
            f"{RESULTS}/{{sample}}/cci/domains.png",
            caption="../report/cci_domains.rst",
            category="Cell-cell interaction",
            subcategory="{sample}",
        ),
    log:
        f"{RESULTS}/logs/cci/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cci/{{sample}}.tsv"
    group:
        "postprocess_{sample}"
    conda:
        "../../envs/cci.yaml"
    threads: 2
    resources:
        mem_mb=fitted_mem_mb("cci", key="domains"),
        runtime=fitted_runtime("cci", key="domains"),
    params:
        cci=config["cci"],
    script:
        "../../scripts/cci.py"
