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
