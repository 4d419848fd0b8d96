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
        mem_mb=fitted_mem_mb("svg"),
        runtime=fitted_runtime("svg"),
    params:
        svg={k: v for k, v in config["svg"].items() if k != "n_top"},
        n_top=config["svg"]["n_top"],
    script:
        "../../scripts/svg.py"


# Group mode: the same tests on a group's joint data (rule align's domains.h5ad). Domains are
# compared with the rest over all sections together; Moran's I uses a neighbour graph built per
# section (batch_key "sample"), so no spot is ever linked to a spot of another section.
rule svg_group:
    input:
        f"{RESULTS}/groups/{{group}}/domains.h5ad",
    output:
        table=f"{RESULTS}/groups/{{group}}/svg.tsv",
        plot=report(
            f"{RESULTS}/groups/{{group}}/svg.png",
            caption="../report/svg_group.rst",
            category="Groups",
            subcategory="{group}",
        ),
    log:
        f"{RESULTS}/logs/svg_group/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/svg_group/{{group}}.tsv"
    conda:
        "../../envs/svg.yaml"
    threads: 2
    resources:
        mem_mb=fitted_mem_mb("svg_group"),
        runtime=fitted_runtime("svg_group"),
    params:
        svg={k: v for k, v in config["svg"].items() if k != "n_top"},
        n_top=config["svg"]["n_top"],
    script:
        "../../scripts/svg_group.py"
