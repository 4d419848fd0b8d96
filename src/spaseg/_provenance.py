"""Provenance of workflow outputs: which code, which settings, which package versions."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from anndata import AnnData

#: Packages whose versions change results; recorded when installed (spaseg always).
PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "scanpy",
    "squidpy",
    "anndata",
    "torch",
    "pyro-ppl",
    "cell2location",
    "snakemake",
)

_CHECKOUT = Path(__file__).resolve().parents[2]  # src/spaseg/_provenance.py -> repository root


def workflow_version() -> str:
    """``git describe --always --dirty`` of this checkout, else the installed package version."""
    if (_CHECKOUT / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "-C", str(_CHECKOUT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return described.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass  # no git on this node, or not a readable repository
    from . import __version__

    return __version__


def package_versions() -> dict[str, str]:
    """Versions of Python, spaseg (also from a source checkout) and the installed :data:`PACKAGES`."""
    from . import __version__

    versions = {"python": platform.python_version(), "spaseg": __version__}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def add_provenance(adata: AnnData, *, config: dict, step: str) -> None:
    """Record in ``adata.uns["spaseg_provenance"]`` how this object was made.

    Parameters
    ----------
    adata
        The object about to be written; changed in place.
    config
        The workflow's effective config. Stored as a JSON string, since h5ad cannot hold
        ``None`` values in nested dicts.
    step
        The workflow step (rule name) that made ``adata``; appended to ``steps``, which lists
        every step since the input was read.

    Notes
    -----
    Sets ``workflow_version``, ``config`` (JSON), ``packages`` (name -> version), ``step``,
    ``steps``, ``time`` (UTC, ISO 8601), ``host`` and ``slurm_job_id`` (empty outside SLURM),
    so that a result of a cluster run can be traced to its node and job.
    """
    previous = adata.uns.get("spaseg_provenance", {})
    adata.uns["spaseg_provenance"] = {
        "workflow_version": workflow_version(),
        "config": json.dumps(config, sort_keys=True, default=str),
        "packages": package_versions(),
        "step": step,
        "steps": [*map(str, previous.get("steps", [])), step],
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
    }
