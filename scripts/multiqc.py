"""Rule multiqc: the batch's MultiQC custom content (spaseg._batch) and MultiQC's report on it,
once every section is done. (After an incomplete run the run summary's handler writes the same
files for the sections there are.)"""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import os
import shutil
import tempfile

import multiqc
import pandas as pd
from multiqc.core.update_config import ClConfig

from spaseg._batch import batch_metrics, write_multiqc

params = snakemake.params
report = Path(snakemake.output[0])
sheet = pd.DataFrame(params.sheet)
# Every section's final files are this job's input: all of them are done.
summary = pd.DataFrame({"sample": sheet["sample"], "status": "done"})
results = report.parent.parent  # the report is {results}/batch/multiqc_report.html
content = write_multiqc(batch_metrics(results, summary, sheet), report.parent / "multiqc")

# MultiQC writes the report and its data folder: both into a scratch folder first, then moved.
with tempfile.TemporaryDirectory(dir=report.parent, prefix=".multiqc.") as scratch:
    done = multiqc.run(
        *map(str, content),
        cfg=ClConfig(output_dir=scratch, filename=report.name, force=True, no_ansi=True),
    )
    if done.sys_exit_code != 0:
        raise RuntimeError(f"MultiQC failed: {done.message}")
    data = report.parent / f"{report.stem}_data"
    shutil.rmtree(data, ignore_errors=True)
    os.replace(Path(scratch) / f"{report.stem}_data", data)
    os.replace(Path(scratch) / report.name, report)
