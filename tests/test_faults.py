"""Faults around a run: killed with kill -9, two runs on one results directory, a results
directory that cannot be written or fills up. Each leaves a clear word and nothing
half-written."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spaseg.datasets import simulate_tissue

REPO = Path(__file__).resolve().parents[1]


def write_run(workdir: Path, n_rows: int = 30) -> list[str]:
    """One simulated section and its sample sheet; the Snakemake command line to run it
    (shorter training than the defaults: two runs of at most 300 iterations)."""
    section = simulate_tissue(3, n_rows=n_rows, n_genes=200, seed=0)
    section.write_h5ad(workdir / "s1.h5ad")
    row = {"sample": "s1", "path": str(workdir / "s1.h5ad"), "platform": "h5ad", "n_domains": 3}
    pd.DataFrame([row]).to_csv(workdir / "samples.tsv", sep="\t", index=False)
    short = workdir / "short.yaml"
    short.write_text("spaseg:\n  n_runs: 2\n  warmup_iter: 150\n  max_iter: 300\n")
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(REPO / "config/config.yaml"),
        str(short), "--config", f"samples={workdir / 'samples.tsv'}",
        f"results={workdir / 'results'}", "--cores", "2",
    ]  # fmt: skip


def run(command: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted writes (spaseg._atomic names them .<stem>.*.tmp*)."""
    return [p.name for p in folder.rglob(".*.tmp*")]


@pytest.mark.slow
def test_killed_run_resumes_with_snakemake_and_gives_the_same_labels(tmp_path):
    command = write_run(tmp_path)
    results = tmp_path / "results"
    train_log = results / "logs/spaseg_train/s1.log"
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    try:
        # Kill Snakemake and its jobs once training has made its first 100 iterations.
        while "iter 100" not in (train_log.read_text() if train_log.exists() else ""):
            assert process.poll() is None, "the run ended before training started"
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (results / "s1/domains.h5ad").exists()  # killed in the middle of training

    resumed = run(command)  # no --unlock: the kernel dropped the killed run's lock
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    labels = ad.read_h5ad(results / "s1/domains.h5ad").obs["domain"].to_numpy()
    assert not leftovers(results)

    (results / "s1/domains.h5ad").unlink()  # train once more, uninterrupted
    again = run(command)
    assert again.returncode == 0, again.stdout + again.stderr
    np.testing.assert_array_equal(
        ad.read_h5ad(results / "s1/domains.h5ad").obs["domain"].to_numpy(), labels
    )


def test_second_run_on_the_same_results_directory_is_refused(tmp_path):
    """Another run (from another working directory, unseen by Snakemake's own lock) holds
    the results directory: this one stops before any job, naming the other."""
    command = write_run(tmp_path, n_rows=10)
    results = tmp_path / "results"
    results.mkdir()
    with open(results / ".spaseg.lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        other.write("pid 12345 on node7 since Mon\n")
        other.flush()
        refused = run(command)
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "is in use by another run (pid 12345 on node7" in text and "'results'" in text, text
    assert not (results / "logs").exists()  # no job ran


def test_unwritable_results_directory_is_refused_before_any_job(tmp_path):
    command = write_run(tmp_path, n_rows=10)
    (tmp_path / "a_file").write_text("not a folder")
    command[command.index(f"results={tmp_path / 'results'}")] = (
        f"results={tmp_path / 'a_file' / 'results'}"
    )
    refused = run(command)
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "config field 'results': cannot write to the results directory" in text, text


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB file system (tmpfs), where a section's first output does not fit."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_results_directory_fails_the_job_with_a_clear_error(tmp_path, full_disk):
    command = write_run(tmp_path)
    results = full_disk / "results"
    command[command.index(f"results={tmp_path / 'results'}")] = f"results={results}"
    failed = run(command)
    assert failed.returncode != 0
    log = (results / "logs/load/s1.log").read_text()
    last = log.strip().splitlines()[-1]
    assert "cannot write" in last and "raw.h5ad" in last and "no space left" in last, log
    assert not (results / "s1/raw.h5ad").exists() and not leftovers(results)
