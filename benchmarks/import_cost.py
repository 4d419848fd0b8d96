"""Import cost of each rule script: wall time and peak memory of loading what the script loads.

For each rule script, a fresh ``python -X importtime`` imports what the script imports: the
spaseg modules of its static import closure (``reached_modules`` in tests/test_envs.py, the
closure that decides what its conda env holds) and its own third-party imports (with
``_common.py``'s). Third-party modules spaseg imports only inside functions (cell2location,
squidpy, harmonypy, ...) load when the job calls them and are not counted. For comparison:
what every script loaded before spaseg's subpackages became lazy (each subpackage's modules,
the old eager ``import spaseg``; with ``spaseg.tl.spaseg``, which the old ``spaseg.tl`` loaded
on first use, for the training scripts) and ``import spaseg`` alone.

Seconds: wall time of the child, interpreter start included. Peak MB: the child's peak
resident set since its exec (``VmHWM``; its ``ru_maxrss`` would also count the pages of this
process, which it was forked from). Heaviest: the top-level modules with the largest
cumulative import time (each includes what it imports first), from ``-X importtime``.

    .venv/bin/python benchmarks/import_cost.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_envs import (  # noqa: E402  (tests/ goes on sys.path first)
    JOB_RULES,
    SCRIPTS,
    lazy_attrs,
    reached_modules,
    scan,
    script_of,
)

SUBPACKAGES = ("spaseg.datasets", "spaseg.io", "spaseg.pl", "spaseg.pp", "spaseg.tl")


def script_imports(script: Path) -> list[str]:
    """The modules ``script`` loads on import: its spaseg closure and its third-party imports."""
    own = scan(script).anywhere | scan(SCRIPTS / "_common.py").anywhere
    return sorted(reached_modules(script) | own)


def old_eager_imports() -> list[str]:
    """What the old eager ``import spaseg`` loaded: every module each subpackage declares."""
    declared = {m for package in SUBPACKAGES for m in lazy_attrs(package).values()}
    return sorted(declared - {"spaseg.tl._spaseg"})


def heaviest(importtime: str, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` top-level (undotted, non-spaseg) modules with the largest cumulative import
    time in ``-X importtime`` output, in ms."""
    cumulative = {}
    for line in importtime.splitlines():
        if not line.startswith("import time:"):
            continue
        _, total, name = line.removeprefix("import time:").split("|")
        name = name.strip()
        if total.strip().isdigit() and "." not in name and name != "spaseg":  # not the header
            cumulative[name] = int(total) / 1000
    return sorted(cumulative.items(), key=lambda item: -item[1])[:n]


def measure(modules: list[str]) -> tuple[float, float, list[tuple[str, float]]]:
    """(wall seconds, peak MB, heaviest modules) of importing ``modules`` in a fresh process."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); import {', '.join(modules)}; "
        "print(open('/proc/self/status').read())"
    )
    env = {k: v for k, v in os.environ.items() if k != "EAGER_IMPORT"}  # lazy_loader's switch
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if child.returncode:
        raise RuntimeError(f"importing {modules} failed:\n{child.stderr[-2000:]}")
    peak_kb = re.search(r"^VmHWM:\s+(\d+) kB", child.stdout, re.M).group(1)
    return seconds, int(peak_kb) / 1024, heaviest(child.stderr)


def main() -> None:
    rows = {Path(script_of(rule)).name: script_imports(script_of(rule)) for rule in JOB_RULES}
    rows["old: all subpackages (eager `import spaseg`)"] = old_eager_imports()
    rows["old: all subpackages + tl.spaseg (training)"] = old_eager_imports() + [
        "spaseg.tl._spaseg"
    ]
    rows["`import spaseg` alone"] = ["spaseg"]
    measure(rows["old: all subpackages + tl.spaseg (training)"])  # warm the page cache
    print(f"Python {sys.version.split()[0]}, one fresh `python -X importtime` per row\n")
    print("| script | seconds | peak MB | heaviest 3 (cumulative ms) |")
    print("|---|---:|---:|---|")
    for label, modules in rows.items():
        seconds, peak_mb, top = measure(modules)
        heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in top)
        print(f"| {label} | {seconds:.2f} | {peak_mb:.0f} | {heavy} |", flush=True)


if __name__ == "__main__":
    main()
