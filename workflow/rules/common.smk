"""Config and sample sheet: load and validate before any job runs; input functions."""

import re
from pathlib import Path

import jsonschema
import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"]
SAMPLE_SHEET = config["samples"]
SAMPLES_SCHEMA = Path(workflow.basedir, "workflow", "schemas", "samples.schema.yaml")
# Files each section ends with; the rest ({results}/{sample}/raw.h5ad) is temporary.
FINAL_FILES = ["qc.h5ad", "qc.png", "pca.h5ad", "domains.h5ad", "domains.png"]


def sheet_error(message, *, sample=None, field=None):
    """A WorkflowError worded like spaseg.InputError ("sample ..., file ..., field ...: ...").

    Not spaseg.InputError itself: importing spaseg would load torch and scanpy into the
    Snakemake process, which with --sdm conda need not have them.
    """
    where = [f"sample {sample!r}"] if sample is not None else []
    where.append(f"file {SAMPLE_SHEET!r}")
    if field is not None:
        where.append(f"field {field!r}")
    return WorkflowError(f"{', '.join(where)}: {message}")


def load_samples(sheet):
    """Read the sample sheet and check it, each problem named by sample and column."""
    if not Path(sheet).is_file():
        raise sheet_error("sample sheet not found (config key 'samples')")
    text_columns = {"sample": str, "path": str, "platform": str, "group": str}
    samples = pd.read_csv(sheet, sep="\t", comment="#", dtype=text_columns)
    samples.columns = samples.columns.str.strip()
    if samples.empty:
        raise sheet_error("no samples listed")
    schema = yaml.safe_load(SAMPLES_SCHEMA.read_text())

    names = (
        ", ".join(map(repr, samples["sample"].dropna())) if "sample" in samples else "?"
    )
    for column in schema["required"]:
        if column not in samples:
            found = ", ".join(samples.columns)
            msg = (
                f"required column missing for samples {names} (columns found: {found})"
            )
            raise sheet_error(msg, field=column)
        for row in samples.index[samples[column].isna()]:
            sample = samples.at[row, "sample"]
            raise sheet_error(
                f"empty value in row {row + 1}",
                sample=None if pd.isna(sample) else sample,
                field=column,
            )

    repeated = samples["sample"][samples["sample"].duplicated()]
    if len(repeated):
        sample = repeated.iloc[0]
        count = int((samples["sample"] == sample).sum())
        raise sheet_error(
            f"listed {count} times; sample names must be unique",
            sample=sample,
            field="sample",
        )

    # Row by row with the schema, so the message names the sample (validate() names a row index).
    validator = jsonschema.Draft202012Validator(schema)
    for record in samples.to_dict("records"):
        record = {key: value for key, value in record.items() if pd.notna(value)}
        error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        if error is not None:
            field = error.path[0] if error.path else None
            about = schema["properties"].get(field, {}).get("description")
            message = f"{error.message} ({field}: {about})" if about else error.message
            raise sheet_error(message, sample=record["sample"], field=field)
        if not Path(record["path"]).exists():
            raise sheet_error(
                f"input not found: {record['path']} (relative paths start at {Path.cwd()})",
                sample=record["sample"],
                field="path",
            )

    validate(samples, schema="../schemas/samples.schema.yaml")
    return samples.set_index("sample", drop=False)


samples = load_samples(SAMPLE_SHEET)


wildcard_constraints:
    # Only listed samples, so no other path under {results}/ (e.g. groups/...) matches {sample}.
    sample="|".join(re.escape(name) for name in samples.index),


def final_outputs():
    return expand(
        f"{RESULTS}/{{sample}}/{{file}}", sample=samples.index, file=FINAL_FILES
    )


def sample_path(wildcards):
    return samples.loc[wildcards.sample, "path"]


def sample_platform(wildcards):
    return samples.loc[wildcards.sample, "platform"]


def spaseg_params(wildcards):
    """The config's spaseg section, with the sample sheet's n_domains taking precedence."""
    params = dict(config["spaseg"])
    n_domains = samples.loc[wildcards.sample].get("n_domains")
    if pd.notna(n_domains):
        params["n_domains"] = int(n_domains)
    return params
