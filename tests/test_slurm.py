"""Cluster runs: the SLURM and local profiles, batches of many sections, the run summary, and
the workflow on a real one-node SLURM cluster.

The real-SLURM test installs Debian's slurmctld, slurmd, slurm-client and munge, starts a
one-node cluster with fake GPUs, runs the workflow through ``--profile profiles/slurm`` with
the real executor plugin and tears the cluster down. It needs root and runs only when ``CI``
is set (``.ci/run``) or ``SPASEG_TEST_SLURM=1``; everything else here needs no SLURM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import yaml
from conftest import planned_jobs, rule_blocks, workflow_functions

from spaseg._resources import h5ad_size, predict_mem_mb
from spaseg.datasets._simulate import simulate_tissue

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
RULES = REPO / "workflow" / "rules"
FINAL_FILES = ["qc.h5ad", "qc.png", "pca.h5ad", "domains.h5ad", "domains.png"]
SHORT_TRAINING = {"n_runs": 1, "max_iter": 60, "warmup_iter": 20}
SITE_VARIABLES = (
    "SPASEG_SLURM_ACCOUNT",
    "SPASEG_SLURM_PARTITION",
    "SPASEG_SLURM_GPU_PARTITION",
    "SPASEG_SLURM_GPU_MODEL",
)


BLOCKS = rule_blocks()
JOB_RULES = sorted(name for name, body in BLOCKS.items() if "\n    run:\n" not in body)
TRAINING_RULES = {name for name in JOB_RULES if re.search(r"^\s+gpu=", BLOCKS[name], re.M)}


def read_profile(path: Path, **environ: str) -> dict:
    """The profile as Snakemake reads it (YTE template) with these site variables set."""
    from snakemake.profiles import ProfileConfigFileParser

    saved = {name: os.environ.pop(name, None) for name in SITE_VARIABLES}
    os.environ.update(environ)
    try:
        with open(path / "config.yaml") as stream:
            parsed = ProfileConfigFileParser().parse(stream)
    finally:
        for name in SITE_VARIABLES:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]
    return parsed


def resources_of(parsed: dict, key: str) -> dict[str, dict[str, str]]:
    """'rule:name=value' entries (or 'name=value' for default-resources) as nested dicts."""
    table: dict[str, dict[str, str]] = {}
    for entry in parsed.get(key, []):
        target, _, value = entry.partition("=")
        rule, _, name = target.rpartition(":")
        table.setdefault(rule, {})[name] = value
    return table


def snakemake(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def output(result) -> str:
    return result.stdout + result.stderr


def write_sections(workdir: Path, names: list[str], *, broken: str | None = None) -> Path:
    """Tiny simulated sections (h5ad), a sample sheet and a short-training config (with QC
    gates for their small gene panel)."""
    rows = []
    for seed, name in enumerate(names):
        adata = simulate_tissue(
            3, grid="square", n_rows=16, shape="full", n_genes=60, n_markers=8, seed=seed
        )
        adata.write_h5ad(workdir / f"{name}.h5ad")
        rows.append({"sample": name, "path": f"{name}.h5ad", "platform": "h5ad", "n_domains": 3})
    if broken:  # not an h5ad: rule load fails on it
        (workdir / f"{broken}.h5ad").write_text("not an h5ad file\n")
        rows.append({"sample": broken, "path": f"{broken}.h5ad", "platform": "h5ad"})
    pd.DataFrame(rows).to_csv(workdir / "samples.tsv", sep="\t", index=False)
    gates = {"gates": {"min_median_genes": 20}}
    config = {"samples": "samples.tsv", "results": "results", "spaseg": SHORT_TRAINING, "qc": gates}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "config.yaml"


def no_slurm_path(tmp_path: Path) -> str:
    """A PATH with the basic tools and the .venv, and no SLURM command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "which", "git", "uname", "cat", "env"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}"
    assert shutil.which("sbatch", path=path) is None and shutil.which("sinfo", path=path) is None
    return path


# --- profiles ---------------------------------------------------------------------------------


def test_slurm_profile_settings():
    profile = read_profile(SLURM_PROFILE)
    assert profile["executor"] == "slurm"
    assert int(profile["jobs"]) >= 50 and int(profile["latency-wait"]) >= 30
    assert int(profile["retries"]) >= 1
    assert profile["keep-going"] == "True" and profile["rerun-incomplete"] == "True"
    assert profile["software-deployment-method"] == "conda"
    assert "cores" not in profile  # would cap the cores of all cluster jobs together


def test_site_settings_come_from_the_environment_only():
    bare = read_profile(SLURM_PROFILE)
    text = " ".join(map(str, bare.get("default-resources", []) + bare.get("set-resources", [])))
    for resource_name in ("slurm_account", "slurm_partition", "gpu_model"):
        assert resource_name not in text  # unset: the plugin picks (cluster default, any GPU)
    site = read_profile(
        SLURM_PROFILE,
        SPASEG_SLURM_ACCOUNT="lab42",
        SPASEG_SLURM_PARTITION="cpu",
        SPASEG_SLURM_GPU_PARTITION="gpu",
        SPASEG_SLURM_GPU_MODEL="a100",
    )
    defaults = resources_of(site, "default-resources")[""]
    assert defaults["slurm_account"] == "lab42" and defaults["slurm_partition"] == "cpu"
    per_rule = resources_of(site, "set-resources")
    for rule in TRAINING_RULES:
        assert per_rule[rule]["slurm_partition"] == "gpu" and per_rule[rule]["gpu_model"] == "a100"
    for rule in set(per_rule) - TRAINING_RULES:
        assert "gpu_model" not in per_rule[rule] and "slurm_partition" not in per_rule[rule]


def test_gpus_for_the_training_rules_only():
    per_rule = resources_of(read_profile(SLURM_PROFILE), "set-resources")
    with_gpu = {rule for rule, res in per_rule.items() if res.get("gpu") == "1"}
    assert with_gpu == TRAINING_RULES  # rules whose own `gpu` resource comes from config
    assert {"spaseg_train", "joint_spaseg", "c2l_reference", "c2l_map"} <= with_gpu


@pytest.mark.parametrize("rule", JOB_RULES)
def test_every_rule_has_cluster_resources(rule):
    """Memory grows with the attempt (in the profile or the rule), CPUs follow threads."""
    res = resources_of(read_profile(SLURM_PROFILE), "set-resources").get(rule)
    assert res is not None, f"profiles/slurm has no set-resources for rule {rule}"
    body = BLOCKS[rule]
    if "mem_mb" in res:
        assert re.fullmatch(r"\d+ \* attempt", res["mem_mb"]), res["mem_mb"]
        assert res["runtime"].isdigit()
    else:  # the rule's own mem_mb function (or the one its factory makes) takes the attempt
        function = re.search(r"mem_mb=(\w+)[,(]", body).group(1)
        functions = workflow_functions()
        source = functions[functions.index(f"def {function}(") :].split("\ndef ")[0]
        assert re.search(r"def \w+\([^)]*attempt\)", source), function
        assert "* attempt" in source, function
    threads = re.search(r"^    threads: (\d+)", body, re.M).group(1)
    assert res["cpus_per_task"] == threads, f"{rule}: cpus_per_task != threads"


def test_profile_rules_exist():
    per_rule = resources_of(read_profile(SLURM_PROFILE), "set-resources")
    assert set(per_rule) <= set(BLOCKS), set(per_rule) - set(BLOCKS)


def test_default_profile_does_not_override_the_slurm_profile():
    """profiles/default is read next to --profile profiles/slurm and wins key by key."""
    default = read_profile(REPO / "profiles/default")
    slurm = read_profile(SLURM_PROFILE)
    assert "cores" not in default and "executor" not in default
    for key in set(default) & set(slurm):
        assert default[key] == slurm[key], key
    assert default["keep-going"] == "True"  # local batches keep going too


def test_cpu_jobs_are_grouped_per_section():
    groups = {rule: re.search(r'^    group:\n\s+"([^"]+)"', BLOCKS[rule], re.M) for rule in BLOCKS}
    assert {r for r, g in groups.items() if g and g.group(1) == "preprocess"} >= {
        "load",
        "bin",  # Stereo-seq's first step instead of load
        "qc",
        "plot_qc",
        "normalize_pca",
    }
    assert not any(groups[rule] for rule in TRAINING_RULES)  # GPU jobs stay on their own
    for rule in ("plot_domains", "svg"):  # one group id per section: never two sections
        assert groups[rule].group(1) == "postprocess_{sample}"
    # plot_domains and svg are not connected by a file: group-components joins them ...
    components = read_profile(SLURM_PROFILE)["group-components"]
    assert components == ["postprocess_{sample}=10"]  # ... within one section only


# --- dry runs without SLURM -------------------------------------------------------------------


def test_dry_run_with_the_slurm_profile_needs_no_slurm(tmp_path):
    env = {**os.environ, "PATH": no_slurm_path(tmp_path), "SPASEG_SLURM_GPU_MODEL": "a100"}
    for name in ("SPASEG_SLURM_ACCOUNT", "SPASEG_SLURM_PARTITION", "SPASEG_SLURM_GPU_PARTITION"):
        env.pop(name, None)
    # --sdm env-modules: no conda here; no rule has envmodules, so jobs use this Python.
    result = snakemake(
        "-n", "--profile", str(SLURM_PROFILE), "--sdm", "env-modules", cwd=REPO, env=env
    )
    assert result.returncode == 0, output(result)
    text = output(result)
    assert "Using profiles" in text and "profiles/slurm" in text
    assert "Group job preprocess" in text
    jobs = re.split(r"\n(?=\[.*\]\n|rule \w+:)", result.stdout)
    train = [job for job in jobs if "rule spaseg_train:" in job]
    assert train and all("gpu=1" in job and "gpu_model=a100" in job for job in train)
    # Sized from its input once that exists (tests/test_resources.py); 4 CPUs.
    assert all("mem_mb=<TBD>" in job and "cpus_per_task=4" in job for job in train)
    others = [job for job in jobs if "resources:" in job and "rule spaseg_train:" not in job]
    assert others and not any("gpu=" in job for job in others)


def test_stereoseq_bin_runs_in_the_sections_preprocess_job(tmp_path):
    """bin -> qc -> plot_qc, normalize_pca of a Stereo-seq section: one cluster job, not two."""
    gem = tmp_path / "tiny.gem"
    gem.write_text("geneID\tx\ty\tMIDCount\nGeneA\t10\t20\t1\n")
    rows = [
        {"sample": "chip", "path": str(gem), "platform": "stereo-seq", "n_domains": 3},
        {"sample": "tab", "path": str(REPO / ".test/data/example_table.csv"), "platform": "table"},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    env = {**os.environ, "PATH": no_slurm_path(tmp_path)}
    result = snakemake(
        "-n", "--profile", str(SLURM_PROFILE), "--sdm", "env-modules",
        "--configfile", str(REPO / "config/config.yaml"),
        "--config", "samples=samples.tsv", "results=results",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    # Top-level entries (jobs and group jobs) start with an unindented "[<date>]".
    jobs = re.split(r"^\[[^\]\n]*\]", result.stdout, flags=re.M)
    with_bin = [job for job in jobs if "rule bin:" in job]
    assert len(with_bin) == 1, with_bin
    chip = with_bin[0]
    assert chip.startswith(" Group job preprocess"), chip[:200]
    for step in ("qc", "plot_qc", "normalize_pca"):
        assert f"log: results/logs/{step}/chip.log" in chip, step
    assert "wildcards: sample=tab" not in chip  # never two sections in one job
    assert result.stdout.count("Group job preprocess ") == 2  # chip's and tab's (with load)


@pytest.mark.parametrize("how", ["copied to the user config", "--workflow-profile"])
def test_slurm_profile_by_bare_name(tmp_path, how):
    """README: `--profile slurm` once copied to ~/.config/snakemake/, or `--workflow-profile`."""
    env = {**os.environ, "PATH": no_slurm_path(tmp_path)}
    if how == "--workflow-profile":
        args = ["--workflow-profile", "slurm"]
    else:
        shutil.copytree(SLURM_PROFILE, tmp_path / "config/snakemake/slurm")
        env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # stands in for ~/.config
        args = ["--profile", "slurm"]
    result = snakemake("-n", *args, "--sdm", "env-modules", cwd=REPO, env=env)
    assert result.returncode == 0, output(result)
    assert "gpu=1" in result.stdout and "Group job preprocess" in result.stdout


@pytest.mark.slow
def test_dry_run_of_200_sections(tmp_path):
    """200 sections: the DAG is right and builds in < 30 s of CPU (wall clock measures the
    neighbours on a shared machine; it is reported too)."""
    example = REPO / ".test/data/example_table.csv"
    rows = [
        {"sample": f"s{i:03d}", "path": str(example), "platform": "table", "n_domains": 3}
        for i in range(200)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    env = {**os.environ, "PATH": no_slurm_path(tmp_path)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = snakemake(
        "-n",
        "--profile",
        str(SLURM_PROFILE),
        "--sdm",
        "env-modules",
        "--configfile",
        str(REPO / "config/config.yaml"),
        "--config",
        "samples=samples.tsv",
        "results=results",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == 0, output(result)[-3000:]
    stats = planned_jobs(result)
    assert {"load", "qc", "normalize_pca", "plot_qc", "spaseg_train", "plot_domains"} <= set(stats)
    batch = ("all", "total", "multiqc")  # once per run
    per_section = {rule: n for rule, n in stats.items() if rule not in batch}
    assert set(per_section.values()) == {200}, stats  # every step once per section
    assert stats["total"] == 200 * len(per_section) + 2
    # 200 sections make 600 cluster jobs: CPU steps before training, training, steps after.
    assert result.stdout.count("Group job preprocess ") == 200
    assert result.stdout.count("Group job postprocess_") == 200
    assert cpu < 30, f"dry run of 200 sections took {cpu:.1f} s of CPU ({wall:.1f} s wall)"


# --- a failing section and the run summary ----------------------------------------------------


@pytest.mark.slow
def test_failing_section_does_not_stop_the_others(tmp_path):
    """Local run (keep-going from profiles/default): the broken section is listed in
    run_summary.tsv and in the report made with the `run_summary` target."""
    config = write_sections(tmp_path, ["good"], broken="broken")
    args = ["--cores", "2", "--configfile", str(REPO / "config/config.yaml"), str(config)]
    run = snakemake(*args, cwd=tmp_path, timeout=900)
    assert run.returncode != 0, output(run)
    for name in FINAL_FILES:
        assert (tmp_path / "results/good" / name).is_file(), name
    summary = pd.read_csv(tmp_path / "results/run_summary.tsv", sep="\t", dtype=str).fillna("")
    rows = summary.set_index("sample")
    assert rows.loc["good", "status"] == "done" and rows.loc["good", "missing"] == ""
    assert rows.loc["broken", "status"] == "failed"
    assert rows.loc["broken", "failed_step"] == "load"
    assert rows.loc["broken", "log"] == "results/logs/load/broken.log"
    assert "broken: failed at load" in output(run)
    report = tmp_path / "report.html"
    made = snakemake(*args, "--report", str(report), "run_summary", cwd=tmp_path)
    assert made.returncode == 0, output(made)
    html = report.read_text(errors="replace")
    assert "run_summary.tsv" in html and "domains.png" in html


# --- provenance -------------------------------------------------------------------------------


def test_every_h5ad_a_script_writes_carries_provenance():
    for script in sorted((REPO / "scripts").glob("*.py")):
        text = script.read_text()
        if "write_h5ad(" in text:
            assert "add_provenance(" in text, script.name
            assert text.index("add_provenance(") < text.rindex("write_h5ad("), script.name


# --- a real SLURM cluster ---------------------------------------------------------------------

RUN_SLURM = (
    os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}
    or os.environ.get("SPASEG_TEST_SLURM") == "1"
)
SLURM_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
SLURM_CONF = Path("/etc/slurm/slurm.conf")  # srun in the jobs finds it only here
GRES_CONF = SLURM_CONF.with_name("gres.conf")
MARK = "# spaseg test cluster (tests/test_slurm.py); removed when the test ends\n"
LOCK = Path("/tmp/spaseg-slurm-test.lock")  # one test cluster per machine at a time
NODE, N_GPUS, GPU_TYPE = "spaseg-node", 4, "fake"
# MB: spaseg_train fails below this (tests/hooks/sitecustomize.py). Training a test section
# (16 x 16 spots, 60 genes) asks for 800 MB (spaseg._resources), a retry for twice as much.
TEST_MEMORY_NEED = 1200


def sbin(name: str) -> str:
    """A SLURM or munge program, also where /usr/sbin is not on PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
    return shutil.which(name, path=path) or name


def run_quietly(command, *, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def install_slurm() -> None:
    if all(sbin(tool) != tool for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command, timeout in (
        (["apt-get", "update", "-qq"], 300),
        (["apt-get", "install", "-y", "-qq", "--no-install-recommends", *SLURM_PACKAGES], 900),
    ):
        done = run_quietly(command, timeout=timeout, env=env)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_config(state: Path, munge_socket: Path) -> str:
    host = socket.gethostname()
    return MARK + "\n".join(
        [
            "ClusterName=spaseg-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={state}/ctld",
            f"SlurmdSpoolDir={state}/spool",
            f"SlurmctldPidFile={state}/slurmctld.pid",
            f"SlurmdPidFile={state}/slurmd.pid",
            f"SlurmctldLogFile={state}/slurmctld.log",
            f"SlurmdLogFile={state}/slurmd.log",
            "MpiDefault=none",
            # No cgroups in a container: plain process tracking, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "GresTypes=gpu",
            # No slurmdbd: no accounting (hence `--slurm-status-command squeue`), job records
            # kept an hour for `scontrol show job`.
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MinJobAge=3600",
            "KillWait=5",
            "ReturnToService=2",
            # The node is what this file says (CPUs, memory, GPUs), not what slurmd detects.
            "SlurmdParameters=config_overrides",
            f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=16 "
            f"RealMemory=128000 Gres=gpu:{GPU_TYPE}:{N_GPUS} State=UNKNOWN",
            f"PartitionName=cpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=gpu Nodes={NODE} MaxTime=INFINITE State=UP",
            "",
        ]
    )


@contextlib.contextmanager
def machine_lock(timeout: float = 1200):
    with open(LOCK, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another SLURM test holds {LOCK}")
                time.sleep(5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster (4 fake GPUs) for this module; torn down whatever happens."""
    if not RUN_SLURM:
        pytest.skip("real SLURM test: runs when CI is set or SPASEG_TEST_SLURM=1")
    if os.geteuid() != 0:
        pytest.fail("the SLURM test installs and runs SLURM daemons: it needs root")
    with machine_lock():
        if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
            pytest.fail(f"{SLURM_CONF} belongs to a real SLURM installation; not touching it")
        install_slurm()
        state = tmp_path_factory.mktemp("slurm")
        for sub in ("ctld", "spool", "munge"):
            (state / sub).mkdir()
        key, munge_socket = state / "munge/munge.key", state / "munge/socket"
        run_quietly([sbin("mungekey"), "--create", f"--keyfile={key}"], check=True)
        key.chmod(0o600)
        for i in range(N_GPUS):  # gres.conf needs a file per GPU; nothing opens them
            (state / f"gpu{i}").touch()
        daemons: list[subprocess.Popen] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}

        def start(name: str, *command: str) -> None:
            log = open(state / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
            daemons.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )

        try:
            start(
                "munged",
                sbin("munged"),
                "--foreground",
                "--force",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--log-file={state}/munged.log",
                f"--pid-file={state}/munge/munged.pid",
                f"--seed-file={state}/munge/munged.seed",
            )
            SLURM_CONF.parent.mkdir(exist_ok=True)
            SLURM_CONF.write_text(slurm_config(state, munge_socket))
            GRES_CONF.write_text(
                MARK
                + f"NodeName={NODE} Name=gpu Type={GPU_TYPE} File={state}/gpu[0-{N_GPUS - 1}]\n"
            )
            for _ in range(50):
                if munge_socket.exists():
                    break
                time.sleep(0.2)
            start("slurmctld", sbin("slurmctld"), "-D", "-f", str(SLURM_CONF))
            start("slurmd", sbin("slurmd"), "-D", "-f", str(SLURM_CONF), "-N", NODE)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                sinfo = run_quietly(["sinfo", "-h", "-N", "-o", "%T"], timeout=20, env=env)
                if set(sinfo.stdout.split()) == {"idle"}:  # one line per partition
                    break
                time.sleep(1)
            else:
                pytest.fail(
                    f"the test cluster did not come up (sinfo: {sinfo.stdout}{sinfo.stderr}):\n"
                    + "\n".join(tail(state / f) for f in ("slurmctld.log", "slurmd.log"))
                )
            yield {"state": state, "env": env}
        finally:
            # Jobs first (their slurmstepd outlive slurmd), then the daemons, then the config.
            with contextlib.suppress(Exception):
                run_quietly(["scancel", "--quiet", "--full", "--user", "root"], timeout=30)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if not run_quietly(["squeue", "-h"], timeout=20).stdout.strip():
                        break
                    time.sleep(2)
                pids = run_quietly(["scontrol", "listpids"], timeout=20).stdout.split()[1::5]
                for pid in filter(str.isdigit, pids):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            for process in reversed(daemons):
                stop(process)
            for conf in (SLURM_CONF, GRES_CONF):
                if conf.exists() and conf.read_text().startswith(MARK):
                    conf.unlink()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The workflow on 3 sections (one broken) through --profile profiles/slurm, run once."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    config = write_sections(workdir, ["s1", "s2"], broken="broken")
    env = {
        **slurm_cluster["env"],
        # Jobs re-run Snakemake on the node; the filesystem is shared, so is this .venv.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SPASEG_SLURM_PARTITION": "cpu",
        "SPASEG_SLURM_GPU_PARTITION": "gpu",
        "SPASEG_SLURM_GPU_MODEL": GPU_TYPE,
        # Attempt 1 of each training job fails as if out of memory; attempt 2, with twice the
        # memory, passes (tests/hooks/sitecustomize.py, loaded by the jobs' Python).
        "SPASEG_TEST_MEM_NEEDED": f"spaseg_train={TEST_MEMORY_NEED}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent / "hooks"), os.environ.get("PYTHONPATH")])
        ),
    }
    env.pop("SPASEG_SLURM_ACCOUNT", None)  # no slurmdbd, no accounts
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--profile",
        str(SLURM_PROFILE),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(config),
        # This machine has no conda: no rule has envmodules, so jobs run in the .venv.
        "--sdm",
        "env-modules",
        # Without slurmdbd, job states come from squeue (sacct would never answer).
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
        "--verbose",  # logs every sbatch call
    ]
    log = workdir / "snakemake.log"
    start = time.monotonic()
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=1200)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # Snakemake then scancels its jobs
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the SLURM run hung; log tail:\n{tail(log, 5000)}")
    wall = time.monotonic() - start
    jobs = run_quietly(["scontrol", "-o", "show", "job"], timeout=30, env=env).stdout
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in jobs.splitlines() if line]
    return {
        "workdir": workdir,
        "returncode": returncode,
        "log": log.read_text(errors="replace"),
        "wall": wall,
        "records": records,
        "queue": run_quietly(["squeue", "-h"], timeout=30, env=env).stdout,
    }


def sbatch_calls(log: str) -> list[dict]:
    calls = []
    for line in re.findall(r"sbatch call: (sbatch .*)", log):
        before_wrap = line.split("--wrap", 1)[0]
        calls.append(
            {
                "comment": re.search(r"--comment (\S+)", before_wrap).group(1),
                "mem": int(re.search(r"--mem (\d+)", before_wrap).group(1)),
                "partition": re.search(r" -p (\S+)", before_wrap).group(1),
                "gpus": (m.group(1) if (m := re.search(r"--gpus=(\S+)", before_wrap)) else None),
                "attempt": int(re.search(r"--attempt (\d+)", line).group(1)),
            }
        )
    return calls


def rule_of(comment: str) -> str:
    """`rule_spaseg_train_wildcards_s1` -> spaseg_train; a group job -> `group preprocess`."""
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    for group in ("preprocess", "postprocess"):
        if name.startswith(f"{group}_"):
            return f"group {group}"
    return name


@pytest.mark.slow
def test_slurm_run_finishes_the_good_sections(slurm_run):
    results = slurm_run["workdir"] / "results"
    assert slurm_run["returncode"] != 0  # the broken section failed ...
    for sample in ("s1", "s2"):  # ... and the others finished
        for name in FINAL_FILES:
            assert (results / sample / name).is_file(), (
                f"{sample}/{name}\n{slurm_run['log'][-5000:]}"
            )
    assert not slurm_run["queue"].strip(), f"jobs left in the queue:\n{slurm_run['queue']}"
    print(f"SLURM run: {slurm_run['wall']:.0f} s")


@pytest.mark.slow
def test_slurm_run_lists_the_failed_section(slurm_run):
    summary = pd.read_csv(slurm_run["workdir"] / "results/run_summary.tsv", sep="\t", dtype=str)
    rows = summary.fillna("").set_index("sample")
    assert list(rows["status"]) == ["done", "done", "failed"]
    assert rows.loc["broken", "failed_step"] == "load"
    assert "broken: failed at load" in slurm_run["log"]


@pytest.mark.slow
def test_slurm_outputs_record_provenance(slurm_run):
    for name in ("qc.h5ad", "pca.h5ad", "domains.h5ad"):
        prov = ad.read_h5ad(slurm_run["workdir"] / "results/s1" / name).uns["spaseg_provenance"]
        assert prov["workflow_version"] and prov["slurm_job_id"].isdigit(), name
        assert json.loads(prov["config"])["spaseg"]["max_iter"] == SHORT_TRAINING["max_iter"]
        assert {"python", "spaseg", "numpy", "anndata", "torch"} <= set(prov["packages"])


@pytest.mark.slow
def test_slurm_jobs_asked_for_gpus_only_for_training(slurm_run):
    calls = sbatch_calls(slurm_run["log"])
    by_rule: dict[str, list[dict]] = {}
    for call in calls:
        by_rule.setdefault(rule_of(call["comment"]), []).append(call)
    # A section's CPU steps before and after training run as one job each; no job per rule.
    assert set(by_rule) == {"group preprocess", "spaseg_train", "group postprocess"}, by_rule
    assert len(by_rule["group preprocess"]) == 4  # s1, s2, broken and broken's retry
    assert len(by_rule["group postprocess"]) == 2  # plot_domains and svg of s1, s2
    for rule, rule_calls in by_rule.items():
        for call in rule_calls:
            if rule == "spaseg_train":
                assert call["gpus"] == f"{GPU_TYPE}:1" and call["partition"] == "gpu"
            else:
                assert call["gpus"] is None and call["partition"] == "cpu", call
    # SLURM's own view of the same jobs.
    records = [r for r in slurm_run["records"] if r.get("Comment", "").startswith("rule_")]
    assert len(records) == len(calls)
    for record in records:
        training = rule_of(record["Comment"]) == "spaseg_train"
        assert ("gpu" in record.get("TresPerJob", "")) == training, record
        assert (record["Partition"] == "gpu") == training, record


@pytest.mark.slow
def test_slurm_retries_a_job_out_of_memory_with_more(slurm_run):
    calls = [c for c in sbatch_calls(slurm_run["log"]) if rule_of(c["comment"]) == "spaseg_train"]
    asked = []
    for sample in ("s1", "s2"):
        # Attempt 1 asks for the memory predicted from the section's pca.h5ad.
        n_obs, _, n_values = h5ad_size(slurm_run["workdir"] / "results" / sample / "pca.h5ad")
        first = predict_mem_mb("spaseg_train", n_obs, n_values)
        assert first < TEST_MEMORY_NEED <= 2 * first
        attempts = [c for c in calls if c["comment"].endswith(f"_wildcards_{sample}")]
        assert [(c["attempt"], c["mem"]) for c in attempts] == [(1, first), (2, 2 * first)]
        asked += [f"{first}M", f"{2 * first}M"]
    assert "out of memory (test hook)" in slurm_run["log"]  # attempt 1's log, shown on failure
    memory = sorted(
        r["MinMemoryNode"] for r in slurm_run["records"] if "spaseg_train" in r.get("Comment", "")
    )
    assert memory == sorted(asked)
