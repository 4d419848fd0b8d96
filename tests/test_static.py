"""Static checks of the workflow: rule habits, pinned conda envs, config docs, lint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import rule_blocks

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
BIN = Path(sys.executable).parent


BLOCKS = rule_blocks()


def test_the_chain_is_there():
    assert {"load", "qc", "normalize_pca", "spaseg_train", "plot_qc", "plot_domains"} <= set(BLOCKS)


# Rules with `run:` (run_summary) are bookkeeping in Snakemake's own process: no job, no env.
JOB_RULES = sorted(name for name, body in BLOCKS.items() if "\n    run:\n" not in body)


@pytest.mark.parametrize("rule", JOB_RULES)
def test_rule_habits(rule):
    body = BLOCKS[rule]
    for directive in ("log:", "benchmark:", "conda:", "threads:", "resources:", "script:"):
        assert re.search(rf"^    {directive}", body, re.M), f"{rule}: no {directive}"
    # One file per job, named by its wildcard ({sample}; {reference}, {group} for shared jobs;
    # "batch" for the one job of the whole batch).
    for kind, suffix in (("logs", "log"), ("benchmarks", "tsv")):
        where = rf'f"\{{RESULTS\}}/{kind}/{rule}/(\{{\{{\w+\}}\}}|batch)\.{suffix}"'
        assert re.search(where, body), f"{rule}: no {kind} file per job"
    for resource in ("mem_mb=", "runtime="):
        assert resource in body, f"{rule}: no {resource} resource"
    env = re.search(r'^    conda:\n\s+"([^"]+)"', body, re.M).group(1)
    assert (RULES / env).resolve().is_file(), env
    script = re.search(r'^    script:\n\s+"([^"]+)"', body, re.M).group(1)
    assert (RULES / script).resolve().is_file(), script
    assert Path(script).stem == rule


#: The rules that train (on a GPU on clusters) and the config resource each takes its GPUs from.
GPU_FROM = {
    "spaseg_train": "spaseg_train",
    "joint_spaseg": "spaseg_train",
    "c2l_reference": "c2l_reference",
    "c2l_map": "c2l_map",
}


@pytest.mark.parametrize("rule", JOB_RULES)
def test_only_training_asks_for_gpus_and_from_the_config(rule):
    asks = re.findall(r"^\s+gpu=(.*),$", BLOCKS[rule], re.M)
    if rule in GPU_FROM:
        assert asks == [f'config["resources"]["{GPU_FROM[rule]}"]["gpu"]'], asks
    else:
        assert not asks, f"{rule} asks for GPUs"


def test_snakefile_includes_only():
    text = (REPO / "Snakefile").read_text()
    assert 'min_version("9.0")' in text and 'configfile: "config/config.yaml"' in text
    assert re.findall(r"^rule (\w+):", text, re.M) == ["all"]
    for smk in RULES.glob("*.smk"):
        assert f'include: "workflow/rules/{smk.name}"' in text


# --- conda envs -------------------------------------------------------------------------------


ENVS = sorted((REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_is_pinned_and_complete(env):
    spec = yaml.safe_load(env.read_text())
    assert "conda-forge" in spec["channels"]
    pins = {}
    for dep in spec["dependencies"]:
        for entry in dep["pip"] if isinstance(dep, dict) else [dep]:
            # name=version, or name=version=build (pytorch=2.13.0=cuda* in training envs)
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|=)\s*([0-9][^\s=]*)(=\S+)?", entry)
            assert match, f"{env.name}: {entry!r} is not pinned (name=version)"
            pins[match.group(1).lower()] = match.group(3)
    assert pins["python"] == "3.11"
    # What each env holds (what its rules reach, no more) is checked by test_envs.py.


def test_scripts_use_this_checkouts_library():
    """Each script puts <repo>/src first on sys.path (README, "Conda environments"): this
    checkout's library, also inside a rule's conda env."""
    insert = 'sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))'
    scripts = [p for p in (REPO / "scripts").glob("*.py") if not p.name.startswith("_")]
    assert scripts
    for script in scripts:
        text = script.read_text()
        assert insert in text, script.name
        first = min(i for i in (text.find("import spaseg"), text.find("from spaseg")) if i >= 0)
        assert text.index(insert) < first, script.name
    assert (REPO / "scripts").resolve().parent.joinpath("src", "spaseg").is_dir()


def test_test_hooks_live_in_the_tests():
    """Production code reads no test switch; the out-of-memory hook of test_slurm.py is a
    sitecustomize that only a test's PYTHONPATH loads, and it fires for the named rule only."""
    production = [*(REPO / "scripts").glob("*.py"), *(REPO / "src").rglob("*.py")]
    production += [*RULES.glob("*.smk"), REPO / "Snakefile"]
    assert not [p.name for p in production if "SPASEG_TEST" in p.read_text()]
    job = (
        "import types; snakemake = types.SimpleNamespace(rule={rule!r}, "
        "resources=types.SimpleNamespace(mem_mb=50)); import spaseg"
    )
    env = {"PYTHONPATH": str(REPO / "tests" / "hooks"), "SPASEG_TEST_MEM_NEEDED": "train=100"}
    for rule, fails in (("train", True), ("qc", False)):
        done = subprocess.run(
            [sys.executable, "-c", job.format(rule=rule)], env=env, capture_output=True, text=True
        )
        assert (done.returncode != 0) == fails, done.stderr
        assert ("out of memory (test hook)" in done.stderr) == fails


# --- config, schema, docs ---------------------------------------------------------------------


def schema(name: str) -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / f"{name}.schema.yaml").read_text())


def schema_defaults(node: dict) -> dict:
    return {
        key: schema_defaults(sub)
        if sub.get("type") == "object" and "properties" in sub
        else sub["default"]
        for key, sub in node["properties"].items()
        if "default" in sub
    }


def test_config_is_valid_and_matches_schema_defaults():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jsonschema.validate(config, schema("config"))
    defaults = schema_defaults(schema("config"))
    config_without_samples = {k: v for k, v in config.items() if k != "samples"}
    assert config_without_samples == defaults, "config.yaml and the schema defaults differ"


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, sub in node.get("properties", {}).items():
        keys.append(prefix + key)
        keys += leaf_keys(sub, f"{prefix}{key}.")
    return keys


def test_config_readme_documents_every_key_and_column():
    readme = (REPO / "config" / "README.md").read_text()
    for key in leaf_keys(schema("config")):
        assert f"`{key}`" in readme, f"config key {key} is not documented in config/README.md"
    for column in schema("samples")["properties"]:
        assert f"`{column}`" in readme, f"column {column} is not documented in config/README.md"


def test_profiles_hold_nothing_site_specific():
    """profiles/slurm is a YTE template; tests/test_slurm.py checks it as Snakemake reads it."""
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert "software-deployment-method" not in default  # the venv works out of the box
    slurm = (REPO / "profiles/slurm/config.yaml").read_text()
    assert "executor: slurm" in slurm
    for key in ("slurm_account", "slurm_partition"):
        assert f"{key}:" not in slurm, f"{key} is set in the profile; it comes from the environment"


# --- lint -------------------------------------------------------------------------------------


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    result = run(str(BIN / "snakemake"), "--lint", "--cores", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean_on_the_workflow_scripts():
    for command in (["check"], ["format", "--check"]):
        result = run(str(BIN / "ruff"), *command, "scripts")
        assert result.returncode == 0, result.stdout + result.stderr
