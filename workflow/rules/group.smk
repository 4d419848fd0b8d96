# Sections that share a sample-sheet `group`: one joint PCA, one SpaSEG model and one label
# set for all of them, then a 3-D alignment. Outputs under {results}/groups/{group}/.


rule joint_pca:
    input:
        **GENE_LISTS,
        h5ad=group_qc_files,
        # A group is trained only when every section passed its QC gates (rule qc_gate).
        passed=group_qc_passed,
    output:
        f"{RESULTS}/groups/{{group}}/pca.h5ad",
    log:
        f"{RESULTS}/logs/joint_pca/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/joint_pca/{{group}}.tsv"
    conda:
        "../../envs/joint_pca.yaml"
    threads: 2
    resources:
        mem_mb=fitted_mem_mb("joint_pca"),
        runtime=fitted_runtime("joint_pca"),
    params:
        samples=group_samples,
        pca=config["pca"],
        group=config["group"],
        seed=config["spaseg"]["seed"],
    script:
        "../../scripts/joint_pca.py"


rule joint_spaseg:
    input:
        f"{RESULTS}/groups/{{group}}/pca.h5ad",
    output:
        f"{RESULTS}/groups/{{group}}/labels.h5ad",
    log:
        f"{RESULTS}/logs/joint_spaseg/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/joint_spaseg/{{group}}.tsv"
    conda:
        "../../envs/joint_spaseg.yaml"
    threads: 4
    resources:
        mem_mb=fitted_mem_mb("joint_spaseg"),
        runtime=fitted_runtime("joint_spaseg"),
        # Same GPU setting as single-section training (resources.spaseg_train.gpu).
        gpu=config["resources"]["spaseg_train"]["gpu"],
    params:
        spaseg=group_spaseg_params,
    script:
        "../../scripts/joint_spaseg.py"


rule align:
    input:
        f"{RESULTS}/groups/{{group}}/labels.h5ad",
    output:
        h5ad=f"{RESULTS}/groups/{{group}}/domains.h5ad",
        transforms=f"{RESULTS}/groups/{{group}}/transforms.tsv",
        per_sample=directory(f"{RESULTS}/groups/{{group}}/samples"),
    log:
        f"{RESULTS}/logs/align/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/align/{{group}}.tsv"
    conda:
        "../../envs/align.yaml"
    threads: 2
    resources:
        mem_mb=fitted_mem_mb("align"),
        runtime=fitted_runtime("align"),
    params:
        align=config["align"],
        z=group_z,
    script:
        "../../scripts/align.py"


rule plot_group:
    input:
        f"{RESULTS}/groups/{{group}}/domains.h5ad",
    output:
        domains=report(
            f"{RESULTS}/groups/{{group}}/domains.png",
            caption="../report/group_domains.rst",
            category="Groups",
            subcategory="{group}",
        ),
        stack=report(
            f"{RESULTS}/groups/{{group}}/aligned_3d.png",
            caption="../report/aligned_3d.rst",
            category="Groups",
            subcategory="{group}",
        ),
        # the same stack to rotate and zoom in a browser (self-contained)
        html=f"{RESULTS}/groups/{{group}}/aligned_3d.html",
    log:
        f"{RESULTS}/logs/plot_group/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_group/{{group}}.tsv"
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=fitted_mem_mb("plot_group"),
        runtime=fitted_runtime("plot_group"),
    script:
        "../../scripts/plot_group.py"
