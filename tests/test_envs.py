"""The rules' conda envs, checked without conda (its channels are unreachable from here).

Every job rule names an env; every env parses and pins each package; each env provides the
modules its rule's script reaches, and nothing else: ``spaseg`` loads its subpackages lazily,
so a script reaches only the spaseg modules it touches (the static import closure below),
and an env holds only those modules' imports (torch only where a rule trains). A subprocess
checks the closure against what Python really loads. Training envs pin pytorch's CUDA build.
How an env gets this checkout's ``spaseg`` (scripts put ``src/`` on ``sys.path``) is checked
in test_static.py.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import rule_blocks, workflow_functions
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
ENVS = REPO / "envs"
SRC = REPO / "src"
SCRIPTS = REPO / "scripts"

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
#: conda-forge package -> PyPI distribution (the .venv's), where they differ.
PYPI_NAME = {"pytorch": "torch"}
#: Third-party modules spaseg imports inside functions, or finds with
#: ``importlib.util.find_spec`` to read files it ships (liana's L-R tables), -> the rules whose
#: calls reach them. A module-level import needs no entry: the import closure finds it. A new
#: function-level one must be added here, with the rules whose envs need it.
LAZY_IMPORTS = {
    "cell2location": {"c2l_reference", "c2l_map"},
    "harmonypy": {"joint_pca", "joint_spaseg"},
    "liana": {"cci"},
    "lightning": {"c2l_reference", "c2l_map"},
    "matplotlib": {"c2l_map", "cci", "plot_domains", "plot_group", "plot_qc", "svg", "svg_group"},
    "scvi": {"c2l_reference", "c2l_map"},
    "squidpy": {"cci"},
    "torch": {"c2l_reference", "c2l_map"},
}
#: Pinned in an env without being an import: the interpreter, and pip for a pip: section.
NOT_IMPORTED = {"python", "pip"}

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


def script_of(rule: str) -> Path:
    return (RULES / directive(BLOCKS[rule], "script")).resolve()


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


# --- the static import closure ------------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """What one file imports. ``spaseg``: (module, attribute chain) pairs it touches, anywhere
    in the file (``from spaseg.pl._cci import cell_types`` is ``("spaseg.pl._cci",
    ("cell_types",))``, ``spaseg.tl.align(...)`` is ``("spaseg", ("tl", "align"))``).
    ``on_import``/``on_call``: third-party top-level modules imported when the file is imported,
    and only when one of its functions runs (``find_spec("x")`` counts as an import of ``x``)."""

    spaseg: frozenset[tuple[str, tuple[str, ...]]]
    on_import: frozenset[str]
    on_call: frozenset[str]

    @property
    def anywhere(self) -> frozenset[str]:
        return self.on_import | self.on_call


def is_third_party(name: str) -> bool:
    """Not stdlib, not spaseg, not a helper module of scripts/ (``_common``). A rule script's
    own name is no helper: scripts/multiqc.py imports the real ``multiqc``."""
    local = {"spaseg"} | {p.stem for p in SCRIPTS.glob("_*.py")}
    return name not in sys.stdlib_module_names and name not in local


def module_file(module: str) -> Path:
    path = SRC / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_package(module: str) -> bool:
    return module_file(module).name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _nodes(node: ast.AST, when: str = "on_import"):
    """(node, when) for every node below ``node``: ``on_call`` inside function bodies; the body
    of ``if TYPE_CHECKING:`` never runs and is skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt, when
                yield from _nodes(stmt, when)
            continue
        yield child, when
        inner = "on_call" if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else when
        yield from _nodes(child, inner)


def _spaseg_chain(node: ast.Attribute) -> tuple[str, ...] | None:
    """``("tl", "align")`` for the expression ``spaseg.tl.align``; None if not rooted at spaseg."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.insert(0, node.attr)
        node = node.value
    return tuple(chain) if isinstance(node, ast.Name) and node.id == "spaseg" else None


@functools.cache
def scan(path: Path, module: str | None = None) -> Scan:
    """The imports of ``path``; ``module`` is its dotted name, to resolve relative imports."""
    touched, found = set(), {"on_import": set(), "on_call": set()}
    package = (
        None if module is None else module if is_package(module) else module.rpartition(".")[0]
    )
    for node, when in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] == "spaseg":
                    touched.add((alias.name, ()))
                found[when].add(alias.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if target.partition(".")[0] == "spaseg":
                touched |= {(target, (alias.name,)) for alias in node.names}
            found[when].add(target.partition(".")[0])
        elif isinstance(node, ast.Attribute) and (chain := _spaseg_chain(node)):
            touched.add(("spaseg", chain))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "find_spec"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found[when].add(node.args[0].value.partition(".")[0])
    return Scan(
        frozenset(touched),
        frozenset(filter(is_third_party, found["on_import"])),
        frozenset(filter(is_third_party, found["on_call"])),
    )


def library_scan(module: str) -> Scan:
    return scan(module_file(module), module)


@functools.cache
def lazy_attrs(package: str) -> dict[str, str]:
    """Attribute -> submodule, from the package's ``lazy_loader.attach(...)`` declaration."""
    found = {}
    for node in ast.walk(ast.parse(module_file(package).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "attach":
            for keyword in node.keywords:
                value = ast.literal_eval(keyword.value)
                if keyword.arg == "submodules":
                    found |= {name: f"{package}.{name}" for name in value}
                elif keyword.arg == "submod_attrs":
                    found |= {n: f"{package}.{sub}" for sub, names in value.items() for n in names}
    return found


def resolve(module: str, chain: tuple[str, ...]) -> set[str]:
    """The spaseg modules that touching ``module.<chain>`` loads: the module, then each
    submodule the chain names or whose attribute it names (through lazy_loader)."""
    loaded = {module}
    for attr in chain:
        if not is_package(module):
            break
        submodule = f"{module}.{attr}"
        module = submodule if module_file(submodule).exists() else lazy_attrs(module).get(attr)
        if module is None:  # defined in the package's __init__ itself
            break
        loaded.add(module)
    return loaded


def parents(module: str) -> set[str]:
    """The packages Python imports before ``module`` (their ``__init__`` runs)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@functools.cache
def reached_modules(script: Path) -> frozenset[str]:
    """Every spaseg module ``script`` can load: those it touches, then, transitively, those
    they import (at module level or inside functions) and their parent packages."""
    todo = [m for access in scan(script).spaseg for m in resolve(*access)]
    seen = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        assert module_file(module).is_file(), f"{script.name} reaches {module}, which is not there"
        seen.add(module)
        todo += parents(module)
        todo += [m for access in library_scan(module).spaseg for m in resolve(*access)]
    return frozenset(seen)


def closure_imports(script: Path) -> set[str]:
    """Third-party modules imported when the spaseg modules ``script`` reaches are imported."""
    return {name for module in reached_modules(script) for name in library_scan(module).on_import}


def needed_imports(rule: str) -> set[str]:
    """Third-party top-level modules the rule's job imports: its script's and ``_common.py``'s
    (anywhere in them), its spaseg closure's, and the function-level ones assigned to it."""
    script = script_of(rule)
    own = scan(script).anywhere | scan(SCRIPTS / "_common.py").anywhere
    lazy = {name for name, rules in LAZY_IMPORTS.items() if rule in rules}
    return own | closure_imports(script) | lazy


def needed_packages(rule: str) -> set[str]:
    return {PACKAGE_OF.get(name, name).lower() for name in needed_imports(rule)}


def library_modules() -> list[str]:
    return sorted(
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in (SRC / "spaseg").rglob("*.py")
    )


def pypi(package: str) -> str:
    return canonicalize_name(PYPI_NAME.get(package, package))


@functools.cache
def requirements(distribution: str) -> frozenset[str]:
    """Everything installing ``distribution`` installs (its requirements, transitively, without
    extras), as the .venv's metadata says; PyPI names."""
    found = set()
    for line in metadata.requires(distribution) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            name = canonicalize_name(requirement.name)
            found |= {name} | requirements(name)
    return frozenset(found)


# --- tests ----------------------------------------------------------------------------------


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
    """`run:` rules execute in a Snakemake process (the run's, or a cluster job's on its node)
    without an env: each is one call of a workflow function, which uses only what
    the workflow's .smk files import (the light parts of spaseg), so it runs wherever
    Snakemake does."""
    defined = set(re.findall(r"^def (\w+)\(", workflow_functions(), re.M))
    for rule in set(BLOCKS) - set(JOB_RULES):
        body = BLOCKS[rule].split("\n    run:\n", 1)[1].strip()
        call = re.fullmatch(r"(\w+)\(.*\)", body, re.S)
        assert call and call.group(1) in defined, f"rule {rule}: run block {body!r}"


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
    missing = needed_packages(rule) - set(pins(env_of(rule)))
    assert not missing, f"rule {rule}: {env_of(rule).name} lacks {sorted(missing)}"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_only_what_its_rules_reach(env):
    """No env carries a package (torch, squidpy, cell2location, ...) that none of its rules
    imports. Pinning what such a package installs anyway is fine: it only fixes the version
    (pynndescent under scanpy, pyro-ppl under cell2location)."""
    needed = {pypi(p) for rule in JOB_RULES if env_of(rule) == env for p in needed_packages(rule)}
    comes_with = {name for package in needed for name in requirements(package)}
    extra = {p for p in set(pins(env)) - NOT_IMPORTED if pypi(p) not in needed | comes_with}
    assert not extra, f"{env.name} pins {sorted(extra)}, which none of its rules reaches"


def test_every_lazy_import_of_spaseg_is_assigned_to_rules():
    lazy = {name for module in library_modules() for name in library_scan(module).on_call}
    unassigned = lazy - set(LAZY_IMPORTS)
    assert not unassigned, f"add {sorted(unassigned)} to LAZY_IMPORTS with the rules needing them"


@pytest.mark.parametrize("name", sorted(LAZY_IMPORTS))
def test_lazy_imports_go_to_rules_that_reach_them(name):
    """A rule in LAZY_IMPORTS reaches a spaseg module that imports the name in a function."""
    for rule in LAZY_IMPORTS[name]:
        reached = reached_modules(script_of(rule))
        assert any(name in library_scan(module).on_call for module in reached), (name, rule)


def test_the_closure_follows_the_lazy_subpackages():
    """Each script reaches only the subpackages it touches, with their package ``__init__``s."""
    train = reached_modules(script_of("spaseg_train"))
    assert {"spaseg", "spaseg.tl", "spaseg.tl._spaseg", "spaseg.tl._model"} <= train
    assert {"spaseg.pp", "spaseg.pp._image"} <= train  # a relative import inside tl
    assert not any(m.startswith(("spaseg.io", "spaseg.pl", "spaseg.datasets")) for m in train)
    assert not any(m.startswith("spaseg.tl") for m in reached_modules(script_of("plot_qc")))
    assert "pytorch" in needed_packages("spaseg_train")
    assert {"pytorch", "matplotlib", "squidpy"}.isdisjoint(needed_packages("qc"))
    assert {"scanpy", "pytorch"}.isdisjoint(needed_packages("plot_qc"))


def test_needed_modules_are_installed_under_their_package_names():
    """Every module an env must provide is installed in the .venv, by the distribution whose
    name PACKAGE_OF gives (so the env pins the right package)."""
    distributions = metadata.packages_distributions()
    for name in sorted(set().union(*map(needed_imports, JOB_RULES))):
        assert importlib.util.find_spec(name), f"{name} is not installed"
        package = pypi(PACKAGE_OF.get(name, name).lower())
        found = {canonicalize_name(d) for d in distributions.get(name, ())}
        assert package in found, f"import {name} comes from {found}: add it to PACKAGE_OF"


TRAINING_RULES = sorted(r for r in JOB_RULES if re.search(r"^\s+gpu=", BLOCKS[r], re.M))


def test_training_rules_were_found():
    assert "spaseg_train" in TRAINING_RULES


@pytest.mark.parametrize("rule", TRAINING_RULES)
def test_training_env_has_cuda_pytorch(rule):
    version, build = pins(env_of(rule))["pytorch"]
    assert build and build.startswith("cuda"), f"{env_of(rule).name}: pytorch={version} not =cuda*"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_pytorch_only_where_a_rule_trains(env):
    trains = any(env_of(rule) == env for rule in TRAINING_RULES)
    assert ("pytorch" in pins(env)) == trains, env.name


@pytest.mark.parametrize("rule", LAZY_IMPORTS["cell2location"])
def test_cell2location_env_has_pyro_1_8_6(rule):
    """cell2location 0.1.5 breaks with Pyro 1.9."""
    found = pins(env_of(rule))
    assert found["pyro-ppl"][0] == "1.8.6" and "cell2location" in found


# --- the closure against what Python loads -----------------------------------------------------

#: Run in a fresh interpreter: touch what a script touches in spaseg (argv[2], JSON), with every
#: third-party module but lazy_loader replaced by an empty stub, and print the modules that
#: loaded. A stub imports nothing, so each third-party module that loaded was imported by
#: spaseg's code (or lazy_loader's), however it did so; and no numpy or torch makes it fast.
PROBE = """
import importlib, importlib.machinery, json, sys, types
from unittest import mock

sys.path.insert(0, sys.argv[1])

class Anything(mock.MagicMock):
    def __mro_entries__(self, bases):  # a stubbed base class: `class Net(nn.Module)`
        return ()

class Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything(name=f"{self.__name__}.{name}")

class StubFinder:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in ("spaseg", "lazy_loader"):
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return Stub(spec.name)

    def exec_module(self, module):
        pass

sys.meta_path.insert(0, StubFinder())
before = set(sys.modules)
for module, chain in json.loads(sys.argv[2]):
    obj = importlib.import_module(module)
    for attr in chain:
        if not isinstance(obj, types.ModuleType):
            break
        try:
            obj = getattr(obj, attr)
        except AttributeError:  # `from package import submodule`
            obj = importlib.import_module(f"{obj.__name__}.{attr}")
print(json.dumps(sorted({m.partition(".")[0] for m in set(sys.modules) - before} - {"spaseg"})))
print(json.dumps([m for m in sys.modules if m.partition(".")[0] == "spaseg"]))
"""


@pytest.mark.parametrize("rule", JOB_RULES)
def test_what_python_loads_stays_inside_the_closure(rule):
    """Independent of the closure's resolution (lazy_loader declarations, relative and nested
    imports, parents): touching what the script touches loads only spaseg modules the closure
    found, and those import only third-party modules the closure found."""
    script = script_of(rule)
    touched = json.dumps(sorted(scan(script).spaseg))
    env = {k: v for k, v in os.environ.items() if k != "EAGER_IMPORT"}  # lazy_loader's switch
    run = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(SRC), touched],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    imported, loaded = map(json.loads, run.stdout.splitlines())
    assert set(loaded) <= reached_modules(script)
    assert set(filter(is_third_party, imported)) <= closure_imports(script)
