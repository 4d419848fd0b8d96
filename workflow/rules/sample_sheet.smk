"""The sample sheet (config key `samples`) and its groups: read and checked before any job
runs, each problem named by sample, file and column."""

import jsonschema
import yaml

SAMPLES_SCHEMA = REPO / "workflow" / "schemas" / "samples.schema.yaml"


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


def as_n_domains(value):
    """A sample sheet's n_domains cell: an integer, "auto", or left as found (the schema
    then names it)."""
    text = str(value).strip()
    return int(text) if text.isdigit() else (value if pd.isna(value) else text)


def sheet_n_domains(value):
    """A validated n_domains cell as spaseg takes it: "auto" or an int (a column with gaps
    reads as float)."""
    return value if value == "auto" else int(value)


NUMERIC_COLUMNS = ("n_domains", "bin_size", "z")
#: obs columns the workflow writes itself; metadata columns must not take these names.
RESERVED_OBS = {"domain", "domain_confidence", "array_row", "array_col", "in_tissue", "bin_x",
                "bin_y", "n_genes_by_counts", "total_counts", "total_counts_mt", "pct_counts_mt"}  # fmt: skip


SAMPLES_SCHEMA_DATA = yaml.safe_load(SAMPLES_SCHEMA.read_text())


def metadata_columns(samples):
    """The sheet's extra columns (donor, condition, slide, ...), beyond the schema's own."""
    return [c for c in samples.columns if c not in SAMPLES_SCHEMA_DATA["properties"]]


def sample_metadata(wildcards):
    """{column: value} of the section's extra sheet columns (empty cells left out)."""
    row = samples.loc[wildcards.sample]
    return {c: str(row[c]) for c in METADATA_COLUMNS if pd.notna(row[c])}


def load_samples(sheet):
    """Read the sample sheet and check it, each problem named by sample and column."""
    if not Path(sheet).is_file():
        raise sheet_error("sample sheet not found (config key 'samples')")
    # Every column is text but the numeric ones, so extra metadata ("01", "1e3") stays as
    # written.
    header = pd.read_csv(sheet, sep="\t", comment="#", nrows=0).columns.str.strip()
    text_columns = {c: str for c in header if c not in NUMERIC_COLUMNS}
    samples = pd.read_csv(sheet, sep="\t", comment="#", dtype=text_columns)
    samples.columns = samples.columns.str.strip()
    if "n_domains" in samples and samples["n_domains"].dtype == object:
        # "auto" beside numbers reads as text: numbers back to integers for the schema.
        samples["n_domains"] = samples["n_domains"].map(as_n_domains)
    if samples.empty:
        raise sheet_error("no samples listed")
    schema = SAMPLES_SCHEMA_DATA

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
            field = error.absolute_path[0] if error.absolute_path else None
            about = schema["properties"].get(field, {}).get("description")
            message = f"{error.message} ({field}: {about})" if about else error.message
            raise sheet_error(message, sample=record["sample"], field=field)
        if "bin_size" in record and record["platform"] != "stereo-seq":
            raise sheet_error(
                f"bin_size is for stereo-seq sections only (platform is {record['platform']!r})",
                sample=record["sample"],
                field="bin_size",
            )
        if not Path(record["path"]).exists():
            raise sheet_error(
                f"input not found: {record['path']} (relative paths start at {Path.cwd()})",
                sample=record["sample"],
                field="path",
            )
        # Visium reads a Space Ranger folder, every other platform one file.
        folder = record["platform"] == "visium"
        if Path(record["path"]).is_dir() != folder:
            want = "a folder (Space Ranger outs/)" if folder else "a file"
            raise sheet_error(
                f"platform {record['platform']!r} reads {want}, but {record['path']} is not one",
                sample=record["sample"],
                field="path",
            )

    for column in metadata_columns(samples):
        if column in RESERVED_OBS or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", column):
            raise sheet_error(
                "extra columns are carried into obs: a name of letters, digits and '_' "
                f"starting with a letter, and not one the workflow writes ({column!r})",
                field=column,
            )
    validate(samples, schema="../schemas/samples.schema.yaml")
    return samples.set_index("sample", drop=False)


samples = load_samples(SAMPLE_SHEET)
METADATA_COLUMNS = metadata_columns(samples)


wildcard_constraints:
    # Only listed samples, so no other path under {results}/ (e.g. groups/...) matches {sample}.
    sample="|".join(re.escape(name) for name in samples.index),


# --- groups: sections analysed jointly (rules in group.smk) ---


def load_groups(samples):
    """Group -> its sections in stacking order (by z when given, else sheet order).

    Checked before any job runs: z given for all sections of a group or for none, no two
    sections of a group at the same z, one n_domains per group.
    """
    if "group" not in samples:
        return {}
    groups = {}
    for name, rows in samples[samples["group"].notna()].groupby("group", sort=False):
        if "z" in rows and rows["z"].notna().any():
            missing = rows.index[rows["z"].isna()]
            if len(missing):
                msg = f"group {name!r} has z for some sections but not for this one"
                raise sheet_error(msg, sample=missing[0], field="z")
            repeated = rows[rows["z"].duplicated(keep=False)]
            if len(repeated):
                raise sheet_error(
                    f"group {name!r}: sections {', '.join(repeated.index)} share "
                    f"z = {repeated['z'].iloc[0]:g}; each needs its own place in the stack",
                    sample=repeated.index[1],
                    field="z",
                )
            rows = rows.sort_values("z", kind="stable")
        if "n_domains" in rows and rows["n_domains"].nunique() > 1:
            raise sheet_error(
                f"group {name!r} mixes n_domains {sorted(rows['n_domains'].dropna().astype(str))}; "
                "its sections share one set of domains",
                sample=rows.index[0],
                field="n_domains",
            )
        groups[name] = rows
    return groups


groups = load_groups(samples)


wildcard_constraints:
    group="[^/]+",
