"""Rule qc_gate: stop a section that failed a QC gate, before any job after QC is started
(spaseg.pp.check_gates); with qc.on_fail: continue, note it and go on."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import logging

import pandas as pd

import spaseg
from spaseg._atomic import atomic_path

log = logging.getLogger("spaseg")
gates = pd.read_csv(snakemake.input.gates, sep="\t")
log.info("QC gates:\n%s", gates.to_string(index=False))
failed = spaseg.pp.check_gates(
    gates, on_fail=snakemake.params.on_fail, sample=snakemake.wildcards.sample,
    file=snakemake.input.gates,
)  # fmt: skip
if failed:
    log.warning("failed QC gates, going on (qc.on_fail: continue): %s", "; ".join(failed))
with atomic_path(snakemake.output[0]) as tmp:
    gates.to_csv(tmp, sep="\t", index=False)
