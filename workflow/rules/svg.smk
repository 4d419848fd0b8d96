rule svg:
    input:
        f"{RESULTS}/{{sample}}/domains.h5ad",
    output:
        table=f"{RESULTS}/{{sample}}/svg.tsv",
        plot=report(
            f"{RESULTS}/{{sample}}/svg.png",
            caption="../report/svg.rst",
            category="Spatially variable genes",
            subcategory="{sample}",
        ),
    log:
        f"{RESULTS}/logs/svg/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/svg/{{sample}}.tsv"
    group:
        "postprocess_{sample}"
    conda:
        "../../envs/svg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        svg={k: v for k, v in config["svg"].items() if k != "n_top"},
        n_top=config["svg"]["n_top"],
    script:
        "../../scripts/svg.py"
