"""The rules' conda envs, checked without conda (its channels are unreachable from here).

Every job rule names an env; every env parses and pins each package; each env provides the
modules its rule's script imports, directly and through ``spaseg``; training envs pin
pytorch's CUDA build. How an env gets this checkout's ``spaseg`` (scripts put ``src/`` on
``sys.path``) is checked in test_static.py.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import rule_blocks

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
ENVS = REPO / "envs"

#: Import name -> conda-forge (or PyPI) package, where they differ.
PACKAGE_OF = {
    "PIL": "pillow",
    "cv2": "opencv-python",
    "lazy_loader": "lazy-loader",
    "pyro": "pyro-ppl",
    "scvi": "scvi-tools",
    "sklearn": "scikit-learn",
    "torch": "pytorch",
    "yaml": "pyyaml",
}
#: Imported, and installed by a pinned package that requires it on conda-forge. Empty:
#: pillow (``import spaseg`` loads PIL) is a dependency of its own, pinned in every env.
COMES_WITH: dict[str, str] = {}
#: spaseg's imports inside functions (not loaded by ``import spaseg``) -> the rules that reach
#: them. A new lazy import must be added here, with the rules whose envs need it.
LAZY_IMPORTS = {
    "harmonypy": {"joint_pca", "joint_spaseg"},
    "squidpy": {"cci"},
    "cell2location": {"c2l_reference", "c2l_map"},
    "scvi": {"c2l_reference", "c2l_map"},
}

CHANNELS = {"conda-forge", "bioconda", "nodefaults"}
CONDA_PIN = re.compile(r"([A-Za-z0-9_.-]+)(==|=)([0-9][^\s=]*)(?:=(\S+))?")
PIP_PIN = re.compile(r"([A-Za-z0-9_.\-\[\]]+)==([0-9]\S*)")


def directive(body: str, name: str) -> str | None:
    match = re.search(rf'^    {name}:\n\s+"([^"]+)"', body, re.M)
    return match.group(1) if match else None


BLOCKS = rule_blocks()
JOB_RULES = sorted(name for name, body in BLOCKS.items() if "\n    run:\n" not in body)
ENV_FILES = sorted(ENVS.glob("*.yaml"))


def env_of(rule: str) -> Path:
    return (RULES / directive(BLOCKS[rule], "conda")).resolve()


def pins(env: Path) -> dict[str, tuple[str, str | None]]:
    """Package -> (version, build or None), conda and pip entries alike."""
    found = {}
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        if isinstance(dep, dict):
            for entry in dep["pip"]:
                match = PIP_PIN.fullmatch(entry)
                assert match, f"{env.name}: pip entry {entry!r} is not pinned (name==version)"
                found[match.group(1).lower()] = (match.group(2), None)
            continue
        match = CONDA_PIN.fullmatch(dep.replace(" ", ""))
        assert match, f"{env.name}: {dep!r} is not pinned (name=version[=build])"
        found[match.group(1).lower()] = (match.group(3), match.group(4))
    return found


def third_party_imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    local = {"spaseg", "_common"} | {p.stem for p in (REPO / "scripts").glob("*.py")}
    return {name for name in names if name not in sys.stdlib_module_names and name not in local}


def spaseg_imports() -> tuple[set[str], set[str]]:
    """(third-party modules ``import spaseg`` loads, those imported only inside functions)."""
    files = sorted((REPO / "src" / "spaseg").rglob("*.py"))
    eager = set().union(*(third_party_imports(f, top_level_only=True) for f in files))
    every = set().union(*(third_party_imports(f) for f in files))
    return eager, every - eager


def needed_packages(rule: str) -> set[str]:
    script = (RULES / directive(BLOCKS[rule], "script")).resolve()
    modules = third_party_imports(script) | third_party_imports(script.parent / "_common.py")
    if "import spaseg" in script.read_text() or "from spaseg" in script.read_text():
        eager, lazy = spaseg_imports()
        modules |= eager | {m for m in lazy if rule in LAZY_IMPORTS.get(m, ())}
    return {PACKAGE_OF.get(m, m).lower() for m in modules}


def test_rules_were_found():
    assert {"load", "qc", "normalize_pca", "spaseg_train", "plot_qc", "plot_domains"} <= set(
        JOB_RULES
    )


@pytest.mark.parametrize("rule", JOB_RULES)
def test_every_job_rule_has_an_env(rule):
    env = directive(BLOCKS[rule], "conda")
    assert env, f"rule {rule} has no conda: directive"
    assert env_of(rule).is_file(), f"rule {rule}: {env} does not exist"
    assert env_of(rule).parent == ENVS


def test_rules_without_env_run_in_snakemake_itself():
    """`run:` rules execute in the main process, so they must be local rules."""
    text = "\n".join(smk.read_text() for smk in RULES.glob("*.smk"))
    local = set(re.findall(r"^localrules:\n((?:    \w+,\n)+)", text, re.M))
    local = {name.strip(" ,") for block in local for name in block.split("\n") if name.strip()}
    for rule in set(BLOCKS) - set(JOB_RULES):
        assert rule in local, f"rule {rule} runs Python in Snakemake's process: make it local"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_pins_everything(env):
    spec = yaml.safe_load(env.read_text())
    assert set(spec) <= {"name", "channels", "dependencies"}, env.name
    assert spec["channels"][0] == "conda-forge" and set(spec["channels"]) <= CHANNELS
    found = pins(env)
    assert found["python"][0] == "3.11"
    if any(isinstance(dep, dict) for dep in spec["dependencies"]):
        assert "pip" in found, f"{env.name}: a pip: section needs pip itself pinned"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_is_used(env):
    used = {env_of(rule).name for rule in JOB_RULES}
    assert env.name in used, f"{env.name} is used by no rule"


@pytest.mark.parametrize("rule", JOB_RULES)
def test_env_provides_what_the_script_imports(rule):
    found = set(pins(env_of(rule)))
    needed = needed_packages(rule)
    missing = {p for p in needed - found if COMES_WITH.get(p) not in found}
    assert not missing, f"rule {rule}: {env_of(rule).name} lacks {sorted(missing)}"


def test_every_lazy_import_of_spaseg_is_assigned_to_rules():
    _, lazy = spaseg_imports()
    unassigned = lazy - set(LAZY_IMPORTS)
    assert not unassigned, f"add {sorted(unassigned)} to LAZY_IMPORTS with the rules needing them"


def test_import_scan_sees_the_library():
    eager, _ = spaseg_imports()
    assert {"numpy", "anndata", "scanpy", "torch", "sklearn"} <= eager


TRAINING_RULES = sorted(r for r in JOB_RULES if re.search(r"^\s+gpu=", BLOCKS[r], re.M))


def test_training_rules_were_found():
    assert "spaseg_train" in TRAINING_RULES


@pytest.mark.parametrize("rule", TRAINING_RULES)
def test_training_env_has_cuda_pytorch(rule):
    version, build = pins(env_of(rule))["pytorch"]
    assert build and build.startswith("cuda"), f"{env_of(rule).name}: pytorch={version} not =cuda*"


def test_cpu_envs_leave_the_pytorch_build_to_conda():
    """CPU rules need torch only to import spaseg: the solver's choice (CPU build) is fine."""
    training_envs = {env_of(rule) for rule in TRAINING_RULES}
    for rule in JOB_RULES:
        if env_of(rule) not in training_envs:
            assert pins(env_of(rule))["pytorch"][1] is None, rule


@pytest.mark.parametrize("rule", LAZY_IMPORTS["cell2location"])
def test_cell2location_env_has_pyro_1_8_6(rule):
    """cell2location 0.1.5 breaks with Pyro 1.9."""
    found = pins(env_of(rule))
    assert found["pyro-ppl"][0] == "1.8.6" and "cell2location" in found
