"""What every rule script does besides calling the library: log to the job's log file, use
the job's threads. Science stays in ``spaseg``."""

import logging
import os
import sys


def setup(snakemake) -> None:
    """Send logging and stderr (tracebacks too) to the job's log; cap BLAS/OpenMP threads.

    Call it before importing the library, so import-time warnings land in the log as well.
    """
    log = open(snakemake.log[0], "w", buffering=1)  # stays open for the whole job
    sys.stderr = log
    logging.basicConfig(
        stream=log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    os.environ.setdefault("MPLBACKEND", "Agg")  # cluster nodes have no display
    from threadpoolctl import threadpool_limits

    threadpool_limits(snakemake.threads)  # numpy/scipy/scikit-learn BLAS and OpenMP pools
    _fail_if_short_of_memory(snakemake)


def _fail_if_short_of_memory(snakemake) -> None:
    """Test hook of tests/test_slurm.py; inert unless SPASEG_TEST_MEM_NEEDED is set.

    ``SPASEG_TEST_MEM_NEEDED=<rule>=<MB>`` makes that rule's jobs fail as if out of memory
    while their ``mem_mb`` is below ``<MB>``: real memory limits cannot be hit with tiny test
    sections, and the test needs a job that fails once and passes when retried with more.
    """
    rule, _, needed = os.environ.get("SPASEG_TEST_MEM_NEEDED", "").partition("=")
    if rule == snakemake.rule and snakemake.resources.mem_mb < int(needed):
        raise MemoryError(
            f"out of memory (test hook): rule {rule} needs {needed} MB, "
            f"the job has {snakemake.resources.mem_mb} MB"
        )
