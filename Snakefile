# spaseg: spatial domains with SpaSEG, from a sample sheet of sections.
# Rules live in workflow/rules/; scripts/ are thin wrappers around the spaseg library (src/).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sample_sheet.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/run_summary.smk"
include: "workflow/rules/load.smk"
include: "workflow/rules/bin.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/pca.smk"
include: "workflow/rules/spaseg.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/svg.smk"
include: "workflow/rules/cci.smk"
include: "workflow/rules/group.smk"
include: "workflow/rules/summary.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        final_outputs(),
        group_outputs(),
        # MultiQC's report of the batch, once every section is done (multiqc.run).
        [f"{BATCH}/multiqc_report.html"] if config["multiqc"]["run"] else [],
