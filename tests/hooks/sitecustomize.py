"""Test hook of tests/test_slurm.py, loaded by the jobs of a test run only (the test puts this
folder on ``PYTHONPATH``); production scripts know nothing of it.

``SPASEG_TEST_MEM_NEEDED=<rule>=<MB>`` makes that rule's jobs fail as if out of memory while
their ``mem_mb`` is below ``<MB>``: real memory limits cannot be hit with tiny test sections,
and the test needs a job that fails once and passes when retried with more. The failure comes
when the job's script first imports ``spaseg`` (after it has sent its errors to the job's
log), by which time Snakemake has defined the job's ``snakemake`` object in ``__main__``.
"""

import os
import sys

_RULE, _, _NEEDED = os.environ.get("SPASEG_TEST_MEM_NEEDED", "").partition("=")


class _FailShortOfMemory:
    """A meta path finder that finds nothing: it only looks at the job on ``import spaseg``."""

    def find_spec(self, name, path=None, target=None):
        if name != "spaseg":
            return None
        job = getattr(sys.modules.get("__main__"), "snakemake", None)
        if job is not None and job.rule == _RULE and job.resources.mem_mb < int(_NEEDED):
            raise MemoryError(
                f"out of memory (test hook): rule {_RULE} needs {_NEEDED} MB, "
                f"the job has {job.resources.mem_mb} MB"
            )
        return None


if _RULE:
    sys.meta_path.insert(0, _FailShortOfMemory())
